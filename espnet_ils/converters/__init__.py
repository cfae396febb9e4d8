"""Checkpoint converters from other toolkits' layouts into the ILS-SSL modules."""

import inspect

from espnet2.ssl.utils.mask import Masking

# The options of ESPnet's Masking util (mask_prob, mask_length, ...), which both converters carry over.
MASK_OPTIONS = tuple(
    name
    for name in inspect.signature(Masking.__init__).parameters
    if name not in ("self", "encoder_embed_dim")
)

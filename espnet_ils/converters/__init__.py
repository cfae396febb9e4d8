"""Checkpoint converters from other toolkits' layouts into the ILS-SSL modules."""

# The keyword arguments of ESPnet's Masking util (``util: mask``) besides ``encoder_embed_dim``: both
# converters carry these over under the same names, which fairseq's model cfg and torchaudio's
# MaskGenerator attributes also use. tests/test_espnet_internals.py pins them to Masking.__init__.
MASK_OPTIONS = (
    "mask_prob",
    "mask_selection",
    "mask_other",
    "mask_length",
    "no_mask_overlap",
    "mask_min_space",
    "mask_channel_prob",
    "mask_channel_selection",
    "mask_channel_other",
    "mask_channel_length",
    "no_mask_channel_overlap",
    "mask_channel_min_space",
)

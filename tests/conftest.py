"""Shared tiny builders; every test builds its own modules from them."""

from typing import Iterator, Optional

import pytest
import torch

import espnet_ils  # noqa: F401  (registration, before any ESPnet task is used)
from espnet_ils.encoder import ILSTransformerEncoder


def tiny_encoder(input_size: Optional[int] = None, **overrides) -> ILSTransformerEncoder:
    """A 4-block, width-32 encoder without dropout (deterministic in train mode)."""
    conf = dict(
        output_size=32,
        attention_heads=4,
        linear_units=64,
        num_blocks=4,
        dropout_rate=0.0,
        attention_dropout_rate=0.0,
        conv_pos_kernel=8,
        conv_pos_groups=4,
    )
    conf.update(overrides)
    return ILSTransformerEncoder(input_size or conf["output_size"], **conf)


@pytest.fixture(autouse=True)
def _seeded() -> Iterator[None]:
    torch.manual_seed(0)
    yield

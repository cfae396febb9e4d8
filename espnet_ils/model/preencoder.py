"""Projection of conv features into the Transformer's width (HuBERT's ``layer_norm`` + ``post_extract_proj``)."""

from typing import Tuple

import torch
from espnet2.asr.preencoder.abs_preencoder import AbsPreEncoder
from torch import nn
from typeguard import typechecked

from espnet_ils.model.strict_loading import require_exact_keys


class FeatureProjection(AbsPreEncoder):
    """LayerNorm over the conv channels, Linear to the model width, then dropout.

    ESPnet's ``LinearProjection`` has neither the LayerNorm nor dropout after the projection. The
    mask embedding is applied after this module (ESPnet's ``Masking`` util), as in HuBERT.

    Args:
        input_size: Conv channels C (512).
        output_size: Model width D (768 BASE, 1024 LARGE).
        dropout_rate: Dropout on the projected features (``dropout_input``, 0.1).
    """

    @typechecked
    def __init__(self, input_size: int, output_size: int, dropout_rate: float = 0.1):
        super().__init__()
        self.layer_norm = nn.LayerNorm(input_size)
        self.linear = nn.Linear(input_size, output_size)
        self.dropout = nn.Dropout(dropout_rate)
        self._output_size = output_size
        require_exact_keys(self)

    def output_size(self) -> int:
        return self._output_size

    def forward(
        self, input: torch.Tensor, input_lengths: torch.Tensor
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Project ``(B, T, C)`` conv features to ``(B, T, D)``; lengths ``(B,)`` pass through."""
        return self.dropout(self.linear(self.layer_norm(input))), input_lengths

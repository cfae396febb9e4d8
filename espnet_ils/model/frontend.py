"""Waveform front end: ESPnet's wav2vec-style ``CNNFrontend`` made padding-invariant, with gradient scaling.

Two things ESPnet's ``CNNFrontend`` does not do, and ILS-SSL needs:

* ``feature_grad_mult``: the gradient flowing back into the conv extractor is scaled (0.1 in
  pretraining, as in HuBERT); 0 freezes the extractor and runs it without autograd.
  (ESPnet's ``model_conf.feature_grad_mult`` is accepted and ignored.)
* Padding invariance. In BASE the first block has a per-channel GroupNorm that normalises over time;
  ``CNNFrontend`` normalises over the padded batch, so padding a batch changes the features of the
  shorter utterances. Here the statistics are taken over each utterance's valid frames only, so an
  utterance gives the same features alone or batched. Whole-waveform normalisation
  (``normalize_audio``, fairseq's ``task.normalize``) is likewise done per utterance. The LayerNorm
  mode (LARGE) is per frame and needs nothing. Without padding the result equals ``CNNFrontend``'s.
"""

from typing import List, Optional, Tuple, Union

import torch
from espnet2.asr.frontend.cnn import CNNFrontend
from torch import nn
from torch.nn import functional as F
from typeguard import typechecked

from espnet_ils.model.strict_loading import require_exact_keys

# wav2vec 2.0 / HuBERT / ILS-SSL: 7 blocks, total stride 320 samples (20 ms), receptive field 400.
DEFAULT_CONV_SHAPES = [(512, 10, 5)] + [(512, 3, 2)] * 4 + [(512, 2, 2)] * 2


class GradMultiply(torch.autograd.Function):
    """Identity in the forward pass; multiplies the gradient by ``scale`` in the backward pass."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, scale: float) -> torch.Tensor:
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> Tuple[torch.Tensor, None]:
        return grad * ctx.scale, None


def _valid_mask(lengths: torch.Tensor, max_len: int) -> torch.Tensor:
    """(B,) lengths -> (B, 1, max_len) float mask, 1 on valid positions."""
    positions = torch.arange(max_len, device=lengths.device)
    return (positions[None, :] < lengths[:, None]).unsqueeze(1).float()


def masked_group_norm(x: torch.Tensor, lengths: torch.Tensor, norm: nn.GroupNorm) -> torch.Tensor:
    """The block's GroupNorm applied to each utterance's valid frames only, in float32.

    Args:
        x: Conv output ``(B, C, T)``.
        lengths: Valid frames per utterance ``(B,)``.
        norm: The block's ``GroupNorm``, whose groups, affine parameters and eps are used.

    Returns:
        Normalised ``(B, C, T)`` in the dtype of ``x``; padded frames are 0.
    """
    weight, bias = norm.weight.float(), norm.bias.float()
    if bool((lengths == x.size(-1)).all()):  # nothing padded: one call
        return F.group_norm(x.float(), norm.num_groups, weight, bias, norm.eps).to(x.dtype)
    out = torch.zeros_like(x)
    for b, length in enumerate(lengths.tolist()):
        if length > 0:
            valid = x[b : b + 1, :, :length].float()
            out[b : b + 1, :, :length] = F.group_norm(
                valid, norm.num_groups, weight, bias, norm.eps
            )
    return out


def normalize_waveform(x: torch.Tensor, lengths: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Zero mean, unit variance over each utterance's own samples (fairseq ``task.normalize``).

    Args:
        x: Waveforms ``(B, N)`` in samples at 16 kHz.
        lengths: Valid samples per utterance ``(B,)``.
        eps: Added to the variance, as in ``F.layer_norm``.

    Returns:
        ``(B, N)``, with padded samples set to 0.
    """
    mask = _valid_mask(lengths, x.size(-1)).squeeze(1)  # (B, N)
    count = mask.sum(-1, keepdim=True).clamp(min=1)
    mean = (x * mask).sum(-1, keepdim=True) / count
    var = ((x - mean).pow(2) * mask).sum(-1, keepdim=True) / count
    return (x - mean) * torch.rsqrt(var + eps) * mask


class ILSCNNFrontend(CNNFrontend):
    """wav2vec 2.0 conv feature extractor with ``feature_grad_mult`` and padding-invariant norms.

    Parameter names equal ``CNNFrontend``'s, so its checkpoints load here and back.

    Args:
        norm_mode: ``"group_norm"`` (BASE: GroupNorm in block 0 only) or ``"layer_norm"`` (LARGE:
            LayerNorm in every block).
        conv_mode: ESPnet's conv type; ``"standard"`` for ILS-SSL.
        bias: Conv bias; False for ILS-SSL.
        shapes: ``(channels, kernel, stride)`` per block; the default is the 7-block 512-channel stack.
        fs: Sampling rate; only 16 kHz models exist.
        normalize_audio: Normalise each waveform to zero mean, unit variance first (LARGE).
        feature_grad_mult: Scale of the gradient into the extractor: 0.1 in pretraining, 0 freezes it.
    """

    @typechecked
    def __init__(
        self,
        norm_mode: str = "group_norm",
        conv_mode: str = "standard",
        bias: bool = False,
        shapes: Optional[List[Union[Tuple[int, int, int], List[int]]]] = None,
        fs: Union[int, str] = 16000,
        normalize_audio: bool = False,
        feature_grad_mult: float = 1.0,
    ):
        if feature_grad_mult < 0:
            raise ValueError(
                f"frontend_conf.feature_grad_mult={feature_grad_mult}: must be >= 0 "
                "(0.1 in pretraining, 0 freezes the conv extractor)"
            )
        conv_shapes = [tuple(s) for s in (shapes or DEFAULT_CONV_SHAPES)]
        for shape in conv_shapes:
            if len(shape) != 3:
                raise ValueError(
                    f"frontend_conf.shapes entry {list(shape)}: expected [channels, kernel, stride]"
                )
        super().__init__(
            norm_mode=norm_mode,
            conv_mode=conv_mode,
            bias=bias,
            shapes=conv_shapes,
            fs=fs,
            normalize_audio=normalize_audio,
        )
        self.feature_grad_mult = feature_grad_mult
        require_exact_keys(self)

    def forward(
        self, x: torch.Tensor, length: Optional[torch.Tensor]
    ) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        """Extract conv features.

        Args:
            x: Waveforms ``(B, N)``, samples at 16 kHz.
            length: Valid samples per utterance ``(B,)``, or None when nothing is padded.

        Returns:
            Features ``(B, T, C)`` at 50 Hz for the default shapes, and valid frames ``(B,)``
            (``floor((N - 400) / 320) + 1``).
        """
        if x.ndim != 2:
            raise ValueError(
                f"ILSCNNFrontend expects waveforms (batch, samples); got {list(x.shape)}"
            )
        if length is None:
            length = torch.full((x.size(0),), x.size(1), dtype=torch.long, device=x.device)
        if self.feature_grad_mult == 0:
            with torch.no_grad():
                return self._extract(x, length)
        feats, feats_lengths = self._extract(x, length)
        if self.feature_grad_mult != 1.0 and feats.requires_grad:
            feats = GradMultiply.apply(feats, self.feature_grad_mult)
        return feats, feats_lengths

    def _extract(self, x: torch.Tensor, length: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        if self.normalize_audio:
            x = normalize_waveform(x, length)
        x = x.unsqueeze(1)  # (B, 1, N)
        for block in self.layers:
            # ESPnet's ConvLayerBlock has no masked norm, so its GroupNorm block is run here by its
            # parts, as ConvLayerBlock.forward does (pinned in tests/test_espnet_internals.py).
            if isinstance(block.layer_norm, nn.GroupNorm):
                x = block.conv(x)
                length = torch.div(length - block.kernel_size, block.stride, rounding_mode="floor")
                length = (length + 1).clamp(min=0)
                x = nn.functional.gelu(masked_group_norm(x, length, block.layer_norm))
            else:
                x, length = block(x, length)
        return x.transpose(1, 2), length  # (B, C, T) -> (B, T, C)

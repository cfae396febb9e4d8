"""Attention kernels of the ILS encoder: how the shared relative bias and key padding reach the logits.

Every block adds the same bucketed relative bias to its attention logits and masks padded keys.
A kernel builds that shared structure once per forward pass (``prepare``) and every block's
attention uses it (``attend``). Two kernels, chosen by ``encoder_conf.attention_impl``:

* ``sdpa`` (:class:`SDPAAttentionKernel`): the bias as a dense ``(B, H, T, T)`` tensor with -inf on
  padded keys, through ``scaled_dot_product_attention``. On CUDA only the memory-efficient and math
  backends may run: flash attention takes no mask, and cuDNN's backward returns NaN in the query
  gradient with an ``attn_mask`` when T % 128 == 64 and a row's logits are all very negative
  (pytorch/pytorch#196678, a regression in torch 2.11, which we pin). Both remaining backends
  compute the bias gradient.
* ``flex`` (:class:`FlexAttentionKernel`): ``torch.nn.attention.flex_attention`` with the bias of each
  offset ``key - query`` looked up inside the kernel (``score_mod``; its gradient flows into the
  table) and padding as a block mask: nothing of size ``T x T`` is stored. Compiled on CUDA; eager
  (a reference that materialises the scores, forward only) elsewhere. FlexAttention has no
  dropout on attention probabilities, so this kernel requires ``attention_dropout_rate: 0``.

Neither kernel reads a tensor value on the host: the step never waits for the GPU here.
"""

import functools
from contextlib import nullcontext
from typing import Any, Callable, ContextManager, Dict, Optional, Union

import torch
from torch.nn import functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.nn.attention.flex_attention import create_block_mask, flex_attention

from espnet_ils.model.relative_bias import BucketRelativePositionBias, relative_position_bucket

# Backends verified for a float mask that requires grad (see the module docstring). Order is
# priority: memory-efficient first, math as the fallback for what it does not support.
CUDA_SDPA_BACKENDS = [SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH]

# The memory-efficient kernel copies a mask whose row stride is not a multiple of 16 elements,
# in every block; a mask allocated with that stride and sliced back to T is used in place.
MASK_ROW_ALIGNMENT = 16


def sdpa_backends(device: torch.device) -> ContextManager:
    """The SDPA backends our attention may use on ``device``: restricted on CUDA, free elsewhere."""
    return sdpa_kernel(CUDA_SDPA_BACKENDS) if device.type == "cuda" else nullcontext()


class SDPAAttentionKernel:
    """Dense bias ``(B, H, T, T)`` (or a bool key mask without bias) through SDPA."""

    name = "sdpa"

    def prepare(
        self,
        relative_bias: Optional[BucketRelativePositionBias],
        pad_mask: torch.Tensor,
        dtype: torch.dtype,
    ) -> torch.Tensor:
        """The mask every block shares.

        Args:
            relative_bias: The encoder's bias table, or None (HuBERT: padding only).
            pad_mask: ``(B, T)``, True on padded frames.
            dtype: Dtype of the attention logits (the autocast dtype under AMP): the
                memory-efficient kernel needs the bias in the query's dtype.

        Returns:
            Without bias, a bool ``(B, 1, 1, T)`` key mask (True = may attend). With bias, a float
            ``(B, H, T, T)`` view (row stride a multiple of 16) of the bias with -inf on padded
            keys. Padding is always applied, so nothing here asks whether there is any.
        """
        keys_padded = pad_mask[:, None, None, :]  # (B, 1, 1, T)
        if relative_bias is None:
            return ~keys_padded
        frames = pad_mask.size(1)
        bias = relative_bias(frames).to(dtype).masked_fill(keys_padded, float("-inf"))
        aligned = -(-frames // MASK_ROW_ALIGNMENT) * MASK_ROW_ALIGNMENT
        return F.pad(bias, (0, aligned - frames))[..., :frames]  # (B, H, T, T') -> (B, H, T, T)

    def attend(
        self,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        shared: torch.Tensor,
        dropout_p: float,
    ) -> torch.Tensor:
        """``(B, H, T, D/H)`` query, key, value -> ``(B, H, T, D/H)``."""
        with sdpa_backends(query.device):
            return F.scaled_dot_product_attention(
                query, key, value, attn_mask=shared, dropout_p=dropout_p
            )


@functools.cache
def _compiled_flex_attention() -> Callable:
    """FlexAttention compiled once per process (fused kernels on CUDA)."""
    return torch.compile(flex_attention, dynamic=True)


class FlexAttentionKernel:
    """Bias looked up per offset inside FlexAttention; padding as a block mask."""

    name = "flex"

    def prepare(
        self,
        relative_bias: Optional[BucketRelativePositionBias],
        pad_mask: torch.Tensor,
        dtype: torch.dtype,
    ) -> Dict[str, Any]:
        """What every block shares: the ``score_mod`` and the padding ``BlockMask``.

        Args:
            relative_bias: The encoder's bias table, or None (HuBERT: padding only).
            pad_mask: ``(B, T)``, True on padded frames.
            dtype: Unused by the lookup, which stays in the table's dtype (float32 under AMP):
                the kernel adds it to float32 scores.

        Returns:
            ``{"score_mod": fn or None, "block_mask": BlockMask}``. The bias of offset ``r`` is
            row ``r + T - 1`` of an ``(2T - 1, H)`` table gathered from the bucket table.
        """
        batch, frames = pad_mask.shape
        valid = ~pad_mask

        def key_is_valid(b, h, q_idx, kv_idx):
            return valid[b, kv_idx]

        block_mask = create_block_mask(
            key_is_valid, batch, None, frames, frames, device=pad_mask.device
        )
        if relative_bias is None:
            return {"score_mod": None, "block_mask": block_mask}
        offsets = torch.arange(1 - frames, frames, device=pad_mask.device)  # (2T - 1,)
        buckets = relative_position_bucket(
            offsets, relative_bias.num_buckets, relative_bias.max_distance
        )
        offset_bias = relative_bias.embedding(buckets)  # (2T - 1, H)

        def add_relative_bias(score, b, h, q_idx, kv_idx):
            # T - 1 from the table's shape, not a captured int: compiled with dynamic shapes, a
            # constant would be guarded on and recompile the kernel for every new length.
            return score + offset_bias[kv_idx - q_idx + offset_bias.size(0) // 2, h]

        return {"score_mod": add_relative_bias, "block_mask": block_mask}

    def attend(
        self,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        shared: Dict[str, Any],
        dropout_p: float,
    ) -> torch.Tensor:
        """``(B, H, T, D/H)`` query, key, value -> ``(B, H, T, D/H)``."""
        assert dropout_p == 0.0, "FlexAttentionKernel has no attention dropout"
        attention = _compiled_flex_attention() if query.device.type == "cuda" else flex_attention
        return attention(query, key, value, **shared)


AttentionKernel = Union[SDPAAttentionKernel, FlexAttentionKernel]
ATTENTION_KERNELS = {kernel.name: kernel for kernel in (SDPAAttentionKernel, FlexAttentionKernel)}


def build_attention_kernel(attention_impl: str, attention_dropout_rate: float) -> AttentionKernel:
    """The kernel named by ``encoder_conf.attention_impl``, checked against the encoder's options."""
    if attention_impl not in ATTENTION_KERNELS:
        raise ValueError(
            f"encoder_conf.attention_impl={attention_impl!r}: expected one of "
            f"{sorted(ATTENTION_KERNELS)}"
        )
    if attention_impl == "flex" and attention_dropout_rate > 0:
        raise ValueError(
            f"encoder_conf.attention_impl='flex' with attention_dropout_rate="
            f"{attention_dropout_rate}: FlexAttention has no dropout on attention probabilities; "
            "set attention_dropout_rate: 0.0 or use attention_impl: sdpa"
        )
    return ATTENTION_KERNELS[attention_impl]()

"""The ILS-SSL Transformer encoder (paper section 3.1): HuBERT's encoder plus a shared bucket relative bias.

Input is the projected conv features ``(B, T, D)`` at 50 Hz (after masking in pretraining). The
encoder adds a convolutional positional embedding, then runs ``num_blocks`` Transformer blocks that
all add the same bucketed relative position bias to their attention logits. BASE uses post-LN
blocks with a LayerNorm before block 1; LARGE uses pre-LN blocks and, like the original ILS code,
no final LayerNorm: the last block's residual stream is the output (ILS heads normalise it
themselves, see ``espnet_ils.model.loss``).
"""

import math
import random
from typing import Any, List, Optional, Sequence, Tuple, Union

import torch
from espnet2.asr.encoder.abs_encoder import AbsEncoder
from torch import nn
from torch.nn import functional as F
from typeguard import typechecked

from espnet_ils.model.attention import AttentionKernel, build_attention_kernel
from espnet_ils.model.relative_bias import BucketRelativePositionBias
from espnet_ils.model.strict_loading import require_exact_keys


class ConvPositionalEmbedding(nn.Module):
    """Grouped convolution over time whose output is added to the input (wav2vec 2.0).

    Args:
        embed_dim: Model width D.
        kernel_size: Kernel in frames (128); an even kernel drops the last output frame.
        groups: Convolution groups (16).
        dropout_rate: Encoder dropout, used only to scale the initial weights as fairseq does.
    """

    def __init__(self, embed_dim: int, kernel_size: int, groups: int, dropout_rate: float):
        super().__init__()
        if embed_dim % groups:
            raise ValueError(
                f"encoder_conf.conv_pos_groups={groups} must divide output_size={embed_dim}"
            )
        conv = nn.Conv1d(embed_dim, embed_dim, kernel_size, padding=kernel_size // 2, groups=groups)
        nn.init.normal_(
            conv.weight, 0.0, math.sqrt(4 * (1.0 - dropout_rate) / (kernel_size * embed_dim))
        )
        nn.init.zeros_(conv.bias)
        self.conv = nn.utils.parametrizations.weight_norm(conv, name="weight", dim=2)
        self.num_remove = 1 if kernel_size % 2 == 0 else 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, T, D)`` -> positional term ``(B, T, D)``."""
        y = self.conv(x.transpose(1, 2))  # (B, D, T + 1) for an even kernel
        if self.num_remove:
            y = y[..., : -self.num_remove]
        return F.gelu(y).transpose(1, 2)


class SelfAttention(nn.Module):
    """Multi-head self-attention; the logits' bias and padding are applied by ``kernel``.

    Args:
        embed_dim: Model width D.
        attention_heads: Heads H; D must divide by H.
        dropout_rate: Dropout on the attention probabilities.
        kernel: The encoder's attention kernel (``espnet_ils.model.attention``), shared by all blocks.
    """

    def __init__(
        self, embed_dim: int, attention_heads: int, dropout_rate: float, kernel: AttentionKernel
    ):
        super().__init__()
        if embed_dim % attention_heads:
            raise ValueError(
                f"encoder_conf.attention_heads={attention_heads} must divide output_size={embed_dim}"
            )
        self.heads = attention_heads
        self.dropout_rate = dropout_rate
        self.kernel = kernel
        self.q_proj = nn.Linear(embed_dim, embed_dim)
        self.k_proj = nn.Linear(embed_dim, embed_dim)
        self.v_proj = nn.Linear(embed_dim, embed_dim)
        self.out_proj = nn.Linear(embed_dim, embed_dim)

    def forward(self, x: torch.Tensor, attn_mask: Any) -> torch.Tensor:
        """Attend.

        Args:
            x: ``(B, T, D)``.
            attn_mask: What ``kernel.prepare`` built for this batch (relative bias and padding),
                the same object for all layers.

        Returns:
            ``(B, T, D)``.
        """
        batch, frames, dim = x.shape

        def split_heads(t: torch.Tensor) -> torch.Tensor:
            return t.view(batch, frames, self.heads, dim // self.heads).transpose(
                1, 2
            )  # (B, H, T, D/H)

        out = self.kernel.attend(
            split_heads(self.q_proj(x)),
            split_heads(self.k_proj(x)),
            split_heads(self.v_proj(x)),
            attn_mask,
            self.dropout_rate if self.training else 0.0,
        )
        return self.out_proj(
            out.transpose(1, 2).reshape(batch, frames, dim)
        )  # (B, H, T, D/H) -> (B, T, D)


class EncoderLayer(nn.Module):
    """Parameters of one Transformer block; subclasses fix where the LayerNorms sit.

    Args:
        embed_dim: Model width D.
        attention_heads: Heads H.
        linear_units: Feed-forward width (3072 BASE, 4096 LARGE).
        dropout_rate: Dropout after attention and after the feed-forward block.
        attention_dropout_rate: Dropout on attention probabilities.
        activation_dropout_rate: Dropout after the feed-forward GELU.
        kernel: The encoder's attention kernel.
    """

    def __init__(
        self,
        embed_dim: int,
        attention_heads: int,
        linear_units: int,
        dropout_rate: float,
        attention_dropout_rate: float,
        activation_dropout_rate: float,
        kernel: AttentionKernel,
    ):
        super().__init__()
        self.self_attn = SelfAttention(embed_dim, attention_heads, attention_dropout_rate, kernel)
        self.self_attn_layer_norm = nn.LayerNorm(embed_dim)
        self.fc1 = nn.Linear(embed_dim, linear_units)
        self.fc2 = nn.Linear(linear_units, embed_dim)
        self.final_layer_norm = nn.LayerNorm(embed_dim)
        self.dropout = nn.Dropout(dropout_rate)
        self.activation_dropout = nn.Dropout(activation_dropout_rate)

    def feed_forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.fc2(self.activation_dropout(F.gelu(self.fc1(x)))))


class PostLNEncoderLayer(EncoderLayer):
    """BASE block: ``x = LN(x + Attn(x)); x = LN(x + FFN(x))``."""

    def forward(self, x: torch.Tensor, attn_mask: Any) -> torch.Tensor:
        x = self.self_attn_layer_norm(x + self.dropout(self.self_attn(x, attn_mask)))
        return self.final_layer_norm(x + self.feed_forward(x))


class PreLNEncoderLayer(EncoderLayer):
    """LARGE block: ``x = x + Attn(LN(x)); x = x + FFN(LN(x))``."""

    def forward(self, x: torch.Tensor, attn_mask: Any) -> torch.Tensor:
        x = x + self.dropout(self.self_attn(self.self_attn_layer_norm(x), attn_mask))
        return x + self.feed_forward(self.final_layer_norm(x))


def init_bert_params(module: nn.Module) -> None:
    """BERT initialisation used by HuBERT's encoder: N(0, 0.02) weights, zero biases."""
    if isinstance(module, nn.Linear):
        nn.init.normal_(module.weight, 0.0, 0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.Embedding):
        nn.init.normal_(module.weight, 0.0, 0.02)


class ILSTransformerEncoder(AbsEncoder):
    """ILS-SSL / HuBERT Transformer encoder with a shared bucket relative position bias.

    Args:
        input_size: Width of the input features; must equal ``output_size`` (project conv
            features with the ``feature_projection`` preencoder first).
        output_size: Model width D (768 BASE, 1024 LARGE).
        attention_heads: Heads H (12 BASE, 16 LARGE).
        linear_units: Feed-forward width (3072 BASE, 4096 LARGE).
        num_blocks: Transformer blocks (12 BASE, 24 LARGE).
        dropout_rate: Dropout on the encoder input and inside every block (0.1).
        attention_dropout_rate: Dropout on attention probabilities (0.1).
        activation_dropout_rate: Dropout after the feed-forward GELU (0.0 pretraining).
        layer_drop_rate: Probability of skipping each block in training (0.05 pretraining, 0.1
            fine-tuning). The relative bias is computed before the blocks, so it survives any drop.
        normalize_before: False: post-LN blocks with a LayerNorm before block 1 (BASE); True: pre-LN
            blocks and no final LayerNorm (LARGE).
        conv_pos_kernel: Kernel of the convolutional positional embedding in frames (128).
        conv_pos_groups: Its groups (16).
        relative_position_bias: Add the bucket relative bias (ILS-SSL); False gives HuBERT.
        num_buckets: Relative-bias buckets over both directions (320).
        max_distance: Offset in frames where the buckets saturate (800).
        interctc_layer_idx: 1-based blocks whose outputs feed ESPnet's intermediate CTC
            (``model_conf.interctc_weight``), only where this encoder is the ASR task's own
            ``encoder: ils_transformer`` (as in a converted fine-tuned model). Inside
            ``frontend: espnet_ssl`` it cannot act: that front end passes one block (or a
            weighted sum) to the ASR encoder, so ILS-FT through it is not possible; pretraining
            configs refuse it (``espnet_ils.train.tasks``).
        interctc_use_conditioning: Self-conditioned intermediate CTC (ESPnet's option; ESPnet's
            ASR model attaches the ``conditioning_layer`` it needs), where the above acts.
        attention_impl: How the bias and padding reach the logits (``espnet_ils.model.attention``):
            ``sdpa`` (dense bias, restricted SDPA backends on CUDA) or ``flex`` (FlexAttention,
            no ``T x T`` tensor, needs ``attention_dropout_rate: 0``).
    """

    @typechecked
    def __init__(
        self,
        input_size: int,
        output_size: int = 768,
        attention_heads: int = 12,
        linear_units: int = 3072,
        num_blocks: int = 12,
        dropout_rate: float = 0.1,
        attention_dropout_rate: float = 0.1,
        activation_dropout_rate: float = 0.0,
        layer_drop_rate: float = 0.0,
        normalize_before: bool = False,
        conv_pos_kernel: int = 128,
        conv_pos_groups: int = 16,
        relative_position_bias: bool = True,
        num_buckets: int = 320,
        max_distance: int = 800,
        interctc_layer_idx: Sequence[int] = (),
        interctc_use_conditioning: bool = False,
        attention_impl: str = "sdpa",
    ):
        super().__init__()
        self.attention_kernel = build_attention_kernel(attention_impl, attention_dropout_rate)
        if input_size != output_size:
            raise ValueError(
                f"encoder input_size={input_size} differs from encoder_conf.output_size="
                f"{output_size}: set `preencoder: feature_projection` with "
                f"`preencoder_conf: {{output_size: {output_size}}}` to project the conv features"
            )
        if not 0.0 <= layer_drop_rate < 1.0:
            raise ValueError(f"encoder_conf.layer_drop_rate={layer_drop_rate}: must be in [0, 1)")
        for idx in interctc_layer_idx:
            if not 0 < idx < num_blocks:
                raise ValueError(
                    f"encoder_conf.interctc_layer_idx has {idx}: intermediate CTC layers are "
                    f"1-based blocks below the top one, 1..{num_blocks - 1}"
                )
        self._output_size = output_size
        self.layer_drop_rate = layer_drop_rate
        self.normalize_before = normalize_before
        self.interctc_layer_idx = list(interctc_layer_idx)
        self.interctc_use_conditioning = interctc_use_conditioning

        self.pos_conv = ConvPositionalEmbedding(
            output_size, conv_pos_kernel, conv_pos_groups, dropout_rate
        )
        # Post-LN normalises the input of block 1; pre-LN has no encoder-level LayerNorm at all.
        self.layer_norm = None if normalize_before else nn.LayerNorm(output_size)
        self.dropout = nn.Dropout(dropout_rate)
        self.relative_bias = (
            BucketRelativePositionBias(attention_heads, num_buckets, max_distance)
            if relative_position_bias
            else None
        )
        layer_class = PreLNEncoderLayer if normalize_before else PostLNEncoderLayer
        self.encoders = nn.ModuleList(
            layer_class(
                output_size,
                attention_heads,
                linear_units,
                dropout_rate,
                attention_dropout_rate,
                activation_dropout_rate,
                self.attention_kernel,
            )
            for _ in range(num_blocks)
        )
        self.encoders.apply(init_bert_params)
        if self.relative_bias is not None:
            self.relative_bias.apply(init_bert_params)
        require_exact_keys(self)

    def output_size(self) -> int:
        return self._output_size

    def attention_mask(self, pad_mask: torch.Tensor, dtype: torch.dtype) -> Any:
        """The one attention mask shared by all blocks: relative bias and key padding.

        Args:
            pad_mask: ``(B, T)``, True on padded frames.
            dtype: Dtype of the attention logits (the autocast dtype under AMP).

        Returns:
            What the attention kernel uses (``espnet_ils.model.attention``): for ``sdpa`` the bias
            ``(B, H, T, T)`` with -inf on padded keys, or a bool ``(B, 1, 1, T)`` key mask without
            the bias.
        """
        return self.attention_kernel.prepare(self.relative_bias, pad_mask, dtype)

    def layer_outputs(
        self,
        xs_pad: torch.Tensor,
        ilens: torch.Tensor,
        num_blocks: Optional[int] = None,
        masks: Optional[torch.Tensor] = None,
        ctc: Optional[nn.Module] = None,
    ) -> Tuple[List[torch.Tensor], torch.Tensor]:
        """Run the blocks up to ``num_blocks`` and return every layer on the way.

        Layers are numbered like the paper's supervised layers: layer k (1-based) is the output of
        block k, layer 0 the input of block 1 (the input plus the convolutional positional
        embedding, after the encoder LayerNorm of post-LN models and the input dropout). The
        relative bias is computed before the blocks, so layer k does not depend on the blocks
        above it, and the blocks above ``num_blocks`` do not run.

        Args:
            xs_pad: Input features ``(B, T, D)`` at 50 Hz.
            ilens: Valid frames per utterance ``(B,)``.
            num_blocks: Blocks to run, ``0..num_blocks`` of the constructor; default all.
            masks: Optional ``(B, T)`` padding mask, True on padded frames; derived from
                ``ilens`` when absent.
            ctc: ESPnet CTC module, needed only for self-conditioned intermediate CTC.

        Returns:
            ``[h_0, h_1, ..., h_k]`` for ``k = num_blocks``, each ``(B, T, D)`` (index k = layer
            k; padded frames hold arbitrary values), and the valid frames ``(B,)``.
        """
        if num_blocks is None:
            num_blocks = len(self.encoders)
        if not 0 <= num_blocks <= len(self.encoders):
            raise ValueError(
                f"num_blocks={num_blocks}: this encoder has blocks 1..{len(self.encoders)}"
            )
        if masks is None:
            frames = torch.arange(xs_pad.size(1), device=xs_pad.device)
            pad_mask = frames[None, :] >= ilens.to(xs_pad.device)[:, None]  # (B, T)
        else:
            pad_mask = masks
        x = xs_pad.masked_fill(pad_mask.unsqueeze(-1), 0.0)
        x = x + self.pos_conv(x)
        if self.layer_norm is not None:
            x = self.layer_norm(x)
        x = self.dropout(x)

        device_type = x.device.type
        logits_dtype = (
            torch.get_autocast_dtype(device_type)
            if torch.is_autocast_enabled(device_type)
            else x.dtype
        )
        attn_mask = self.attention_mask(pad_mask, logits_dtype)

        # Holding every layer costs nothing in training (autograd keeps each block's input).
        layers = [x]
        for index, layer in enumerate(self.encoders[:num_blocks], start=1):
            # Drawn on the host (Python's RNG, seeded by ESPnet): no device tensor is read.
            if not (self.training and random.random() < self.layer_drop_rate):
                x = layer(x, attn_mask)
            layers.append(x)
            if index in self.interctc_layer_idx and self.interctc_use_conditioning:
                x = x + self.conditioning_layer(ctc.softmax(x))
        return layers, (~pad_mask).sum(dim=1)

    def forward(
        self,
        xs_pad: torch.Tensor,
        ilens: torch.Tensor,
        prev_states: Optional[torch.Tensor] = None,
        masks: Optional[torch.Tensor] = None,
        ctc: Optional[nn.Module] = None,
        return_all_hs: bool = False,
    ) -> Tuple[
        Union[torch.Tensor, Tuple[torch.Tensor, List]], torch.Tensor, Optional[torch.Tensor]
    ]:
        """Encode (all blocks; :meth:`layer_outputs` stops earlier and returns layer 0 too).

        Args:
            xs_pad: Input features ``(B, T, D)`` at 50 Hz.
            ilens: Valid frames per utterance ``(B,)``.
            prev_states: Unused (streaming state in ESPnet's interface).
            masks: Optional ``(B, T)`` padding mask, True on padded frames (ESPnet SSL passes it);
                derived from ``ilens`` when absent.
            ctc: ESPnet CTC module, needed only for self-conditioned intermediate CTC.
            return_all_hs: Also return every block's output (the SSL losses need them).

        Returns:
            ``(out, olens, None)`` where ``out`` is ``(B, T, D)``; with ``return_all_hs`` it is
            ``(out, [h_1, ..., h_N])`` (block outputs, 1-based block k at index k-1, h_N == out);
            with intermediate CTC it is ``(out, [(k, h_k), ...])``.
        """
        layers, olens = self.layer_outputs(xs_pad, ilens, masks=masks, ctc=ctc)
        out = layers[-1]  # the top block is never an intermediate CTC layer (checked in __init__)
        if return_all_hs:
            return (out, layers[1:]), olens, None
        if self.interctc_layer_idx:
            inter = [(k, layers[k]) for k in sorted(set(self.interctc_layer_idx))]  # block order
            return (out, inter), olens, None
        return out, olens, None

"""The ILS-SSL multi-layer masked prediction loss (paper eq. 1-2).

For every supervised block l (1-based) and frame t, the block output h_t^l is projected by W_l to
``final_dim``, and each cluster c scores ``cos(W_l h_t^l, e_c^l) / logit_temp``. The loss is the
cross-entropy of the k-means target z_t under the softmax over clusters, for all supervised layers:

    L = masked_weight   * sum_l sum_{t masked}   CE_l(t) / M
      + unmasked_weight * sum_l sum_{t unmasked} CE_l(t) / M
      + feature_penalty_weight * mean(conv_features^2)

where M is the number of masked frames in the batch (padding excluded). This is the original
implementation's normalisation: layers are summed 1:1 and the sum is divided once by M (fairseq's
``sample_size``), also for the unmasked term. The feature penalty is HuBERT's ``features_pen``
(fairseq ``loss_weights: [10]``).

By default each supervised layer has its own projection and codeword table (the paper's model);
``share_heads: true`` shares them (the "share IL weights" ablation, table 3). Pre-LN encoders
(LARGE) set ``layer_norm_inputs: true``: each supervised layer then gets its own new LayerNorm
before its head, in both cases.
"""

from typing import Dict, List, Optional, Sequence, Tuple

import torch
from espnet2.ssl.loss.abs_loss import AbsSSLLoss
from torch import nn
from torch.nn import functional as F
from typeguard import typechecked

from espnet_ils.model.strict_loading import require_exact_keys


class CosinePredictionHead(nn.Module):
    """Projection W and codeword table e of one supervised layer.

    Args:
        input_size: Encoder width D.
        final_dim: Projection width (256).
        num_classes: Number of k-means clusters C.
        logit_temp: Temperature tau (0.1).
    """

    def __init__(self, input_size: int, final_dim: int, num_classes: int, logit_temp: float):
        super().__init__()
        self.proj = nn.Linear(input_size, final_dim)
        self.codewords = nn.Parameter(torch.empty(num_classes, final_dim))
        nn.init.uniform_(self.codewords)  # as the original's label_embs_concat
        self.logit_temp = logit_temp

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Frames ``(..., D)`` -> logits ``(..., C)`` in float32.

        The projection follows autocast (bf16 under AMP); the cosine similarities are computed in
        float32 with autocast off: with tau = 0.1 the logits span [-10, 10], where bf16 keeps
        only 2-3 significant digits.
        """
        projected = self.proj(x)
        with torch.autocast(device_type=x.device.type, enabled=False):
            proj = F.normalize(projected.float(), dim=-1, eps=1e-8)
            codewords = F.normalize(self.codewords.float(), dim=-1, eps=1e-8)
            return proj @ codewords.t() / self.logit_temp


class ILSLoss(AbsSSLLoss):
    """Masked prediction of k-means targets on several encoder blocks.

    Args:
        encoder_output_size: Encoder width D (set by ESPnet's SSL task).
        num_classes: k-means clusters C (100 for iteration 1, 500 for iteration 2). The token list
            must hold these C ids in order, then ``<unk>``.
        layers: Supervised blocks, 1-based as in the paper: ``[4, 12]`` BASE, ``[9, 24]`` LARGE,
            ``[12]`` for HuBERT.
        final_dim: Projection width (256).
        logit_temp: Cosine temperature tau (0.1).
        share_heads: One projection and codeword table for all layers (ablation); default separate.
        layer_norm_inputs: A new LayerNorm per supervised layer before its head (pre-LN encoders).
        masked_weight: Weight of the masked-frame term (1.0).
        unmasked_weight: Weight of the unmasked-frame term (0.0 in the paper).
        feature_penalty_weight: Weight of the mean squared conv feature (10.0 in HuBERT/ILS-SSL).

    Labels are checked where they are still on the host, with their utterance ids: their range and
    count against the audio in ``espnet_ils.train.collate`` (``collate_fn_conf.label_length_tolerance``).
    The loss itself reads no tensor value on the host, so a GPU step never waits for it.
    """

    @typechecked
    def __init__(
        self,
        encoder_output_size: int,
        num_classes: int,
        layers: Sequence[int] = (4, 12),
        final_dim: int = 256,
        logit_temp: float = 0.1,
        share_heads: bool = False,
        layer_norm_inputs: bool = False,
        masked_weight: float = 1.0,
        unmasked_weight: float = 0.0,
        feature_penalty_weight: float = 10.0,
    ):
        super().__init__()
        self.layers = _check_layers(layers)
        if num_classes < 2:
            raise ValueError(f"loss conf num_classes={num_classes}: need at least 2 clusters")
        if logit_temp <= 0:
            raise ValueError(f"loss conf logit_temp={logit_temp}: must be > 0 (paper: 0.1)")
        if masked_weight < 0 or unmasked_weight < 0 or masked_weight + unmasked_weight == 0:
            raise ValueError(
                f"loss conf masked_weight={masked_weight}, unmasked_weight={unmasked_weight}: "
                "weights must be >= 0 and not both 0"
            )
        self.num_classes = num_classes
        self.masked_weight = masked_weight
        self.unmasked_weight = unmasked_weight
        self.feature_penalty_weight = feature_penalty_weight

        num_heads = 1 if share_heads else len(self.layers)
        self.heads = nn.ModuleList(
            CosinePredictionHead(encoder_output_size, final_dim, num_classes, logit_temp)
            for _ in range(num_heads)
        )
        self.input_norms = nn.ModuleList(
            nn.LayerNorm(encoder_output_size) if layer_norm_inputs else nn.Identity()
            for _ in self.layers
        )

        # Contract with ESPnet's ESPnetSSLModel: which utils it must run, which data it passes.
        self.util_attributes = ["mask"]
        self.required_inputs = [
            "encoder_output",
            "encoder_output_lengths",
            "text",
            "text_lengths",
            "mask_info",
        ]
        if feature_penalty_weight > 0:
            self.required_inputs += ["frontend", "frontend_lengths"]
        require_exact_keys(self)

    def head(self, index: int) -> CosinePredictionHead:
        """The head of the ``index``-th supervised layer (0-based position in ``layers``)."""
        return self.heads[0 if len(self.heads) == 1 else index]

    def layer_logits(self, encoder_output: List[torch.Tensor], index: int) -> torch.Tensor:
        """Logits ``(B, T, C)`` of the ``index``-th supervised layer for every frame."""
        hidden = encoder_output[self.layers[index] - 1]
        return self.head(index)(self.input_norms[index](hidden))

    def forward(
        self,
        encoder_output: List[torch.Tensor],
        encoder_output_lengths: torch.Tensor,
        text: torch.Tensor,
        text_lengths: torch.Tensor,
        mask_info: Dict[str, Optional[torch.Tensor]],
        frontend: Optional[torch.Tensor] = None,
        frontend_lengths: Optional[torch.Tensor] = None,
    ) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
        """Compute the loss.

        Args:
            encoder_output: Block outputs ``[h_1, ..., h_N]``, each ``(B, T, D)``.
            encoder_output_lengths: Valid frames ``(B,)``.
            text: k-means targets ``(B, L)`` in ``[0, num_classes)``, padded with -1 (ESPnet's
                collate; ``espnet_ils.train.collate`` has checked the range and ``L`` per utterance).
            text_lengths: Target counts ``(B,)``; labels beyond an utterance's valid frames, and
                frames beyond its labels, are left out.
            mask_info: ``{"mask_m": (B, T) bool}`` from ESPnet's ``Masking``.
            frontend: Conv features ``(B, T, C)`` for the feature penalty.
            frontend_lengths: Their valid frames ``(B,)``.

        Returns:
            The scalar float32 loss and stats, detached 0-dim tensors: per layer l,
            ``ils_loss_m_l`` (masked CE per masked frame), ``ils_acc_m_l`` / ``ils_acc_u_l``
            (accuracy on masked / unmasked frames), and ``ils_loss_u_l`` when unmasked frames
            are weighted; plus ``features_pen``.
        """
        num_blocks = len(encoder_output)
        if max(self.layers) > num_blocks:
            # ILSSSLTask checks layers against the encoder's depth when it builds the model, so
            # there blocks went missing in this step: ESPnet's e_branchformer returns no output
            # for a block its layer drop skipped (and shifts the blocks above it down).
            raise ValueError(
                f"loss conf layers={list(self.layers)}: the encoder returned only {num_blocks} "
                "blocks. Either it has fewer blocks (layers are 1-based) or, with ESPnet's "
                "e_branchformer, encoder_conf.layer_drop_rate left the dropped blocks out: set "
                "layer_drop_rate: 0 with the ils loss"
            )
        targets = _aligned_targets(
            text, text_lengths, encoder_output_lengths, encoder_output[0].size(1)
        )
        valid = targets >= 0  # (B, T)
        mask_m = mask_info.get("mask_m")
        if mask_m is None:
            raise ValueError(
                "ILSLoss needs masked frames: util conf mask_prob is 0 (masked prediction "
                "without masks has no masked term)"
            )
        if mask_m.shape != valid.shape:
            raise ValueError(
                f"the encoder turned {mask_m.size(1)} masked input frames into {valid.size(1)} "
                "output frames: the ils loss predicts the target of each masked frame, so the "
                "encoder must keep the frame rate. ESPnet's encoders subsample by default: set "
                "encoder_conf.input_layer: null (or linear)"
            )
        # ESPnet's Masking builds it on the CPU; a blocking copy would wait for the GPU queue.
        mask_m = mask_m.to(valid.device, non_blocking=True)
        masked = valid & mask_m
        unmasked = valid & ~mask_m
        num_masked = masked.sum().clamp(min=1)

        total = encoder_output[0].new_zeros((), dtype=torch.float32)
        stats: Dict[str, torch.Tensor] = {}
        for index, layer in enumerate(self.layers):
            logits = self.layer_logits(encoder_output, index)  # (B, T, C), float32
            # Every frame, with -1 targets ignored (0 loss): no boolean indexing, which would
            # have to read the number of selected frames on the host.
            ce = F.cross_entropy(
                logits.flatten(0, 1), targets.flatten(), ignore_index=-1, reduction="none"
            ).view_as(targets)  # (B, T)
            loss_m = (ce * masked).sum() / num_masked
            total = total + self.masked_weight * loss_m
            stats[f"ils_loss_m_{layer}"] = loss_m.detach()
            if self.unmasked_weight > 0:
                loss_u = (ce * unmasked).sum() / num_masked
                total = total + self.unmasked_weight * loss_u
                stats[f"ils_loss_u_{layer}"] = loss_u.detach()
            with torch.no_grad():
                correct = logits.argmax(-1) == targets
                stats[f"ils_acc_m_{layer}"] = _accuracy(correct, masked)
                stats[f"ils_acc_u_{layer}"] = _accuracy(correct, unmasked)

        if self.feature_penalty_weight > 0:
            penalty = _feature_penalty(frontend, frontend_lengths)
            total = total + self.feature_penalty_weight * penalty
            stats["features_pen"] = penalty.detach()
        return total, stats


def _aligned_targets(
    text: torch.Tensor, text_lengths: torch.Tensor, frame_lengths: torch.Tensor, num_frames: int
) -> torch.Tensor:
    """Targets ``(B, T)`` aligned with the encoder frames, -1 where there is none.

    Frame t of utterance b gets label t if ``t < min(text_lengths[b], frame_lengths[b])``.
    """
    targets = text.new_full((text.size(0), num_frames), -1)
    usable = min(num_frames, text.size(1))
    targets[:, :usable] = text[:, :usable]
    frames = torch.arange(num_frames, device=text.device)
    limit = torch.minimum(text_lengths, frame_lengths.to(text_lengths.device))
    return targets.masked_fill(frames[None, :] >= limit[:, None], -1).long()


def _check_layers(layers: Sequence[int]) -> Tuple[int, ...]:
    layers = tuple(layers)
    if not layers:
        raise ValueError("loss conf layers=[]: give at least one supervised block, e.g. [4, 12]")
    for layer in layers:
        if layer < 1:
            raise ValueError(
                f"loss conf layers={list(layers)}: block {layer} is invalid; supervised layers "
                "are 1-based block outputs (the paper's K, e.g. [4, 12] for BASE)"
            )
    if len(set(layers)) != len(layers):
        raise ValueError(f"loss conf layers={list(layers)}: a supervised block is repeated")
    return layers


def _accuracy(correct: torch.Tensor, selection: torch.Tensor) -> torch.Tensor:
    """Share of ``correct`` among the selected frames (0 when none is selected), a 0-dim tensor."""
    return (correct & selection).sum() / selection.sum().clamp(min=1)


def _feature_penalty(frontend: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Mean squared conv feature over valid frames (HuBERT's ``features_pen``), in float32."""
    frames = torch.arange(frontend.size(1), device=frontend.device)
    valid = frames[None, :] < lengths[:, None]  # (B, T)
    squares = frontend.float().pow(2).sum(-1)  # (B, T)
    return (squares * valid).sum() / (valid.sum() * frontend.size(-1)).clamp(min=1)

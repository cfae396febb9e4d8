"""T5-style bucketed relative position bias, shared by every attention layer (ILS-SSL, WavLM).

The bias is one table of ``num_buckets x attention_heads`` scalars. For a pair of frames it is looked
up by the bucket of the key's offset from the query (``key - query``, in frames at 50 Hz) and added to
the attention logits of every layer. It is computed once per forward pass.
"""

import math

import torch
from torch import nn


def relative_position_bucket(
    relative_position: torch.Tensor, num_buckets: int = 320, max_distance: int = 800
) -> torch.Tensor:
    """Map relative offsets to bidirectional T5 buckets.

    Half of the buckets serve each direction; keys to the right of the query (offset > 0) use the
    upper half. Within a half, offsets below ``num_buckets // 4`` get one bucket each, larger
    offsets get logarithmically wider buckets up to ``max_distance``, and everything beyond
    saturates in the last bucket of the half. Offset 0 is bucket 0.

    Args:
        relative_position: Integer offsets ``key - query`` in frames, any shape.
        num_buckets: Total number of buckets for both directions (320 in ILS-SSL).
        max_distance: Offset in frames where the logarithmic buckets end (800 in ILS-SSL).

    Returns:
        Bucket ids in ``[0, num_buckets)``, same shape as ``relative_position``, dtype long.
    """
    half = num_buckets // 2
    max_exact = half // 2
    bucket_base = (relative_position > 0).long() * half
    distance = relative_position.abs()
    # Clamp before the log so offset 0 (handled by the exact branch) does not produce -inf.
    log_ratio = torch.log(distance.clamp(min=1).float() / max_exact) / math.log(
        max_distance / max_exact
    )
    log_bucket = max_exact + (log_ratio * (half - max_exact)).long()
    log_bucket = log_bucket.clamp(max=half - 1)
    return bucket_base + torch.where(distance < max_exact, distance, log_bucket)


class BucketRelativePositionBias(nn.Module):
    """Learned per-head bias for each relative-position bucket.

    Args:
        attention_heads: Number of attention heads H (12 for BASE, 16 for LARGE).
        num_buckets: Number of buckets over both directions (320).
        max_distance: Saturation distance in frames (800; WavLM uses 1280).
    """

    def __init__(self, attention_heads: int, num_buckets: int = 320, max_distance: int = 800):
        super().__init__()
        if num_buckets < 4 or num_buckets % 2:
            raise ValueError(
                f"encoder_conf.num_buckets={num_buckets}: must be an even number >= 4 "
                "(half of the buckets serve each direction); ILS-SSL uses 320"
            )
        if max_distance <= num_buckets // 4:
            raise ValueError(
                f"encoder_conf.max_distance={max_distance}: must exceed num_buckets // 4 = "
                f"{num_buckets // 4}, the last exact offset; ILS-SSL uses 800"
            )
        self.num_buckets = num_buckets
        self.max_distance = max_distance
        self.embedding = nn.Embedding(num_buckets, attention_heads)

    def forward(self, num_frames: int) -> torch.Tensor:
        """Bias for a square self-attention over ``num_frames`` frames.

        Args:
            num_frames: Sequence length T in frames.

        Returns:
            Bias of shape ``(1, H, T, T)``: entry ``[0, h, q, k]`` is added to the logit of query
            ``q`` attending key ``k`` in head ``h``.
        """
        positions = torch.arange(num_frames, device=self.embedding.weight.device)
        offsets = positions[None, :] - positions[:, None]  # (T, T): key - query
        buckets = relative_position_bucket(offsets, self.num_buckets, self.max_distance)
        return self.embedding(buckets).permute(2, 0, 1).unsqueeze(0)  # (T, T, H) -> (1, H, T, T)

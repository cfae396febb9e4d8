import math

import pytest
import torch

from espnet_ils.model.relative_bias import BucketRelativePositionBias, relative_position_bucket

OFFSETS = [0, 1, -1, 79, -79, 80, -80, 81, -81, 777, -777, 778, -778, 800, -800, 5000, -5000]


def reference_bucket(offset: int, num_buckets: int = 320, max_distance: int = 800) -> int:
    """ILS-SSL's bidirectional T5 buckets (espnet_ils.model.relative_bias) in scalar Python: 160 buckets
    per side, 80 exact, log up to 800."""
    half = num_buckets // 2
    exact = half // 2
    side = half if offset > 0 else 0
    distance = abs(offset)
    if distance < exact:
        return side + distance
    log_bucket = exact + int(
        math.log(distance / exact) / math.log(max_distance / exact) * (half - exact)
    )
    return side + min(log_bucket, half - 1)


@pytest.mark.parametrize("offset", OFFSETS)
def test_bucket_matches_independent_formula(offset):
    got = relative_position_bucket(torch.tensor([offset]))
    assert int(got) == reference_bucket(offset)


def test_bucket_landmarks():
    buckets = {o: int(relative_position_bucket(torch.tensor(o))) for o in OFFSETS}
    assert buckets[0] == 0
    assert buckets[1] == 161 and buckets[-1] == 1  # keys to the right use the upper half
    assert buckets[79] == 160 + 79 and buckets[-79] == 79  # last exact bucket
    assert buckets[80] == 160 + 80 and buckets[-80] == 80  # first logarithmic bucket
    # saturation starts at |offset| = 778 and holds beyond max_distance
    assert buckets[777] == 318 and buckets[-777] == 158
    for offset in (778, 800, 5000):
        assert buckets[offset] == 319 and buckets[-offset] == 159


def test_bias_is_one_table_indexed_by_bucket():
    bias = BucketRelativePositionBias(attention_heads=3)
    assert bias.embedding.weight.shape == (320, 3)
    frames = 50
    out = bias(frames)
    assert out.shape == (1, 3, frames, frames)
    query, key = 7, 30
    bucket = int(relative_position_bucket(torch.tensor(key - query)))
    torch.testing.assert_close(out[0, :, query, key], bias.embedding.weight[bucket])


@pytest.mark.parametrize(
    "num_buckets, max_distance, match",
    [(319, 800, "num_buckets=319"), (320, 80, "max_distance=80")],
)
def test_bad_bucket_options_raise(num_buckets, max_distance, match):
    with pytest.raises(ValueError, match=match):
        BucketRelativePositionBias(4, num_buckets, max_distance)

"""Attention kernels: flex equals SDPA (forward; flex has no CPU backward), the SDPA mask's layout,
and the CUDA backend restriction that keeps cuDNN and flash attention away from the bias."""

import pytest
import torch
from helpers.models import tiny_encoder
from torch.nn.attention import SDPBackend

from espnet_ils.model.attention import (
    CUDA_SDPA_BACKENDS,
    FlexAttentionKernel,
    SDPAAttentionKernel,
    sdpa_backends,
)
from espnet_ils.model.relative_bias import BucketRelativePositionBias

HEADS, HEAD_DIM = 4, 8


def pad_mask(lengths, frames):
    return torch.arange(frames)[None, :] >= torch.tensor(lengths)[:, None]


def attend(kernel, relative_bias, q, k, v, mask):
    shared = kernel.prepare(relative_bias, mask, q.dtype)
    return kernel.attend(q, k, v, shared, 0.0)


# 192 % 128 == 64: the length class of the cuDNN bug; 1000 > max_distance: saturated buckets.
@pytest.mark.parametrize("frames", [37, 192, 1000])
@pytest.mark.parametrize("padded", [False, True])
@pytest.mark.parametrize("with_bias", [False, True])
def test_flex_equals_sdpa(frames, padded, with_bias):
    relative_bias = BucketRelativePositionBias(HEADS) if with_bias else None
    if relative_bias is not None:
        torch.nn.init.normal_(relative_bias.embedding.weight, 0.0, 2.0)  # large, varied logits
    q, k, v = (torch.randn(2, HEADS, frames, HEAD_DIM) for _ in range(3))
    mask = pad_mask([frames, frames - 29 if padded else frames], frames)
    with torch.no_grad():
        expected = attend(SDPAAttentionKernel(), relative_bias, q, k, v, mask)
        got = attend(FlexAttentionKernel(), relative_bias, q, k, v, mask)
    torch.testing.assert_close(got, expected, atol=2e-5, rtol=1e-4)


def test_flex_encoder_equals_sdpa_encoder_on_a_padded_batch():
    sdpa = tiny_encoder().eval()
    flex = tiny_encoder(attention_impl="flex").eval()
    flex.load_state_dict(sdpa.state_dict())
    with torch.no_grad():
        sdpa.relative_bias.embedding.weight.normal_(0.0, 1.0)
        flex.relative_bias.embedding.weight.copy_(sdpa.relative_bias.embedding.weight)
        x, lengths = torch.randn(2, 192, 32), torch.tensor([192, 150])
        expected, _, _ = sdpa(x, lengths)
        got, _, _ = flex(x, lengths)
    torch.testing.assert_close(got[0], expected[0], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(got[1, :150], expected[1, :150], atol=1e-4, rtol=1e-4)


def test_flex_builds_nothing_of_size_t_by_t():
    relative_bias = BucketRelativePositionBias(HEADS)
    frames = 300
    shared = FlexAttentionKernel().prepare(
        relative_bias, pad_mask([300, 200], frames), torch.float32
    )
    tensors = [c.cell_contents for c in shared["score_mod"].__closure__]
    offset_bias = next(t for t in tensors if isinstance(t, torch.Tensor))
    assert offset_bias.shape == (2 * frames - 1, HEADS)  # one row per offset, not per pair
    assert offset_bias.requires_grad  # the gradient flows into the bucket table


@pytest.mark.parametrize("frames", [37, 48, 192])
def test_sdpa_bias_is_masked_and_aligned_for_the_memory_efficient_kernel(frames):
    relative_bias = BucketRelativePositionBias(HEADS)
    mask = SDPAAttentionKernel().prepare(
        relative_bias, pad_mask([frames, 20], frames), torch.bfloat16
    )
    assert mask.shape == (2, HEADS, frames, frames) and mask.dtype == torch.bfloat16
    assert mask.stride(-1) == 1 and mask.stride(-2) % 16 == 0  # used in place, never re-padded
    assert torch.isinf(mask[1, :, :, 20:]).all() and torch.isfinite(mask[1, :, :, :20]).all()
    expected = relative_bias(frames).to(torch.bfloat16)[0]
    torch.testing.assert_close(mask[0], expected, atol=0, rtol=0)


def test_sdpa_bias_gradient_reaches_the_bucket_table():
    relative_bias = BucketRelativePositionBias(HEADS)
    q, k, v = (torch.randn(2, HEADS, 40, HEAD_DIM) for _ in range(3))
    out = attend(SDPAAttentionKernel(), relative_bias, q, k, v, pad_mask([40, 31], 40))
    out.pow(2).sum().backward()
    assert relative_bias.embedding.weight.grad.abs().sum() > 0


def test_cuda_attention_never_runs_on_cudnn_or_flash():
    """pytorch/pytorch#196678: cuDNN's dq is NaN with a mask when T % 128 == 64 (torch 2.11)."""
    assert CUDA_SDPA_BACKENDS == [SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH]
    with sdpa_backends(torch.device("cuda")):
        assert not torch.backends.cuda.cudnn_sdp_enabled()
        assert not torch.backends.cuda.flash_sdp_enabled()
        assert torch.backends.cuda.mem_efficient_sdp_enabled()
        assert torch.backends.cuda.math_sdp_enabled()
    assert torch.backends.cuda.cudnn_sdp_enabled()  # restored afterwards
    with sdpa_backends(torch.device("cpu")):  # CPU keeps its own choice (flash on CPU is fine)
        assert torch.backends.cuda.flash_sdp_enabled()

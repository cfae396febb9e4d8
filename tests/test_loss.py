import math

import pytest
import torch
from helpers.models import tiny_encoder

from espnet_ils.model.loss import ILSLoss

B, T, D, C = 2, 6, 8, 5


def make_batch(num_layers=3):
    hidden = [torch.randn(B, T, D) for _ in range(num_layers)]
    lengths = torch.tensor([6, 4])
    text = torch.randint(0, C, (B, T))
    text[1, 4:] = -1  # ESPnet pads labels with -1
    mask_m = torch.zeros(B, T, dtype=torch.bool)
    mask_m[0, 1:4] = True
    mask_m[1, 0:2] = True
    mask_m[1, 5] = True  # a "masked" padded frame must not count
    return hidden, lengths, text, mask_m


@torch.no_grad()
def hand_loss(loss, hidden, text, mask_m, lengths, unmasked_weight=0.0):
    """Eq. (1)-(2): -log softmax_c(cos(W_l h_t, e_c) / 0.1) summed over layers and frames / M."""
    masked_frames = [(b, t) for b in range(B) for t in range(int(lengths[b])) if mask_m[b, t]]
    unmasked_frames = [(b, t) for b in range(B) for t in range(int(lengths[b])) if not mask_m[b, t]]
    total = 0.0
    for index, layer in enumerate(loss.layers):
        head = loss.head(index)
        for frames, weight in ((masked_frames, 1.0), (unmasked_frames, unmasked_weight)):
            for b, t in frames:
                h = loss.input_norms[index](hidden[layer - 1][b, t])
                z = head.proj(h)
                scores = [
                    float(torch.dot(z, e) / (z.norm() * e.norm())) / 0.1 for e in head.codewords
                ]
                log_norm = math.log(sum(math.exp(s) for s in scores))
                total += weight * (log_norm - scores[int(text[b, t])])
    return total / len(masked_frames)


@pytest.mark.parametrize("share_heads", [False, True])
@pytest.mark.parametrize("layer_norm_inputs", [False, True])
def test_loss_equals_equation_1_and_2(share_heads, layer_norm_inputs):
    loss = ILSLoss(
        D,
        C,
        layers=[1, 3],
        final_dim=4,
        share_heads=share_heads,
        layer_norm_inputs=layer_norm_inputs,
        feature_penalty_weight=0.0,
        unmasked_weight=0.5,
    )
    assert len(loss.heads) == (1 if share_heads else 2)
    assert len(loss.input_norms) == 2
    if layer_norm_inputs:
        for norm in loss.input_norms:  # non-default affine so that the LN must be applied
            torch.nn.init.normal_(norm.weight, 1.0, 0.3)
    hidden, lengths, text, mask_m = make_batch()
    value, _ = loss(hidden, lengths, text, lengths, {"mask_m": mask_m})
    expected = hand_loss(loss, hidden, text, mask_m, lengths, unmasked_weight=0.5)
    assert value.item() == pytest.approx(expected, rel=1e-5)


def test_separate_heads_differ_shared_heads_are_one():
    separate = ILSLoss(D, C, layers=[1, 3])
    assert separate.head(0) is not separate.head(1)
    shared = ILSLoss(D, C, layers=[1, 3], share_heads=True)
    assert shared.head(0) is shared.head(1)


def test_stats_accuracy_is_counted_per_frame_type():
    loss = ILSLoss(D, C, layers=[2], feature_penalty_weight=0.0)
    hidden, lengths, text, mask_m = make_batch()
    _, stats = loss(hidden, lengths, text, lengths, {"mask_m": mask_m})
    with torch.no_grad():
        predicted = loss.layer_logits(hidden, 0).argmax(-1)
    valid = text >= 0
    for key, selection in (("ils_acc_m_2", valid & mask_m), ("ils_acc_u_2", valid & ~mask_m)):
        expected = (predicted[selection] == text[selection]).float().mean().item()
        assert stats[key].item() == pytest.approx(expected)
    assert set(stats) == {"ils_loss_m_2", "ils_acc_m_2", "ils_acc_u_2"}
    # Detached 0-dim tensors: ESPnet's reporter reads them after the step, the loss never does.
    assert all(v.dim() == 0 and not v.requires_grad for v in stats.values())


def test_feature_penalty_over_valid_frames():
    loss = ILSLoss(D, C, layers=[1], feature_penalty_weight=10.0)
    assert {"frontend", "frontend_lengths"} <= set(loss.required_inputs)
    hidden, lengths, text, mask_m = make_batch()
    frontend = torch.randn(B, T, 3)
    frontend[1, 4:] = 100.0  # padding must not count
    value, stats = loss(hidden, lengths, text, lengths, {"mask_m": mask_m}, frontend, lengths)
    expected_pen = torch.cat([frontend[0], frontend[1, :4]]).pow(2).mean().item()
    assert stats["features_pen"].item() == pytest.approx(expected_pen, rel=1e-5)
    assert value.item() == pytest.approx(stats["ils_loss_m_1"].item() + 10 * expected_pen, rel=1e-5)


def test_gradient_of_layer_4_head_reaches_blocks_1_to_4_only():
    encoder = tiny_encoder(num_blocks=12)
    loss = ILSLoss(32, C, layers=[4], final_dim=8, feature_penalty_weight=0.0)
    x = torch.randn(1, 10, 32)
    (_, hidden), lengths, _ = encoder(x, torch.tensor([10]), return_all_hs=True)
    mask_m = torch.zeros(1, 10, dtype=torch.bool)
    mask_m[0, 2:7] = True
    value, _ = loss(hidden, lengths, torch.randint(0, C, (1, 10)), lengths, {"mask_m": mask_m})
    value.backward()
    for k, layer in enumerate(encoder.encoders, start=1):
        grad = layer.fc1.weight.grad
        if k <= 4:
            assert grad is not None and grad.abs().sum() > 0, f"block {k} got no gradient"
        else:
            assert grad is None or grad.abs().sum() == 0, f"block {k} got gradient"


def test_frames_without_a_label_are_left_out():
    loss = ILSLoss(D, C, layers=[1], feature_penalty_weight=0.0)
    hidden, _, text, mask_m = make_batch()
    frames = torch.tensor([6, 4])
    mask_m[0, 5] = True
    full, _ = loss(hidden, frames, text, torch.tensor([6, 4]), {"mask_m": mask_m})
    text[0, 5] = -1  # one label short for the first utterance: frame 5 drops out
    short, _ = loss(hidden, frames, text, torch.tensor([5, 4]), {"mask_m": mask_m})
    mask_m[0, 5] = False
    unmasked, _ = loss(hidden, frames, text, torch.tensor([5, 4]), {"mask_m": mask_m})
    assert torch.isfinite(short) and not torch.isclose(full, short)
    torch.testing.assert_close(short, unmasked)


@pytest.mark.parametrize(
    "conf, match",
    [
        (dict(layers=[0, 4]), "1-based"),
        (dict(layers=[4, 4]), "repeated"),
        (dict(layers=[]), "at least one"),
        (dict(num_classes=1), "num_classes=1"),
        (dict(logit_temp=0.0), "logit_temp"),
        (dict(masked_weight=0.0, unmasked_weight=0.0), "not both 0"),
    ],
)
def test_bad_options_raise(conf, match):
    kwargs = dict(encoder_output_size=D, num_classes=C)
    kwargs.update(conf)
    with pytest.raises(ValueError, match=match):
        ILSLoss(**kwargs)


def test_bad_batches_raise():
    loss = ILSLoss(D, C, layers=[1, 3], feature_penalty_weight=0.0)
    hidden, lengths, text, mask_m = make_batch()
    with pytest.raises(ValueError, match="mask_prob is 0"):
        loss(hidden, lengths, text, lengths, {"mask_m": None})
    with pytest.raises(ValueError, match="only 2 blocks"):
        loss(hidden[:2], lengths, text, lengths, {"mask_m": mask_m})

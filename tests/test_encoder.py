import random

import pytest
import torch
from espnet2.asr.ctc import CTC
from helpers.models import tiny_encoder

from espnet_ils.model.encoder import PostLNEncoderLayer, PreLNEncoderLayer


def run_all(encoder, x, lengths=None):
    lengths = torch.full((x.size(0),), x.size(1)) if lengths is None else lengths
    (out, hidden), olens, _ = encoder(x, lengths, return_all_hs=True)
    return out, hidden, olens


@pytest.mark.parametrize("normalize_before", [False, True])
def test_forward_backward_shapes(normalize_before):
    encoder = tiny_encoder(normalize_before=normalize_before)
    layer_class = PreLNEncoderLayer if normalize_before else PostLNEncoderLayer
    assert all(isinstance(layer, layer_class) for layer in encoder.encoders)
    assert (encoder.layer_norm is None) == normalize_before  # pre-LN: no encoder LayerNorm at all
    x = torch.randn(2, 20, 32, requires_grad=True)
    out, hidden, olens = run_all(encoder, x, torch.tensor([20, 13]))
    assert out.shape == (2, 20, 32) and len(hidden) == 4
    assert hidden[-1] is out  # no final norm: top block output == encoder output
    assert olens.tolist() == [20, 13]
    out.sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()


def test_bias_table_is_computed_once_and_shared_by_every_layer():
    encoder = tiny_encoder()
    calls, masks = [], []
    encoder.relative_bias.register_forward_hook(lambda *a: calls.append(1))
    for layer in encoder.encoders:
        layer.self_attn.register_forward_pre_hook(lambda m, args: masks.append(args[1]))
    run_all(encoder, torch.randn(2, 16, 32), torch.tensor([16, 9]))
    assert len(calls) == 1
    assert len(masks) == 4 and all(m is masks[0] for m in masks)  # one tensor, no per-layer copy
    assert masks[0].shape == (2, 4, 16, 16)
    assert torch.isinf(masks[0][1, :, :, 9:]).all()  # padded keys of the short utterance


@pytest.mark.parametrize("normalize_before", [False, True])
@pytest.mark.parametrize("num_blocks", [0, 2, 4])
def test_layer_outputs_stop_after_block_k_and_start_with_the_block_1_input(
    normalize_before, num_blocks, monkeypatch
):
    encoder = tiny_encoder(normalize_before=normalize_before).eval()
    x, lengths = torch.randn(2, 14, 32), torch.tensor([14, 9])
    _, hidden, _ = run_all(encoder, x, lengths)
    for block in encoder.encoders[num_blocks:]:  # the blocks above k must not run

        def above_k(*args):
            raise AssertionError(f"a block above {num_blocks} ran")

        monkeypatch.setattr(block, "forward", above_k)
    layers, olens = encoder.layer_outputs(x, lengths, num_blocks=num_blocks)
    assert len(layers) == num_blocks + 1 and olens.tolist() == [14, 9]
    for got, block_output in zip(layers[1:], hidden):
        assert torch.equal(got, block_output)  # bit-identical to forward's block outputs
    embedded = x.masked_fill(torch.arange(14)[None, :, None] >= lengths[:, None, None], 0.0)
    embedded = embedded + encoder.pos_conv(embedded)
    if encoder.layer_norm is not None:  # post-LN: the LayerNorm before block 1
        embedded = encoder.layer_norm(embedded)
    assert torch.equal(layers[0], embedded)


@pytest.mark.parametrize("num_blocks", [-1, 5])
def test_layer_outputs_of_a_block_the_encoder_lacks_raise(num_blocks):
    with pytest.raises(ValueError, match=f"num_blocks={num_blocks}: this encoder has blocks 1..4"):
        tiny_encoder().layer_outputs(torch.randn(1, 8, 32), torch.tensor([8]), num_blocks)


def test_bias_changes_the_output_of_every_layer():
    encoder = tiny_encoder().eval()
    x = torch.randn(1, 30, 32)
    _, before, _ = run_all(encoder, x)
    with torch.no_grad():
        encoder.relative_bias.embedding.weight.normal_(0, 1.0)
    _, after, _ = run_all(encoder, x)
    for k, (b, a) in enumerate(zip(before, after), start=1):
        assert (b - a).abs().max() > 1e-3, f"block {k} ignores the relative bias"


def test_bias_flag_off_gives_no_table_and_a_key_padding_mask_only():
    encoder = tiny_encoder(relative_position_bias=False)
    assert encoder.relative_bias is None
    key_mask = encoder.attention_mask(
        torch.tensor([[False] * 5, [False] * 3 + [True] * 2]), torch.float32
    )
    assert key_mask.dtype == torch.bool and key_mask.shape == (2, 1, 1, 5)
    assert key_mask[0].all() and key_mask[1, ..., :3].all() and not key_mask[1, ..., 3:].any()


def test_bias_gets_gradient_from_every_layer():
    encoder = tiny_encoder()
    x = torch.randn(1, 12, 32)
    _, hidden, _ = run_all(encoder, x)
    hidden[-1].pow(2).sum().backward()
    assert encoder.relative_bias.embedding.weight.grad.abs().sum() > 0


def test_layerdrop_skips_blocks_but_keeps_the_bias(monkeypatch):
    encoder = tiny_encoder(layer_drop_rate=0.5).train()
    draws = iter([0.1, 0.9, 0.9, 0.9])  # drop block 1 only
    monkeypatch.setattr(random, "random", lambda: next(draws))
    calls = []
    encoder.relative_bias.register_forward_hook(lambda *a: calls.append(1))
    seen = []
    for layer in encoder.encoders:
        layer.self_attn.register_forward_pre_hook(lambda m, args: seen.append(args[1]))
    x = torch.randn(1, 10, 32)
    _, hidden, _ = run_all(encoder, x)
    assert len(calls) == 1 and len(seen) == 3  # block 1 dropped, blocks 2-4 ran with the bias
    assert all(mask is not None and mask.dtype == torch.float32 for mask in seen)
    monkeypatch.undo()
    # the dropped block passes its input through: h_1 is the block-1 input
    encoder.eval()
    embedded = encoder.dropout(encoder.layer_norm(x + encoder.pos_conv(x)))
    torch.testing.assert_close(hidden[0], embedded)


def test_layerdrop_and_dropout_act_only_in_training():
    encoder = tiny_encoder(dropout_rate=0.3, attention_dropout_rate=0.3, layer_drop_rate=0.3)
    x = torch.randn(1, 10, 32)
    encoder.train()
    assert not torch.equal(run_all(encoder, x)[0], run_all(encoder, x)[0])
    encoder.eval()
    torch.testing.assert_close(run_all(encoder, x)[0], run_all(encoder, x)[0])


def test_activation_dropout_acts():
    encoder = tiny_encoder(activation_dropout_rate=0.5).train()
    x = torch.randn(1, 10, 32)
    assert not torch.equal(run_all(encoder, x)[0], run_all(encoder, x)[0])


def test_padding_does_not_change_an_utterance():
    encoder = tiny_encoder().eval()
    short = torch.randn(1, 9, 32)
    batch = torch.cat([short, torch.zeros(1, 7, 32)], dim=1)
    batch = torch.cat([batch, torch.randn(1, 16, 32)])
    alone, _, _ = run_all(encoder, short)
    batched, _, _ = run_all(encoder, batch, torch.tensor([9, 16]))
    torch.testing.assert_close(batched[0, :9], alone[0], atol=1e-5, rtol=1e-5)


def test_self_conditioning_adds_the_ctc_posteriors_projection_after_its_block():
    # ESPnet's ASR model attaches a CTC and a conditioning_layer (vocab -> output_size); the
    # encoder must add conditioning_layer(ctc.softmax(h_2)) to block 2's output before block 3.
    encoder = tiny_encoder(interctc_layer_idx=[2], interctc_use_conditioning=True).eval()
    encoder.conditioning_layer = torch.nn.Linear(5, 32)
    ctc = CTC(odim=5, encoder_output_size=32)
    x, lengths = torch.randn(2, 10, 32), torch.tensor([10, 8])
    with torch.no_grad():
        (out, inter), olens, _ = encoder(x, lengths, ctc=ctc)
        assert [idx for idx, _ in inter] == [2] and olens.tolist() == [10, 8]
        h2 = inter[0][1]  # (B, T, D): block 2's output, before the conditioning

        # By hand: condition h_2, then run blocks 3 and 4 with the encoder's own attention mask.
        pad_mask = torch.arange(10)[None, :] >= lengths[:, None]  # (B, T)
        attn_mask = encoder.attention_mask(pad_mask, torch.float32)
        expected = h2 + encoder.conditioning_layer(ctc.softmax(h2))
        for layer in encoder.encoders[2:]:
            expected = layer(expected, attn_mask)
        torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)

        encoder.interctc_use_conditioning = False  # same weights, no conditioning
        (plain, inter_plain), _, _ = encoder(x, lengths, ctc=ctc)
    torch.testing.assert_close(inter_plain[0][1], h2)  # blocks 1-2 are untouched by it
    assert (plain - out).abs().max() > 1e-2, "the conditioning does not reach the output"


@pytest.mark.parametrize(
    "overrides, match",
    [
        (dict(input_size=512), "feature_projection"),
        (dict(layer_drop_rate=1.0), "layer_drop_rate"),
        (dict(interctc_layer_idx=[4]), "interctc_layer_idx"),
        (dict(attention_heads=5), "attention_heads=5"),
        (dict(conv_pos_groups=5), "conv_pos_groups=5"),
        (dict(attention_impl="flash"), "attention_impl='flash'"),
        (dict(attention_impl="flex", attention_dropout_rate=0.1), "no dropout on attention"),
    ],
)
def test_bad_options_raise(overrides, match):
    with pytest.raises(ValueError, match=match):
        tiny_encoder(**overrides)

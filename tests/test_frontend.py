import pytest
import torch
from espnet2.asr.frontend.cnn import CNNFrontend
from torch import nn

from espnet_ils.model.frontend import ILSCNNFrontend
from espnet_ils.model.preencoder import FeatureProjection

SHAPES = [(16, 10, 5), (16, 3, 2), (16, 3, 2), (16, 3, 2), (16, 3, 2), (16, 2, 2), (16, 2, 2)]


def frontend(**overrides) -> ILSCNNFrontend:
    conf = dict(norm_mode="group_norm", shapes=SHAPES)
    conf.update(overrides)
    module = ILSCNNFrontend(**conf)
    for block in module.layers:  # move norms off their defaults so that they matter
        if block.layer_norm is not None:
            nn.init.normal_(block.layer_norm.weight, 1.0, 0.3)
            nn.init.normal_(block.layer_norm.bias, 0.0, 0.3)
    return module


@pytest.mark.parametrize("norm_mode", ["group_norm", "layer_norm"])
def test_equals_espnet_cnn_frontend_without_padding(norm_mode):
    ours = frontend(norm_mode=norm_mode)
    espnet = CNNFrontend(norm_mode=norm_mode, conv_mode="standard", bias=False, shapes=SHAPES)
    espnet.load_state_dict(ours.state_dict())
    wav = torch.randn(2, 8000)
    lengths = torch.tensor([8000, 8000])
    feats, flens = ours(wav, lengths)
    expected, elens = espnet(wav, lengths)
    torch.testing.assert_close(feats, expected, atol=1e-5, rtol=1e-4)
    assert flens.tolist() == elens.tolist() == [(8000 - 400) // 320 + 1] * 2


@pytest.mark.parametrize("normalize_audio", [False, True])
@pytest.mark.parametrize("norm_mode", ["group_norm", "layer_norm"])
def test_padding_does_not_change_an_utterance(norm_mode, normalize_audio):
    """ESPnet's CNNFrontend changes a padded utterance (GroupNorm over time); ours does not."""
    module = frontend(norm_mode=norm_mode, normalize_audio=normalize_audio).eval()
    short, long = torch.randn(5000), torch.randn(9000)
    batch = torch.stack([nn.functional.pad(short, (0, 4000)), long])
    alone, alone_len = module(short[None], torch.tensor([5000]))
    batched, batched_len = module(batch, torch.tensor([5000, 9000]))
    frames = int(alone_len[0])
    assert int(batched_len[0]) == frames == (5000 - 400) // 320 + 1
    torch.testing.assert_close(batched[0, :frames], alone[0], atol=1e-5, rtol=1e-4)


def test_espnet_cnn_frontend_is_not_padding_invariant():
    """The reason ILSCNNFrontend exists; if ESPnet fixes this, ours can go back to theirs."""
    espnet = CNNFrontend(norm_mode="group_norm", conv_mode="standard", bias=False, shapes=SHAPES)
    short = torch.randn(5000)
    batch = torch.stack([nn.functional.pad(short, (0, 4000)), torch.randn(9000)])
    alone, _ = espnet(short[None], torch.tensor([5000]))
    batched, _ = espnet(batch, torch.tensor([5000, 9000]))
    assert (batched[0, : alone.size(1)] - alone[0]).abs().max() > 1e-3


def test_normalize_audio_is_per_utterance():
    module = frontend(normalize_audio=True).eval()
    wav = torch.randn(1, 6000)
    torch.testing.assert_close(
        module(wav * 7.0 + 3.0, None)[0], module(wav, None)[0], atol=1e-4, rtol=1e-4
    )


@pytest.mark.parametrize("mult", [0.1, 0.5])
def test_feature_grad_mult_scales_the_extractor_gradient(mult):
    wav = torch.randn(1, 6000)
    grads = {}
    for scale in (1.0, mult):
        torch.manual_seed(0)
        module = frontend(feature_grad_mult=scale)
        feats, _ = module(wav, None)
        feats.pow(2).sum().backward()
        grads[scale] = module.layers[0].conv.weight.grad.clone()
    torch.testing.assert_close(grads[mult], grads[1.0] * mult)


def test_feature_grad_mult_zero_freezes_the_extractor():
    module = frontend(feature_grad_mult=0.0)
    feats, _ = module(torch.randn(1, 6000), None)
    assert not feats.requires_grad


def test_bad_options_raise():
    with pytest.raises(ValueError, match="feature_grad_mult=-1"):
        ILSCNNFrontend(feature_grad_mult=-1.0)
    with pytest.raises(ValueError, match=r"shapes entry \[16, 10\]"):
        ILSCNNFrontend(shapes=[[16, 10]])
    with pytest.raises(ValueError, match="expects waveforms"):
        ILSCNNFrontend(shapes=SHAPES)(torch.randn(1, 1, 6000), None)


def test_feature_projection():
    projection = FeatureProjection(16, 24, dropout_rate=0.0)
    x = torch.randn(2, 7, 16)
    out, lengths = projection(x, torch.tensor([7, 5]))
    expected = projection.linear(
        nn.functional.layer_norm(x, (16,), projection.layer_norm.weight, projection.layer_norm.bias)
    )
    torch.testing.assert_close(out, expected)
    assert projection.output_size() == 24 and lengths.tolist() == [7, 5]

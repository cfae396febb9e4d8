"""Converter parity: torchaudio's HuBERT weights in our modules give torchaudio's outputs.

The reference is ``torchaudio.models.hubert_pretrain_base()`` with random weights (no download),
its norms and biases moved away from their 1 / 0 defaults so that a mapping mistake shows. Every
utterance runs alone (batch 1, no padding), in eval mode, float32 on the CPU. A tensor matches when
``max|ours - torchaudio| <= TOLERANCE * max|torchaudio|`` (relative to the tensor's magnitude).
"""

from typing import Dict, List

import pytest
import torch
import torchaudio
from espnet2.ssl.utils.mask import Masking
from helpers.hubert import perturb_
from torch import nn
from torch.nn import functional as F

import espnet_ils  # noqa: F401  (registers our classes, keeps espnet2 imports offline)
from espnet_ils.converters.torchaudio_hubert import (
    ENCODER,
    FRONTEND,
    LOSS,
    MASK,
    PREENCODER,
    build_from_torchaudio,
    convert_torchaudio_hubert,
    load_torchaudio_hubert,
    torchaudio_hubert_confs,
)
from espnet_ils.data.audio import SAMPLE_RATE
from espnet_ils.model.encoder import ILSTransformerEncoder
from espnet_ils.model.frontend import ILSCNNFrontend
from espnet_ils.model.loss import ILSLoss
from espnet_ils.model.preencoder import FeatureProjection

TOLERANCE = 1e-4
DURATIONS_S = (1.0, 1.7)
NUM_CLASSES = 100
PREFIX = "wav2vec2.encoder.transformer."


def relative_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    """``max|actual - expected| / max|expected|``."""
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    return float((actual - expected).abs().max() / expected.abs().max())


def assert_match(errors: Dict[str, float]) -> None:
    bad = {name: error for name, error in errors.items() if not error <= TOLERANCE}
    assert not bad, f"relative errors above {TOLERANCE}: {bad}"


def base_modules() -> Dict[str, nn.Module]:
    """Our BASE modules, sized explicitly (not read from the reference)."""
    return {
        FRONTEND: ILSCNNFrontend(norm_mode="group_norm", conv_mode="standard", bias=False),
        PREENCODER: FeatureProjection(512, 768),
        ENCODER: ILSTransformerEncoder(
            768,
            output_size=768,
            attention_heads=12,
            linear_units=3072,
            num_blocks=12,
            relative_position_bias=False,
        ),
        MASK: Masking(768),
        LOSS: ILSLoss(768, num_classes=NUM_CLASSES, layers=[12]),
    }


@pytest.fixture(scope="module")
def reference() -> torchaudio.models.HuBERTPretrainModel:
    torch.manual_seed(0)
    model = torchaudio.models.hubert_pretrain_base(num_classes=NUM_CLASSES)
    perturb_(model, seed=1)
    return model.eval()


@pytest.fixture(scope="module")
def ours(reference) -> Dict[str, nn.Module]:
    torch.manual_seed(2)
    modules = base_modules()
    load_torchaudio_hubert(reference.state_dict(), modules)
    return {group: module.eval() for group, module in modules.items()}


@pytest.fixture(scope="module")
def waveforms() -> List[torch.Tensor]:
    generator = torch.Generator().manual_seed(3)
    return [
        0.1 * torch.randn(1, int(seconds * SAMPLE_RATE), generator=generator)
        for seconds in DURATIONS_S
    ]


@pytest.mark.parametrize("utterance", range(len(DURATIONS_S)), ids=[f"{s}s" for s in DURATIONS_S])
@torch.no_grad()
def test_conv_projection_and_every_block_match_torchaudio(reference, ours, waveforms, utterance):
    wav = waveforms[utterance]
    wav2vec2 = reference.wav2vec2
    ref_feats, _ = wav2vec2.feature_extractor(wav, None)
    ref_projected = wav2vec2.encoder.feature_projection(ref_feats)
    ref_blocks, _ = wav2vec2.extract_features(wav)

    feats, feats_lengths = ours[FRONTEND](wav, None)
    projected, _ = ours[PREENCODER](feats, feats_lengths)
    (out, blocks), _, _ = ours[ENCODER](projected, feats_lengths, return_all_hs=True)

    assert len(blocks) == len(ref_blocks) == 12
    assert out is blocks[-1]
    errors = {
        "conv_features": relative_error(feats, ref_feats),
        "projected": relative_error(projected, ref_projected),
    }
    for k, (block, ref_block) in enumerate(zip(blocks, ref_blocks), start=1):
        errors[f"block_{k}"] = relative_error(block, ref_block)
    assert_match(errors)


class FixedMaskGenerator(nn.Module):
    """torchaudio's ``MaskGenerator`` with a given mask instead of a random one."""

    def __init__(self, mask_embedding: torch.Tensor, mask: torch.Tensor):
        super().__init__()
        self.mask_embedding = mask_embedding
        self.mask = mask

    def forward(self, x: torch.Tensor, padding_mask: None) -> tuple:
        x[self.mask] = self.mask_embedding.to(x.dtype)
        return x, self.mask


@torch.no_grad()
def test_parity_with_relative_bias_off_and_top_block_only_is_hubert(reference, ours, waveforms):
    """ILS-SSL with ``relative_position_bias: false`` and K = {12} is HuBERT: same masked logits,
    same loss (masked cross-entropy per masked frame + 10 * feature penalty)."""
    wav = waveforms[1]
    frames = ours[FRONTEND](wav, None)[0].size(1)
    generator = torch.Generator().manual_seed(4)
    mask = torch.rand(1, frames, generator=generator) < 0.5  # (1, T)
    labels = torch.randint(NUM_CLASSES, (1, frames), generator=generator)
    # Not pytest's monkeypatch: it cannot restore an nn.Module's submodule (kept in _modules).
    mask_generator = reference.mask_generator
    reference.mask_generator = FixedMaskGenerator(mask_generator.mask_embedding, mask)
    try:
        ref_logits, _, ref_features_pen = reference(wav, labels)  # (M, 1 + C): target, all C
    finally:
        reference.mask_generator = mask_generator
    # torchaudio's recipe loss (examples/hubert): sum of masked CE + 10 * M * features_pen, / M
    num_masked = int(mask.sum())
    ref_loss = (
        F.cross_entropy(ref_logits, torch.zeros(num_masked, dtype=torch.long), reduction="sum")
        / num_masked
        + 10.0 * ref_features_pen
    )

    feats, feats_lengths = ours[FRONTEND](wav, None)
    x, _ = ours[PREENCODER](feats, feats_lengths)
    x[mask] = ours[MASK].mask_embedding
    (_, blocks), olens, _ = ours[ENCODER](x, feats_lengths, return_all_hs=True)
    loss = ours[LOSS]
    logits = loss.layer_logits(blocks, 0)[mask]  # (M, C)
    total, stats = loss(
        blocks,
        olens,
        labels,
        torch.tensor([frames]),
        {"mask_m": mask},
        frontend=feats,
        frontend_lengths=feats_lengths,
    )

    targets = labels[mask]
    expected_logits = ref_logits[:, 1:].clone()  # the target's own column is -inf there
    expected_logits[torch.arange(num_masked), targets] = ref_logits[:, 0]
    assert_match(
        {
            "masked_logits": relative_error(logits, expected_logits),
            "features_pen": relative_error(stats["features_pen"], ref_features_pen),
            "loss": relative_error(total, ref_loss),
        }
    )


def test_confs_read_from_torchaudio_are_the_base_sizes(reference):
    confs = torchaudio_hubert_confs(reference)
    assert confs[FRONTEND]["shapes"] == [[512, 10, 5]] + [[512, 3, 2]] * 4 + [[512, 2, 2]] * 2
    assert confs[FRONTEND]["norm_mode"] == "group_norm" and confs[FRONTEND]["bias"] is False
    assert confs[PREENCODER] == {"input_size": 512, "output_size": 768, "dropout_rate": 0.1}
    encoder = confs[ENCODER]
    assert (encoder["output_size"], encoder["attention_heads"], encoder["linear_units"]) == (
        768,
        12,
        3072,
    )
    assert (encoder["num_blocks"], encoder["relative_position_bias"]) == (12, False)
    assert confs[LOSS]["layers"] == [12] and confs[LOSS]["num_classes"] == NUM_CLASSES


def tiny_model(extractor_mode: str, layer_norm_first: bool = False) -> nn.Module:
    """A small fine-tuned torchaudio model: conv bias, 4 blocks of width 64, a CTC head of 8."""
    torch.manual_seed(5)
    model = torchaudio.models.wav2vec2_model(
        extractor_mode=extractor_mode,
        extractor_conv_layer_config=[(32, 10, 5)] + [(32, 3, 2)] * 4 + [(32, 2, 2)] * 2,
        extractor_conv_bias=True,
        encoder_embed_dim=64,
        encoder_projection_dropout=0.1,
        encoder_pos_conv_kernel=16,
        encoder_pos_conv_groups=4,
        encoder_num_layers=4,
        encoder_num_heads=4,
        encoder_attention_dropout=0.1,
        encoder_ff_interm_features=96,
        encoder_ff_interm_dropout=0.0,
        encoder_dropout=0.1,
        encoder_layer_norm_first=layer_norm_first,
        encoder_layer_drop=0.1,
        aux_num_out=8,
    )
    perturb_(model, seed=6)
    return model.eval()


@pytest.mark.parametrize("extractor_mode", ["group_norm", "layer_norm"])
@torch.no_grad()
def test_build_from_torchaudio_reproduces_a_fine_tuned_model(extractor_mode, waveforms):
    model = tiny_model(extractor_mode)
    modules = {group: module.eval() for group, module in build_from_torchaudio(model).items()}
    wav = waveforms[0]
    ref_blocks, _ = model.extract_features(wav)
    ref_logits, _ = model(wav)

    feats, feats_lengths = modules[FRONTEND](wav, None)
    x, _ = modules[PREENCODER](feats, feats_lengths)
    (out, blocks), _, _ = modules[ENCODER](x, feats_lengths, return_all_hs=True)
    errors = {
        f"block_{k}": relative_error(b, r) for k, (b, r) in enumerate(zip(blocks, ref_blocks), 1)
    }
    errors["ctc_logits"] = relative_error(modules["ctc"].ctc_lo(out), ref_logits)
    assert_match(errors)


def test_old_style_weight_norm_keys_convert_like_the_parametrized_ones(reference):
    state = reference.state_dict()
    old_style = {
        key.replace("parametrizations.weight.original0", "weight_g").replace(
            "parametrizations.weight.original1", "weight_v"
        ): value
        for key, value in state.items()
    }
    assert any(key.endswith("weight_g") for key in old_style)
    new, old = convert_torchaudio_hubert(state), convert_torchaudio_hubert(old_style)
    assert new.keys() == old.keys()
    for group in new:
        assert new[group].keys() == old[group].keys()
        assert all(new[group][key] is old[group][key] for key in new[group])


def _with_extra_key(state: dict) -> dict:
    state[PREFIX + "layers.0.attention.rel_attn_embed.weight"] = torch.zeros(320, 12)
    return state


def _with_missing_key(state: dict) -> dict:
    del state[PREFIX + "layers.3.feed_forward.intermediate_dense.bias"]
    return state


def _with_wrong_shape(state: dict) -> dict:
    state[PREFIX + "layers.2.attention.q_proj.weight"] = torch.zeros(768, 700)
    return state


def _with_both_weight_norm_styles(state: dict) -> dict:
    state[PREFIX + "pos_conv_embed.conv.weight_g"] = state[
        PREFIX + "pos_conv_embed.conv.parametrizations.weight.original0"
    ]
    return state


@pytest.mark.parametrize(
    "corrupt, match",
    [
        (
            _with_extra_key,
            r"(?s)Unknown torchaudio keys.*layers\.0\.attention\.rel_attn_embed\.weight",
        ),
        (_with_missing_key, r"missing encoders\.3\.fc1\.bias"),
        (
            _with_wrong_shape,
            r"shape mismatch for encoders\.2\.self_attn\.q_proj\.weight: torchaudio \(768, 700\)",
        ),
        (_with_both_weight_norm_styles, r"pos_conv_embed\.conv\.weight_g"),
    ],
    ids=["unknown_key", "missing_key", "wrong_shape", "two_sources"],
)
def test_converter_refuses_bad_state_dicts(reference, ours, corrupt, match):
    state = corrupt(dict(reference.state_dict()))
    with pytest.raises(ValueError, match=match):
        load_torchaudio_hubert(state, ours)


def test_converted_group_without_a_module_is_refused_unless_skipped(reference, ours):
    without_loss = {group: module for group, module in ours.items() if group != LOSS}
    with pytest.raises(ValueError, match=r"loss: 3 converted weights .* skip_groups=\('loss',\)"):
        load_torchaudio_hubert(reference.state_dict(), without_loss)
    load_torchaudio_hubert(reference.state_dict(), without_loss, skip_groups=(LOSS,))
    with pytest.raises(ValueError, match=r"skip_groups has 'heads'"):
        load_torchaudio_hubert(reference.state_dict(), without_loss, skip_groups=("heads",))


def test_pre_ln_models_are_refused():
    with pytest.raises(ValueError, match="encoder_layer_norm_first=True"):
        torchaudio_hubert_confs(tiny_model("layer_norm", layer_norm_first=True))

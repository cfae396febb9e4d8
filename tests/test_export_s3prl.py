"""Export for s3prl as a WavLM checkpoint: loaded by pip s3prl's ``wavlm_local``, parity measured.

A tensor matches when ``max|ours - s3prl| <= 1e-5 * max|ours|`` over the valid frames (fp32, eval
mode). ``hidden_states`` of s3prl's WavLM upstream are every block's input and then the encoder's
output: our layers ``0..N``, the last through WavLM's ``encoder.layer_norm`` for pre-LN models.
"""

import copy
from pathlib import Path
from typing import List

import pytest
import torch
from helpers.models import tiny_config, write_model
from helpers.wavlm_parity import (
    LETTERS,
    REFERENCE,
    TOLERANCE,
    asr_config,
    assert_match,
    frames,
    load,
    load_asr,
    needs_reference,
    our_layers,
    relative_error,
    ssl_model_dir,
    waveforms,
    write_large_ctc_model,
)
from s3prl.upstream.wavlm.hubconf import wavlm_local
from s3prl.upstream.wavlm.modules import MultiheadAttention

import espnet_ils  # noqa: F401  (registers our classes)
from espnet_ils.bin import export_s3prl
from espnet_ils.data.labels import cluster_token_list
from espnet_ils.export.s3prl_wavlm import export_to_s3prl
from espnet_ils.model.relative_bias import relative_position_bucket
from espnet_ils.train.tasks import ILSASRTask, ILSSSLTask


@torch.no_grad()
def s3prl_hidden_states(checkpoint: Path, wavs: List[torch.Tensor]) -> List[torch.Tensor]:
    """``(B, T, D)`` hidden states of s3prl's upstream for a list of waveforms (it pads them)."""
    upstream = wavlm_local(str(checkpoint)).eval()
    return upstream(wavs)["hidden_states"]


def export(model_dir: Path, output: Path) -> Path:
    export_s3prl.main(["--model_dir", str(model_dir), "--output", str(output)])
    return output


@pytest.mark.parametrize("num_buckets, max_distance", [(320, 800), (320, 1280), (64, 200)])
def test_s3prl_bucket_function_equals_ours_for_every_offset(num_buckets, max_distance):
    attention = MultiheadAttention(
        8, 2, self_attention=True, has_relative_attention_bias=True, num_buckets=num_buckets,
        max_distance=max_distance,
    )  # fmt: skip
    offsets = torch.arange(-20000, 20001)
    theirs = attention._relative_positions_bucket(offsets)
    assert torch.equal(theirs, relative_position_bucket(offsets, num_buckets, max_distance))


@pytest.mark.parametrize(
    "norm_mode, pre_ln, relative_position_bias",
    [("group_norm", False, True), ("layer_norm", True, True), ("group_norm", False, False)],
    ids=["base_post_ln", "large_pre_ln", "hubert_no_bias"],
)
def test_every_hidden_state_matches_ours(tmp_path, norm_mode, pre_ln, relative_position_bias):
    model_dir = ssl_model_dir(
        tmp_path / "ssl", norm_mode, pre_ln, relative_position_bias=relative_position_bias
    )
    checkpoint = export(model_dir, tmp_path / "wavlm.pt")
    ours = load(model_dir)
    errors = {}
    for index, wav in enumerate(waveforms()):
        layers = our_layers(ours, wav)
        if pre_ln:  # WavLM's encoder.layer_norm: the top ILS head's input norm
            with torch.no_grad():
                layers[-1] = ours.losses[0].input_norms[-1](layers[-1])
        hidden_states = s3prl_hidden_states(checkpoint, [wav])
        assert len(hidden_states) == len(layers)
        for k, (theirs, mine) in enumerate(zip(hidden_states, layers)):
            errors[f"utt{index}/layer_{k}"] = relative_error(theirs[0], mine)
    assert_match(errors)


@pytest.mark.parametrize("norm_mode, pre_ln", [("group_norm", False), ("layer_norm", True)])
def test_padded_batch_matches_ours_for_the_longest_utterance_only(tmp_path, norm_mode, pre_ln):
    """s3prl's WavLM (as fairseq's) counts a frame as padding only when every sample of its
    ``1/T`` share of the padded input is padding, so the shorter utterance keeps a frame past its
    end (conv output over the zeros) in the positional conv and the attention, with either front
    end; BASE's GroupNorm also normalises over the padded batch. One at a time they agree."""
    model_dir = ssl_model_dir(tmp_path / "ssl", norm_mode, pre_ln)
    checkpoint = export(model_dir, tmp_path / "wavlm.pt")
    ours, wavs = load(model_dir), waveforms()
    top = s3prl_hidden_states(checkpoint, wavs)[-2]  # the input of the top block: raw either way
    longest, shorter = (our_layers(ours, wav)[-2] for wav in wavs)
    assert relative_error(top[0], longest) <= TOLERANCE
    assert relative_error(top[1, : frames(wavs[1].numel())], shorter) > 100 * TOLERANCE
    upstream = wavlm_local(str(checkpoint))
    padding = torch.arange(wavs[0].numel())[None] >= torch.tensor([[wavs[1].numel()]])
    features = torch.zeros(1, frames(wavs[0].numel()), 1)
    kept = int((~upstream.model.forward_padding_mask(features, padding)).sum())
    assert kept == frames(wavs[1].numel()) + 1


def test_checkpoint_is_microsofts_wavlm_format(tmp_path):
    """Plain values only (``torch.load``'s default ``weights_only`` reads it), the original's
    tensor names with ``weight_norm``'s ``weight_g`` / ``weight_v``, the bias ungated."""
    model_dir = ssl_model_dir(tmp_path / "ssl", "group_norm", pre_ln=False)
    checkpoint = torch.load(export(model_dir, tmp_path / "wavlm.pt"), weights_only=True)
    assert set(checkpoint) == {"cfg", "model"}
    cfg, state = checkpoint["cfg"], checkpoint["model"]
    assert cfg["relative_position_embedding"] and not cfg["gru_rel_pos"]
    assert (cfg["extractor_mode"], cfg["layer_norm_first"]) == ("default", False)
    assert eval(cfg["conv_feature_layers"]) == [(16, 10, 5)] + [(16, 3, 2)] * 4 + [(16, 2, 2)] * 2
    ours = load(model_dir)
    pos_conv = ours.encoder.pos_conv.conv.parametrizations.weight
    exact = dict(rtol=0, atol=0)
    torch.testing.assert_close(state["encoder.pos_conv.0.weight_g"], pos_conv.original0, **exact)
    torch.testing.assert_close(state["encoder.pos_conv.0.weight_v"], pos_conv.original1, **exact)
    torch.testing.assert_close(
        state["encoder.layers.0.self_attn.relative_attention_bias.weight"],
        ours.encoder.relative_bias.embedding.weight,
        **exact,
    )
    torch.testing.assert_close(state["mask_emb"], ours.util_modules["mask"].mask_embedding, **exact)
    assert [key for key in state if "relative_attention_bias" in key or "grep" in key] == [
        "encoder.layers.0.self_attn.relative_attention_bias.weight"
    ]  # one bucket table, no gate


# --- the original implementation's fixtures -----------------------------------------------------


@needs_reference
@pytest.mark.parametrize("config", ["base-like", "large-like"])
def test_released_checkpoint_matches_the_original_outputs(tmp_path, config):
    """A UniSpeech ILS checkpoint: every hidden state equals the original's layer; LARGE's last
    its top head's input (``post_layer_norm[-1]``)."""
    checkpoint = export_to_s3prl(
        tmp_path / "wavlm.pt", checkpoint=REFERENCE / config / "checkpoint.pt"
    )
    inputs = torch.load(REFERENCE / config / "inputs.pt")
    expected = torch.load(REFERENCE / config / "expected.pt")
    errors = {}
    for wav, utt in zip(inputs["wavs"], expected["utts"]):
        hidden_states = s3prl_hidden_states(checkpoint, [wav])
        for k, hidden in enumerate(hidden_states[:-1]):
            errors[f"{utt['name']}/layer_{k}"] = relative_error(hidden[0], utt[f"layer_{k}"])
        top = utt["ils_input_layer_4"] if config == "large-like" else utt["layer_4"]
        errors[f"{utt['name']}/last"] = relative_error(hidden_states[-1][0], top)
    assert_match(errors)


@needs_reference
def test_released_pre_ln_fine_tuned_checkpoint_gives_its_top_block_normalised(tmp_path):
    """Its CTC head reads the raw top block, which has no LayerNorm of its own: s3prl's last
    hidden state is that block through a plain LayerNorm (weight 1, bias 0)."""
    checkpoint = export_to_s3prl(
        tmp_path / "wavlm.pt", checkpoint=REFERENCE / "large-like/checkpoint_ft.pt"
    )
    wav = torch.load(REFERENCE / "large-like/inputs.pt")["wavs"][0]
    encoder_out = torch.load(REFERENCE / "large-like/expected_ft.pt")["utts"][0]["encoder_out"]
    top = s3prl_hidden_states(checkpoint, [wav])[-1][0]
    expected = torch.nn.functional.layer_norm(encoder_out, encoder_out.shape[-1:])
    assert_match({"encoder_out": relative_error(top, expected)})


# --- fine-tuned models --------------------------------------------------------------------------


def test_fine_tuned_model_exports_its_ssl_encoder(tmp_path):
    ssl = ssl_model_dir(tmp_path / "ssl", "group_norm", pre_ln=False) / "valid.loss.best.pth"
    weights = write_model(ILSASRTask, asr_config(ssl), LETTERS, tmp_path / "asr")
    checkpoint = export(weights.parent, tmp_path / "wavlm.pt")
    wav = waveforms()[0]
    layers = our_layers(load_asr(weights), wav)
    hidden_states = s3prl_hidden_states(checkpoint, [wav])
    assert_match(
        {
            f"layer_{k}": relative_error(h[0], mine)
            for k, (h, mine) in enumerate(zip(hidden_states, layers))
        }
    )
    assert "ctc.ctc_lo.weight" not in torch.load(checkpoint)["model"]


def test_pre_ln_fine_tuned_model_gives_its_after_norm_as_the_last_hidden_state(tmp_path):
    """The ASR linear encoder's ``after_norm`` becomes WavLM's ``encoder.layer_norm``; ours is
    compared with its eps set to WavLM's (1e-5 against ESPnet's 1e-12, see the exporter)."""
    weights = write_large_ctc_model(tmp_path)
    checkpoint = export(weights.parent, tmp_path / "wavlm.pt")
    model = load_asr(weights)
    model.encoder.after_norm.eps = 1e-5
    errors = {}
    for index, wav in enumerate(waveforms()):
        with torch.no_grad():
            encoded, _ = model.encode(wav[None], torch.tensor([wav.numel()]))
        top = s3prl_hidden_states(checkpoint, [wav])[-1]
        errors[f"utt{index}"] = relative_error(top[0], encoded[0])
    assert_match(errors)


# --- refusals and outputs -----------------------------------------------------------------------


def test_log_mel_front_is_refused_by_name_and_nothing_is_written(tmp_path):
    write_model(ILSSSLTask, tiny_config("fbank", False), cluster_token_list(5), tmp_path / "ssl")
    with pytest.raises(SystemExit, match=r"front end DefaultFrontend: WavLM cannot.*log-mel"):
        export(tmp_path / "ssl", tmp_path / "wavlm.pt")
    assert list(tmp_path.iterdir()) == [tmp_path / "ssl"]


def test_projection_to_the_conv_width_is_refused_by_name(tmp_path):
    """WavLM builds no ``post_extract_proj`` when the conv width equals the encoder's."""
    config = copy.deepcopy(tiny_config("group_norm", False))
    config["frontend_conf"]["shapes"] = [[32, 10, 5]] + [[32, 3, 2]] * 4 + [[32, 2, 2]] * 2
    write_model(ILSSSLTask, config, cluster_token_list(5), tmp_path / "ssl")
    with pytest.raises(
        SystemExit, match=r"feature_projection of 32 conv channels.*post_extract_proj"
    ):
        export(tmp_path / "ssl", tmp_path / "wavlm.pt")


def test_existing_output_is_never_overwritten(tmp_path):
    model_dir = ssl_model_dir(tmp_path / "ssl", "group_norm", pre_ln=False)
    output = tmp_path / "wavlm.pt"
    output.write_bytes(b"someone's file")
    with pytest.raises(SystemExit, match=r"--output .*wavlm.pt exists"):
        export(model_dir, output)
    assert output.read_bytes() == b"someone's file"


def test_missing_s3prl_is_named_with_the_version_the_tests_pin(tmp_path, monkeypatch):
    import importlib.util

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "s3prl" else find_spec(name, *a),
    )
    model_dir = ssl_model_dir(tmp_path / "ssl", "group_norm", pre_ln=False)
    with pytest.raises(SystemExit, match=r"s3prl is not installed: pip install s3prl==0\.4\.18"):
        export(model_dir, tmp_path / "wavlm.pt")
    assert not (tmp_path / "wavlm.pt").exists()

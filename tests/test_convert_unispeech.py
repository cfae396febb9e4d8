"""Converter parity: original ILS-SSL checkpoints, converted, reproduce the original's outputs.

The reference is ``../shared/data/ils_reference`` (random-weight fixtures in the layout of the
original fairseq checkpoints, with the original implementation's outputs; see its README). Every
utterance runs alone (batch 1, no padding, no masking, eval mode) through the model loaded from the
converted directory alone. A tensor matches when ``max|ours - original| <= 1e-5 * max|original|``.
"""

import itertools
from pathlib import Path
from typing import Dict, List

import pytest
import soundfile
import torch
import yaml
from espnet2.asr.frontend.espnet_ssl import ESPnetSSLFrontend
from espnet2.bin.asr_inference import Speech2Text
from espnet2.tasks.asr import ASRTask
from helpers.shared_data import SHARED_DATA

import espnet_ils  # noqa: F401  (registers our classes)
from espnet_ils.bin import convert_unispeech
from espnet_ils.converters.unispeech import (
    CONFIG_FILE,
    TOKEN_LIST_FILE,
    WEIGHTS_FILE,
    Layout,
    map_keys,
    prepare,
    read_checkpoint,
    split_label_tables,
)
from espnet_ils.model.relative_bias import relative_position_bucket
from espnet_ils.train.tasks import ILSSSLTask

REFERENCE = SHARED_DATA / "ils_reference"
CONFIGS = ("base-like", "large-like")
TOLERANCE = 1e-5
SUPERVISED = (2, 4)

pytestmark = pytest.mark.skipif(
    not REFERENCE.is_dir(),
    reason=f"ILS-SSL parity fixtures not found at {REFERENCE} (test data outside the repository)",
)

#: Keys each checkpoint may drop, with nothing else left unconsumed.
DROPPED = {
    ("base-like", "checkpoint.pt"): set(),
    ("base-like", "checkpoint_ft.pt"): {"w2v_encoder.w2v_model.mask_emb"},
    ("large-like", "checkpoint.pt"): {"encoder.layer_norm.weight", "encoder.layer_norm.bias"},
    ("large-like", "checkpoint_ft.pt"): {
        f"w2v_encoder.w2v_model.{key}"
        for key in [
            "mask_emb",
            "encoder.layer_norm.weight",
            "encoder.layer_norm.bias",
            "post_layer_norm.0.weight",
            "post_layer_norm.0.bias",
            "post_layer_norm.1.weight",
            "post_layer_norm.1.bias",
        ]
    },
}


def relative_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    """``max|actual - expected| / max|expected|``."""
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    return float((actual.detach() - expected).abs().max() / expected.abs().max())


def assert_match(errors: Dict[str, float]) -> None:
    bad = {name: f"{error:.2e}" for name, error in errors.items() if not error <= TOLERANCE}
    assert not bad, f"relative errors above {TOLERANCE}: {bad}"


def load(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


@pytest.fixture(scope="module")
def converted(tmp_path_factory) -> Dict[str, Path]:
    """``{"<config>/<checkpoint stem>": outdir}``, converted through the command line entry point."""
    root = tmp_path_factory.mktemp("converted")
    outdirs = {}
    for config, name in itertools.product(CONFIGS, ("checkpoint", "checkpoint_ft")):
        outdir = root / config / name
        convert_unispeech.main(
            ["--checkpoint", str(REFERENCE / config / f"{name}.pt"), "--outdir", str(outdir)]
        )
        outdirs[f"{config}/{name}"] = outdir
    return outdirs


def utterances(config: str, long: bool) -> List[tuple]:
    inputs = load(REFERENCE / ("inputs_long.pt" if long else f"{config}/inputs.pt"))
    expected = load(REFERENCE / config / ("expected_long.pt" if long else "expected.pt"))
    return list(zip(inputs["wavs"], expected["utts"]))


def run_alone(model, wav: torch.Tensor) -> tuple:
    """Conv features ``(1, T, C)``, block-1 input ``(1, T, D)`` and block outputs of one utterance."""
    feats, lengths = model.frontend(wav[None], None)
    projected, _ = model.preencoder(feats, lengths)
    layers, _ = model.encoder.layer_outputs(projected, lengths)  # layer 0 = block-1 input
    return feats, layers[0], layers[1:]


@pytest.mark.parametrize("long", [False, True], ids=["short", "17s"])
@pytest.mark.parametrize("config", CONFIGS)
@torch.no_grad()
def test_pretrained_model_reproduces_every_layer_and_head(converted, config, long):
    outdir = converted[f"{config}/checkpoint"]
    model, _ = ILSSSLTask.build_model_from_file(outdir / CONFIG_FILE, outdir / WEIGHTS_FILE)
    model.eval()
    loss = model.losses[0]
    assert list(loss.layers) == list(SUPERVISED)
    for wav, expected in utterances(config, long):
        feats, layer_0, blocks = run_alone(model, wav)
        assert feats.size(1) == expected["num_frames"]
        errors = {
            "conv_features": relative_error(feats[0].T, expected["conv_features"]),
            "features_pen": relative_error(feats.pow(2).mean(), expected["features_pen"]),
            "layer_0": relative_error(layer_0[0], expected["layer_0"]),
        }
        for k, block in enumerate(blocks, start=1):
            errors[f"layer_{k}"] = relative_error(block[0], expected[f"layer_{k}"])
        for index, layer in enumerate(loss.layers):
            head_input = loss.input_norms[index](blocks[layer - 1][0])
            errors[f"ils_input_{layer}"] = relative_error(
                head_input, expected[f"ils_input_layer_{layer}"]
            )
            errors[f"ils_proj_{layer}"] = relative_error(
                loss.head(index).proj(head_input), expected[f"ils_proj_layer_{layer}"]
            )
            # the original scores all 24 rows; rows 0-3 are fairseq's special symbols
            errors[f"ils_logits_{layer}"] = relative_error(
                loss.layer_logits(blocks, index)[0], expected[f"ils_logits_layer_{layer}"][:, 4:]
            )
        assert_match({f"{expected['name']}/{name}": error for name, error in errors.items()})


@pytest.mark.parametrize("config", CONFIGS)
@torch.no_grad()
def test_pretrained_model_serves_as_espnet_ssl_frontend_for_fine_tuning(converted, config):
    """The recipe fine-tunes with ``frontend: espnet_ssl`` and ``path_or_url: <outdir>/model.pth``."""
    outdir = converted[f"{config}/checkpoint"]
    frontend = ESPnetSSLFrontend(
        frontend_conf={"path_or_url": str(outdir / WEIGHTS_FILE)}, layer=-1, mask_feats=False
    ).eval()
    wav, expected = utterances(config, long=False)[0]
    top, _ = frontend(wav[None], torch.tensor([wav.numel()]))
    assert_match({"layer_4": relative_error(top[0], expected["layer_4"])})


def test_long_utterance_reaches_the_saturated_buckets():
    meta = load(REFERENCE / "base-like/expected_long.pt")["meta"]["relative_position_buckets"]
    positions = torch.arange(meta["num_frames"])
    buckets = relative_position_bucket(positions[None, :] - positions[:, None])
    assert int(buckets.max()) == meta["max_bucket"] == 319
    assert int(buckets.unique().numel()) == meta["distinct_buckets"]
    saturated = torch.isin(buckets, torch.tensor(meta["saturated_buckets"]))
    assert int(saturated.sum()) == meta["saturated_pairs"]


@pytest.mark.parametrize("config", CONFIGS)
@torch.no_grad()
def test_fine_tuned_model_reproduces_the_ctc_outputs(converted, config):
    outdir = converted[f"{config}/checkpoint_ft"]
    model, _ = ASRTask.build_model_from_file(outdir / CONFIG_FILE, outdir / WEIGHTS_FILE)
    model.eval()
    assert model.decoder is None and model.ctc_weight == 1.0
    assert (model.blank_id, model.sos, model.eos) == (0, 2, 2)
    expected_ft = load(REFERENCE / config / "expected_ft.pt")
    vocab = expected_ft["meta"]["vocab"]
    assert model.token_list[4:] == ["<space>"] + vocab[5:]
    inputs = load(REFERENCE / config / "inputs.pt")
    for wav, expected in zip(inputs["wavs"], expected_ft["utts"]):
        encoded, _ = model.encode(wav[None], torch.tensor([wav.numel()]))
        assert_match(
            {
                f"{expected['name']}/encoder_out": relative_error(
                    encoded[0], expected["encoder_out"]
                ),
                f"{expected['name']}/ctc_logits": relative_error(
                    model.ctc.ctc_lo(encoded)[0], expected["ctc_logits"]
                ),
                f"{expected['name']}/ctc_log_probs": relative_error(
                    model.ctc.log_softmax(encoded)[0], expected["ctc_log_probs"]
                ),
            }
        )


def test_fine_tuned_model_decodes_a_wav_file_with_speech2text(converted, tmp_path):
    outdir = converted["large-like/checkpoint_ft"]
    wav = load(REFERENCE / "large-like/inputs.pt")["wavs"][0]
    expected = load(REFERENCE / "large-like/expected_ft.pt")["utts"][0]
    path = tmp_path / "utt0.wav"
    soundfile.write(path, wav.numpy(), 16000, subtype="FLOAT")
    speech, rate = soundfile.read(path, dtype="float32")
    speech2text = Speech2Text(
        outdir / CONFIG_FILE, outdir / WEIGHTS_FILE, ctc_weight=1.0, beam_size=2
    )
    text, tokens, token_ids, _ = speech2text(speech)[0]
    assert rate == 16000 and isinstance(text, str) and tokens
    assert set(token_ids) <= set(range(4, 32)), "decoded a special row"
    with torch.no_grad():
        encoded, _ = speech2text.asr_model.encode(
            torch.from_numpy(speech)[None], torch.tensor([speech.size])
        )
        log_probs = speech2text.asr_model.ctc.log_softmax(encoded)[0]
    assert_match({"ctc_log_probs": relative_error(log_probs, expected["ctc_log_probs"])})


@pytest.mark.parametrize("config", CONFIGS)
def test_converted_directories_hold_config_weights_and_token_lists(converted, config):
    ssl, asr = converted[f"{config}/checkpoint"], converted[f"{config}/checkpoint_ft"]
    pre_ln = config == "large-like"  # also: layer_norm conv blocks and task.normalize
    for outdir in (ssl, asr):
        assert sorted(p.name for p in outdir.iterdir()) == sorted(
            [CONFIG_FILE, WEIGHTS_FILE, TOKEN_LIST_FILE]
        )
        args = yaml.safe_load((outdir / CONFIG_FILE).read_text())
        assert args["frontend_conf"]["norm_mode"] == ("layer_norm" if pre_ln else "group_norm")
        assert args["frontend_conf"]["normalize_audio"] is pre_ln
        assert args["encoder_conf"]["normalize_before"] is pre_ln
        source = load(REFERENCE / config / f"{outdir.name}.pt")["cfg"]["model"]
        source = source.get("w2v_args", {"model": source})["model"]  # fine-tuned: wrapped cfg
        assert args["frontend_conf"]["feature_grad_mult"] == source["feature_grad_mult"]
    ssl_args = yaml.safe_load((ssl / CONFIG_FILE).read_text())
    assert ssl_args["loss"][0]["conf"]["layer_norm_inputs"] is pre_ln
    clusters = (ssl / TOKEN_LIST_FILE).read_text().split()
    assert clusters == [str(c) for c in range(20)] + ["<unk>"]
    letters = (asr / TOKEN_LIST_FILE).read_text().split()
    assert letters[:5] == ["<blank>", "<pad>", "<sos/eos>", "<unk>", "<space>"]
    assert len(letters) == 32


@pytest.mark.parametrize("config, name", list(DROPPED), ids=[f"{c}/{n}" for c, n in DROPPED])
def test_every_checkpoint_key_is_mapped_or_dropped_for_a_reason(config, name):
    path = REFERENCE / config / name
    checkpoint = read_checkpoint(path)
    _, _, _, mapped = prepare(checkpoint, REFERENCE / config / "dict.ltr.txt")
    keys = set(checkpoint["model"])
    if "label_embs_concat" in keys:  # split into one table per supervised layer
        keys = keys - {"label_embs_concat"} | {"label_embs_concat.0", "label_embs_concat.1"}
    assert set(mapped.dropped) == DROPPED[(config, name)]
    assert set(mapped.sources.values()) | set(mapped.dropped) == keys
    assert len(mapped.sources) == len(set(mapped.sources.values()))  # one source per target
    prefix = "w2v_encoder.w2v_model." if name == "checkpoint_ft.pt" else ""
    for block in range(4):  # undetectable from outputs (softmax cancels it): check the map
        key = f"encoder.encoders.{block}.self_attn.k_proj.bias"
        assert mapped.sources[key] == f"{prefix}encoder.layers.{block}.self_attn.k_proj.bias"


def test_label_tables_lose_their_four_special_rows():
    state = load(REFERENCE / "base-like/checkpoint.pt")["model"]
    split = split_label_tables(state)
    for index in range(2):
        torch.testing.assert_close(
            split[f"label_embs_concat.{index}"], state["label_embs_concat"][index, 4:]
        )
    mapped = map_keys(split, Layout("ils_hubert", "group_norm", pre_ln=False))
    assert mapped.sources["losses.0.heads.1.codewords"] == "label_embs_concat.1"


# --- bad input: a clear error, and nothing written -------------------------------------------


def _save_modified(tmp_path: Path, config: str, modify) -> Path:
    checkpoint = load(REFERENCE / config / "checkpoint.pt")
    modify(checkpoint)
    path = tmp_path / "modified.pt"
    torch.save(checkpoint, path)
    return path


def _not_a_checkpoint(tmp_path: Path) -> Path:
    path = tmp_path / "notes.pt"
    path.write_text("not a checkpoint\n")
    return path


def _not_fairseq(tmp_path: Path) -> Path:
    path = tmp_path / "espnet.pth"
    torch.save({"encoder.layer_norm.weight": torch.ones(4)}, path)
    return path


def _truncated(tmp_path: Path) -> Path:
    path = tmp_path / "truncated.pt"
    data = (REFERENCE / "base-like/checkpoint.pt").read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def _set_cfg(name: str, value, config: str = "base-like"):
    def modify(checkpoint):
        checkpoint["cfg"]["model"][name] = value

    return lambda tmp_path: _save_modified(tmp_path, config, modify)


def _edit_state(edit, config: str = "base-like"):
    return lambda tmp_path: _save_modified(tmp_path, config, lambda c: edit(c["model"]))


@pytest.mark.parametrize(
    "make, match",
    [
        (_not_a_checkpoint, r"cannot be read as a PyTorch checkpoint"),
        (_not_fairseq, r"not a fairseq checkpoint"),
        (_truncated, r"cannot be read as a PyTorch checkpoint \(truncated"),
        (_set_cfg("_name", "wav2vec2"), r"'wav2vec2': only 'ils_hubert'"),
        (
            _set_cfg("encoder_ffn_embed_dim", 512),
            r"contradict its own cfg(?s:.*)shape mismatch encoder\.layers\.0\.fc1\.weight "
            r"\(384, 256\) -> encoder\.encoders\.0\.fc1\.weight: the cfg gives \(512, 256\)",
        ),
        (_set_cfg("encoder_layers", 5), r"missing encoder\.encoders\.4\.fc1\.bias"),
        (_set_cfg("predict_layers", "[2,5]"), r"predict_layers'\] = '\[2,5\]'"),
        (_set_cfg("layer_norm_first", True), r"missing losses\.0\.input_norms\.0\.weight"),
        (
            _set_cfg("extractor_mode", "default", config="large-like"),
            r"not in the ILS-SSL layout(?s:.*)conv_layers\.1\.2\.1\.weight",
        ),
        (_set_cfg("conv_feature_layers", "__import__('os')"), r"conv_feature_layers"),
        (
            _edit_state(lambda s: s.update({"encoder.layers.0.self_attn.grep_a": torch.ones(1)})),
            r"not in the ILS-SSL layout(?s:.*)encoder\.layers\.0\.self_attn\.grep_a",
        ),
        (
            _edit_state(lambda s: s.pop("encoder.layers.1.self_attn.k_proj.bias")),
            r"missing encoder\.encoders\.1\.self_attn\.k_proj\.bias",
        ),
    ],
    ids=[
        "text_file",
        "not_fairseq",
        "truncated",
        "other_model",
        "ffn_width",
        "layer_count",
        "predict_layers",
        "pre_ln_flag",
        "extractor_mode",
        "conv_layers_code",
        "unknown_key",
        "missing_k_bias",
    ],
)
def test_bad_checkpoints_raise_and_write_nothing(tmp_path, make, match):
    checkpoint = make(tmp_path)
    before = set(tmp_path.iterdir())
    outdir = tmp_path / "converted"
    with pytest.raises(SystemExit, match=match):
        convert_unispeech.main(["--checkpoint", str(checkpoint), "--outdir", str(outdir)])
    assert not outdir.exists()
    assert set(tmp_path.iterdir()) == before, "left temporary files behind"


def test_fine_tuned_checkpoint_needs_its_letter_dictionary(tmp_path):
    short = tmp_path / "dict.ltr.txt"
    lines = (REFERENCE / "base-like/dict.ltr.txt").read_text().splitlines()
    short.write_text("\n".join(lines[:-1]) + "\n")
    outdir = tmp_path / "converted"
    with pytest.raises(SystemExit, match=r"27 symbols \+ 4 special rows = 31 tokens.*32 rows"):
        convert_unispeech.main(
            [
                "--checkpoint",
                str(REFERENCE / "base-like/checkpoint_ft.pt"),
                "--outdir",
                str(outdir),
                "--dict",
                str(short),
            ]
        )
    assert not outdir.exists()


def test_existing_outdir_is_never_overwritten(tmp_path):
    outdir = tmp_path / "converted"
    outdir.mkdir()
    (outdir / "keep.txt").write_text("mine")
    with pytest.raises(SystemExit, match="exists and is not empty"):
        convert_unispeech.main(
            ["--checkpoint", str(REFERENCE / "base-like/checkpoint.pt"), "--outdir", str(outdir)]
        )
    assert [p.name for p in outdir.iterdir()] == ["keep.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["converted"]

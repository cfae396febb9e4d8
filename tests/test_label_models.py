"""Label models in every form reach one code path and give torchaudio's block outputs.

Each form (fairseq HuBERT checkpoint, torchaudio state dict, Hugging Face directory, ESPnet model)
is a tiny random-weight HuBERT saved in that form; :func:`load_label_model` runs a padded batch of
two utterances and its layer k (valid frames only) must equal torchaudio's
``extract_features(x, lengths, num_layers=k)[0][-1]`` of the same weights within 1e-5 (float32).
torchaudio runs each utterance alone: its GroupNorm front end normalises over the padding, ours
over each utterance's own frames (``espnet_ils.model.frontend``), so alone is what both mean.

The fairseq checkpoint is made without our key map: its keys are written out
(``helpers/hubert.py``) from fairseq's names, matched to torchaudio's by torchaudio's own
``import_fairseq._convert_state_dict``, and the torchaudio reference is loaded through that
converter.
"""

import functools
import json
import re
import shutil
from pathlib import Path
from typing import Dict, List

import pytest
import safetensors.torch
import torch
import torchaudio
import transformers
import yaml
from espnet2.asr.frontend.default import DefaultFrontend
from helpers.corpus import NUM_CLASSES
from helpers.hubert import HUBERT_BLOCKS as NUM_BLOCKS
from helpers.hubert import HUBERT_WIDTH as WIDTH
from helpers.hubert import fairseq_hubert_checkpoint, perturb_, tiny_torchaudio_kwargs
from torch import nn
from torch.nn import functional as F
from torch.nn.utils.rnn import pad_sequence
from torchaudio.models.wav2vec2.utils import import_huggingface_model
from torchaudio.models.wav2vec2.utils.import_fairseq import _convert_state_dict

import espnet_ils  # noqa: F401  (registers our classes)
from espnet_ils.bin import convert_unispeech
from espnet_ils.converters.unispeech import prepare
from espnet_ils.model.frontend import ILSCNNFrontend
from espnet_ils.targets import label_models
from espnet_ils.targets.label_model_files import (
    ESPNET,
    HUGGINGFACE,
    TORCH_FILE,
    label_model_files,
    label_model_identity,
    locate_label_model,
)
from espnet_ils.targets.label_models import LABEL_GRID, FrameGrid, frame_grid, load_label_model
from espnet_ils.targets.layer_features import LayerFeatureExtractor
from espnet_ils.train.tasks import ILSSSLTask

TOLERANCE = 1e-5
NUM_SAMPLES = (4000, 6100)  # 12 and 18 frames
PRE_LN_WIDTH = 40


def tiny_torchaudio(pre_ln: bool = False, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    model = torchaudio.models.wav2vec2_model(**tiny_torchaudio_kwargs(pre_ln))
    perturb_(model, seed=seed + 1)
    return model.eval()


@pytest.fixture(scope="module")
def waveforms() -> List[torch.Tensor]:
    generator = torch.Generator().manual_seed(3)
    return [0.1 * torch.randn(n, generator=generator) for n in NUM_SAMPLES]


@torch.no_grad()
def reference_layers(model: nn.Module, wave: torch.Tensor, normalize: bool) -> List[torch.Tensor]:
    """torchaudio's layers 1..N ``(T, D)`` of one utterance, alone; fairseq's / HF's waveform
    normalisation (``F.layer_norm`` over the utterance) first when the model asks for it."""
    x = F.layer_norm(wave, wave.shape) if normalize else wave
    lengths = torch.tensor([x.numel()])
    return [
        model.extract_features(x[None], lengths, num_layers=k)[0][-1][0]
        for k in range(1, NUM_BLOCKS + 1)
    ]


def assert_layers_match(
    extractor: LayerFeatureExtractor, waves: List[torch.Tensor], references: List[List]
) -> None:
    """Our padded batch, layers 1..N, valid frames == the references."""
    lengths = torch.tensor([wave.numel() for wave in waves])
    states, frames = extractor.extract_batch(
        pad_sequence(waves, batch_first=True), lengths, range(1, NUM_BLOCKS + 1)
    )
    assert states.shape[:2] == (NUM_BLOCKS, len(waves))
    for b, reference in enumerate(references):
        count = int(frames[b])
        assert count == (NUM_SAMPLES[b] - 400) // 320 + 1
        for k, expected in enumerate(reference, start=1):
            assert expected.shape == (count, WIDTH)
            torch.testing.assert_close(
                states[k - 1, b, :count],
                expected,
                atol=TOLERANCE,
                rtol=TOLERANCE,
                msg=lambda message, k=k, b=b: f"utterance {b}, layer {k}: {message}",
            )


# --- (a) fairseq HuBERT checkpoints ---------------------------------------------------------


def fairseq_hubert(pre_ln: bool) -> Dict:
    """A tiny fairseq ``hubert`` checkpoint: random weights in fairseq's keys and shapes."""
    return fairseq_hubert_checkpoint(tiny_torchaudio(pre_ln).state_dict(), pre_ln)


def torchaudio_from_fairseq(checkpoint: Dict, pre_ln: bool) -> nn.Module:
    """The reference: torchaudio's own fairseq import of the checkpoint's weights."""
    model = torchaudio.models.wav2vec2_model(**tiny_torchaudio_kwargs(pre_ln))
    converted = _convert_state_dict(checkpoint["model"])
    del converted["label_embs_concat"]  # passed through by torchaudio for its pretraining model
    model.load_state_dict(converted, strict=True)
    return model.eval()


@pytest.fixture(scope="module", params=[False, True], ids=["base-like", "large-like"])
def fairseq_file(request, tmp_path_factory) -> tuple:
    """``(path, checkpoint, pre_ln)`` of a saved tiny fairseq HuBERT."""
    checkpoint = fairseq_hubert(request.param)
    path = tmp_path_factory.mktemp("fairseq") / "hubert_tiny.pt"
    torch.save(checkpoint, path)
    return path, checkpoint, request.param


def test_fairseq_hubert_gives_torchaudios_layers(fairseq_file, waveforms):
    path, checkpoint, pre_ln = fairseq_file
    extractor = load_label_model(path)
    assert extractor.num_layers == NUM_BLOCKS and extractor.sample_rate == 16000
    reference = torchaudio_from_fairseq(checkpoint, pre_ln)
    expected = [reference_layers(reference, wave, normalize=pre_ln) for wave in waveforms]
    assert_layers_match(extractor, waveforms, expected)


@torch.no_grad()
def test_fairseq_hubert_converts_to_an_ssl_model_dir_with_hubert_head(fairseq_file, tmp_path):
    """``convert_unispeech`` writes HuBERT as an ILS model with the loss on block N; its logits are
    HuBERT's cosine logits over the clusters (pre-LN: after the encoder LayerNorm); the directory
    loads as a label model (both ESPnet forms) with the same layers."""
    path, checkpoint, pre_ln = fairseq_file
    outdir = tmp_path / "converted"
    convert_unispeech.main(["--checkpoint", str(path), "--outdir", str(outdir)])
    config = yaml.safe_load((outdir / "config.yaml").read_text())
    assert config["loss"][0]["conf"]["layers"] == [NUM_BLOCKS]
    assert config["loss"][0]["conf"]["layer_norm_inputs"] is pre_ln
    assert config["encoder_conf"]["relative_position_bias"] is False
    assert (outdir / "tokens.txt").read_text().split() == [*map(str, range(NUM_CLASSES)), "<unk>"]

    model, _ = ILSSSLTask.build_model_from_file(outdir / "config.yaml", outdir / "model.pth")
    model.eval()
    wave = torch.randn(1, NUM_SAMPLES[1], generator=torch.Generator().manual_seed(4)) * 0.1
    feats, lengths = model.frontend(wave, None)
    projected, _ = model.preencoder(feats, lengths)
    layers, _ = model.encoder.layer_outputs(projected, lengths)
    logits = model.losses[0].layer_logits(layers[1:], 0)[0]  # (T, C)

    state = checkpoint["model"]
    top = reference_layers(torchaudio_from_fairseq(checkpoint, pre_ln), wave[0], pre_ln)[-1]
    if pre_ln:  # fairseq: encoder.layer_norm after the last block, for the head only
        top = F.layer_norm(
            top, (WIDTH,), state["encoder.layer_norm.weight"], state["encoder.layer_norm.bias"]
        )
    projected_top = F.linear(top, state["final_proj.weight"], state["final_proj.bias"])
    codewords = state["label_embs_concat"][4:]  # rows 0-3: fairseq's special symbols
    expected = F.cosine_similarity(projected_top[:, None], codewords[None], dim=-1) / 0.1
    torch.testing.assert_close(logits, expected, atol=1e-4, rtol=1e-5)

    directory, weights = load_label_model(outdir), load_label_model(outdir / "model.pth")
    explicit = load_label_model(outdir / "model.pth", config=outdir / "config.yaml")
    expected_layers = load_label_model(path).extract_layers([wave[0]])
    for extractor in (directory, weights, explicit):
        torch.testing.assert_close(extractor.extract_layers([wave[0]]), expected_layers)


def test_fairseq_keys_map_as_documented():
    """Every key of a HuBERT checkpoint is mapped, none dropped; the head keys go where the module
    docstring says (pre-LN: encoder.layer_norm normalises the head's input)."""
    checkpoint = fairseq_hubert(pre_ln=False)
    _, _, tokens, mapped = prepare(checkpoint, None)
    keys = set(checkpoint["model"]) - {"label_embs_concat"} | {"label_embs_concat.0"}
    assert set(mapped.sources.values()) == keys and not mapped.dropped
    assert len(tokens) == NUM_CLASSES + 1
    assert mapped.sources["losses.0.heads.0.codewords"] == "label_embs_concat.0"
    assert mapped.sources["encoder.layer_norm.weight"] == "encoder.layer_norm.weight"
    _, _, _, pre_ln = prepare(fairseq_hubert(pre_ln=True), None)
    assert pre_ln.sources["losses.0.input_norms.0.bias"] == "encoder.layer_norm.bias"


# --- (b) torchaudio state dicts ---------------------------------------------------------------


@pytest.fixture
def tiny_factories(monkeypatch) -> None:
    """Let the tiny sizes load as if they were torchaudio HuBERT models: post-LN at width 32,
    pre-LN at width 40 (the table tells models apart by width and depth)."""
    for pre_ln, width in ((False, WIDTH), (True, PRE_LN_WIDTH)):
        kwargs = {**tiny_torchaudio_kwargs(pre_ln), "encoder_embed_dim": width}
        factory = functools.partial(torchaudio.models.wav2vec2_model, **kwargs)
        factory.__name__ = "tiny_hubert_pre_ln" if pre_ln else "tiny_hubert"
        monkeypatch.setitem(label_models.TORCHAUDIO_FACTORIES, (width, NUM_BLOCKS), factory)


@pytest.mark.parametrize("weight_norm", ["parametrized", "weight_g_v"])
def test_torchaudio_state_dict_gives_torchaudios_layers(
    tiny_factories, waveforms, tmp_path, weight_norm
):
    """Saved as a bundle file is (old files hold ``weight_g`` / ``weight_v``), loaded strictly."""
    model = tiny_torchaudio()
    state = model.state_dict()
    if weight_norm == "weight_g_v":
        state = {
            key.replace("parametrizations.weight.original0", "weight_g").replace(
                "parametrizations.weight.original1", "weight_v"
            ): value
            for key, value in state.items()
        }
        assert any(key.endswith("weight_g") for key in state)
    path = tmp_path / "hubert_fairseq_tiny.pth"
    torch.save(state, path)
    extractor = load_label_model(path)
    expected = [reference_layers(model, wave, normalize=False) for wave in waveforms]
    assert_layers_match(extractor, waveforms, expected)


def test_torchaudio_sizes_pick_torchaudios_hubert_models():
    """The table's keys are the sizes its models build (built on the meta device: no memory)."""
    assert set(label_models.TORCHAUDIO_FACTORIES.values()) == {
        torchaudio.models.hubert_base,
        torchaudio.models.hubert_large,
        torchaudio.models.hubert_xlarge,
    }
    for (width, depth), factory in label_models.TORCHAUDIO_FACTORIES.items():
        with torch.device("meta"):
            model = factory()
        projection = model.encoder.feature_projection.projection
        assert (projection.out_features, len(model.encoder.transformer.layers)) == (width, depth)


def test_torchaudio_pre_ln_model_is_refused_naming_the_reason(tiny_factories, tmp_path):
    torch.manual_seed(0)
    model = torchaudio.models.wav2vec2_model(
        **{**tiny_torchaudio_kwargs(pre_ln=True), "encoder_embed_dim": PRE_LN_WIDTH}
    )
    path = tmp_path / "hubert_large_tiny.pth"
    torch.save(model.state_dict(), path)
    with pytest.raises(
        ValueError,
        match=rf"label model {re.escape(str(path))}: a pre-LN model \(torchaudio "
        r"encoder_layer_norm_first=True, e\.g\. HuBERT LARGE\): build_from_torchaudio refuses it, "
        r"since torchaudio applies its encoder LayerNorm after the last block",
    ):
        load_label_model(path)


# --- (c) Hugging Face directories -------------------------------------------------------------


def tiny_hf_config(model_type: str, **overrides) -> transformers.PretrainedConfig:
    config_class = {"hubert": transformers.HubertConfig, "wav2vec2": transformers.Wav2Vec2Config}
    conf = dict(
        hidden_size=WIDTH,
        num_hidden_layers=NUM_BLOCKS,
        num_attention_heads=4,
        intermediate_size=64,
        conv_dim=[16] * 7,
        num_conv_pos_embeddings=8,
        num_conv_pos_embedding_groups=4,
    )
    conf.update(overrides)
    return config_class[model_type](**conf)


def save_hf_model(directory: Path, config, preprocessor=None, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    model_class = {"hubert": transformers.HubertModel, "wav2vec2": transformers.Wav2Vec2Model}
    model = model_class[config.model_type](config)
    perturb_(model, seed=seed + 1)
    model.eval().save_pretrained(directory)
    if preprocessor is not None:
        (directory / "preprocessor_config.json").write_text(json.dumps(preprocessor))
    return model


@pytest.mark.parametrize(
    "model_type, preprocessor",
    [
        ("hubert", None),
        ("hubert", {"sampling_rate": 16000, "do_normalize": False}),
        ("wav2vec2", {"sampling_rate": 16000, "do_normalize": True}),
    ],
    ids=["hubert", "hubert-preprocessor", "wav2vec2-normalized"],
)
@torch.no_grad()
def test_huggingface_directory_gives_torchaudios_and_its_own_layers(
    waveforms, tmp_path, model_type, preprocessor
):
    model = save_hf_model(tmp_path / "hf", tiny_hf_config(model_type), preprocessor)
    extractor = load_label_model(tmp_path / "hf")
    normalize = bool((preprocessor or {}).get("do_normalize"))
    reference = import_huggingface_model(model).eval()
    expected = [reference_layers(reference, wave, normalize) for wave in waveforms]
    assert_layers_match(extractor, waveforms, expected)
    for wave, layers in zip(waveforms, expected):  # and transformers' own hidden states
        x = F.layer_norm(wave, wave.shape) if normalize else wave
        hidden = model(x[None], output_hidden_states=True).hidden_states
        for k in range(1, NUM_BLOCKS + 1):
            torch.testing.assert_close(hidden[k][0], layers[k - 1], atol=TOLERANCE, rtol=0)


def test_huggingface_ctc_checkpoint_loads_without_its_head(waveforms, tmp_path):
    torch.manual_seed(0)
    model = transformers.HubertForCTC(tiny_hf_config("hubert", vocab_size=8))
    perturb_(model, seed=1)
    model.eval().save_pretrained(tmp_path / "hf_ctc")
    extractor = load_label_model(tmp_path / "hf_ctc")
    reference = import_huggingface_model(model.hubert).eval()  # torchaudio: Wav2Vec2ForCTC only
    assert_layers_match(
        extractor, waveforms, [reference_layers(reference, w, False) for w in waveforms]
    )


# --- identity: the files that define each form ------------------------------------------------


def test_identity_is_every_defining_file_not_the_path(fairseq_file, tmp_path):
    hf = tmp_path / "hf"
    save_hf_model(hf, tiny_hf_config("hubert"), {"sampling_rate": 16000})
    assert locate_label_model(hf).form == HUGGINGFACE
    assert [p.name for p in label_model_files(hf)] == [
        "config.json",
        "preprocessor_config.json",
        "model.safetensors",
    ]
    identity = label_model_identity(hf)
    shutil.copytree(hf, tmp_path / "moved")
    assert label_model_identity(tmp_path / "moved") == identity
    config = json.loads((hf / "preprocessor_config.json").read_text())
    (hf / "preprocessor_config.json").write_text(json.dumps({**config, "do_normalize": True}))
    assert label_model_identity(hf) != identity

    path = fairseq_file[0]
    assert locate_label_model(path).form == TORCH_FILE
    assert label_model_files(path) == [path]
    outdir = tmp_path / "espnet"
    convert_unispeech.main(["--checkpoint", str(path), "--outdir", str(outdir)])
    assert locate_label_model(outdir).form == ESPNET
    assert label_model_files(outdir) == [outdir / "model.pth", outdir / "config.yaml"]
    assert label_model_files(outdir / "model.pth") == label_model_files(outdir)
    before = label_model_identity(outdir)
    with (outdir / "config.yaml").open("a") as f:
        f.write("# edited\n")
    assert label_model_identity(outdir) != before


# --- frame grids --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "frontend, grid",
    [
        (ILSCNNFrontend(), LABEL_GRID),
        (
            ILSCNNFrontend(shapes=[[8, 10, 5]] + [[8, 3, 2]] * 4 + [[8, 2, 2], [8, 2, 3]]),
            FrameGrid(480, 0, 400),
        ),
        (
            ILSCNNFrontend(shapes=[[8, 10, 5]] + [[8, 3, 2]] * 5 + [[8, 2, 2]]),
            FrameGrid(320, 0, 480),
        ),
        (DefaultFrontend(n_fft=400, hop_length=320, center=False, n_mels=16), LABEL_GRID),
        (
            DefaultFrontend(n_fft=512, win_length=400, hop_length=160, center=True, n_mels=16),
            FrameGrid(160, -200, 400),
        ),
    ],
    ids=["conv", "conv-stride-3", "conv-kernel-3", "stft", "stft-centred"],
)
def test_frame_grid_of_each_front_end(frontend, grid):
    assert frame_grid(frontend) == grid


# --- bad input: an error that names the model's file -------------------------------------------


def _hf(tmp_path: Path, model_type: str = "hubert", preprocessor=None, **config) -> Path:
    save_hf_model(tmp_path / "hf", tiny_hf_config(model_type, **config), preprocessor)
    return tmp_path / "hf"


def _edit_json(directory: Path, **changes) -> Path:
    config = json.loads((directory / "config.json").read_text())
    (directory / "config.json").write_text(json.dumps({**config, **changes}))
    return directory


def _fairseq(tmp_path: Path, edit) -> Path:
    checkpoint = fairseq_hubert(pre_ln=False)
    edit(checkpoint)
    torch.save(checkpoint, tmp_path / "hubert.pt")
    return tmp_path / "hubert.pt"


def _saved(tmp_path: Path, contents) -> Path:
    torch.save(contents, tmp_path / "model.pt")
    return tmp_path / "model.pt"


def _text_file(tmp_path: Path) -> Path:
    (tmp_path / "notes.pt").write_text("not a model\n")
    return tmp_path / "notes.pt"


def _empty_dir(tmp_path: Path) -> Path:
    (tmp_path / "empty").mkdir()
    return tmp_path / "empty"


def _hf_without_weights(tmp_path: Path) -> Path:
    directory = _hf(tmp_path)
    (directory / "model.safetensors").unlink()
    return directory


def _hf_missing_weight(tmp_path: Path) -> Path:
    directory = _hf(tmp_path)
    weights = safetensors.torch.load_file(directory / "model.safetensors")
    del weights["encoder.layers.1.feed_forward.output_dense.bias"]
    safetensors.torch.save_file(weights, directory / "model.safetensors", {"format": "pt"})
    return directory


def _torchaudio_extra_key(tmp_path: Path) -> Path:
    state = tiny_torchaudio().state_dict()
    state["encoder.transformer.layers.0.attention.rel_attn_embed.weight"] = torch.zeros(320, 4)
    return _saved(tmp_path, state)


@pytest.mark.parametrize(
    "make, match",
    [
        (
            lambda t: _fairseq(t, lambda c: c["cfg"]["task"].update(sample_rate=8000)),
            r"cfg\['task'\]\['sample_rate'\] = 8000: a label model must take 16000 Hz audio",
        ),
        (
            lambda t: _hf(t, preprocessor={"sampling_rate": 8000}),
            r"preprocessor_config\.json: sampling_rate = 8000: a label model must take 16000 Hz",
        ),
        (
            lambda t: _hf(t, conv_stride=[5, 2, 2, 2, 2, 2, 3]),
            r"frame t covers samples \[480 t, 480 t \+ 400\) \(33\.3333 Hz at 16 kHz\).*needs "
            r"\[320 t, 320 t \+ 400\) \(50 Hz",
        ),
        (
            lambda t: _hf(t, conv_kernel=[10, 3, 3, 3, 3, 3, 2]),
            r"a window of 480 samples every 320",
        ),
        (
            lambda t: _fairseq(
                t, lambda c: c["cfg"]["model"].update(conv_feature_layers="[(16,10,5)] * 7")
            ),
            r"contradict its own cfg",
        ),
        (
            lambda t: _hf(t, do_stable_layer_norm=True),
            r"a pre-LN model \(torchaudio encoder_layer_norm_first=True(?s:.*)fairseq checkpoint",
        ),
        (lambda t: _edit_json(_hf(t), model_type="wavlm"), r"model_type 'wavlm'; only"),
        (lambda t: _edit_json(_hf(t), hidden_act="relu"), r"hidden_act = 'relu'"),
        (_hf_without_weights, r"without PyTorch weights"),
        (
            _hf_missing_weight,
            r"missing encoder\.layers\.1\.feed_forward\.output_dense\.bias \(it would keep",
        ),
        (_text_file, r"cannot be read as a PyTorch checkpoint"),
        (
            lambda t: _saved(t, {"encoder.weight": torch.ones(2)}),
            r"holds a dict with keys \['encoder\.weight'\]: neither a fairseq checkpoint",
        ),
        (lambda t: _saved(t, [torch.ones(2)]), r"holds a list: neither"),
        (_torchaudio_extra_key, r"width 32 with 3 blocks, which is none of torchaudio's"),
        (_empty_dir, r"a directory with neither config\.json \(Hugging Face\) nor config\.yaml"),
        (lambda t: t / "missing.pt", r"no such file or directory"),
        (
            lambda t: _fairseq(t, lambda c: c["cfg"]["task"].update(labels=["km", "mfcc"])),
            r"one label set per model",
        ),
        (
            lambda t: _fairseq(t, lambda c: c["model"].update(extra=torch.ones(1))),
            r"not in the ILS-SSL layout(?s:.*)extra",
        ),
    ],
    ids=[
        "fairseq-8kHz",
        "hf-8kHz",
        "hf-33Hz",
        "hf-window-480",
        "fairseq-cfg-contradicts-weights",
        "hf-pre-ln",
        "hf-wavlm",
        "hf-relu",
        "hf-no-weights",
        "hf-missing-weight",
        "text-file",
        "unknown-state-dict",
        "not-a-dict",
        "torchaudio-unknown-size",
        "empty-directory",
        "missing",
        "fairseq-two-label-sets",
        "fairseq-unknown-key",
    ],
)
def test_bad_label_models_raise_naming_the_file(tmp_path, make, match):
    path = make(tmp_path)
    with pytest.raises(ValueError, match=rf"label model {re.escape(str(path))}:(?s:.*){match}"):
        load_label_model(path)


def test_torchaudio_state_dict_with_an_unknown_key_is_refused(tiny_factories, tmp_path):
    path = _torchaudio_extra_key(tmp_path)
    with pytest.raises(
        ValueError,
        match=rf"label model {re.escape(str(path))}: the state dict does not fit torchaudio's "
        r"tiny_hubert\(\)(?s:.*)rel_attn_embed",
    ):
        load_label_model(path)


def test_layer_beyond_the_depth_names_the_model_file(fairseq_file, waveforms):
    path = fairseq_file[0]
    extractor = load_label_model(path)
    with pytest.raises(
        ValueError,
        match=rf"model {re.escape(str(path))}: layers \[4\]: valid layers are 0 \(input of "
        r"block 1\) to 3",
    ):
        extractor.extract(waveforms, layer=4)

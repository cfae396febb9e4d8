"""Shared tiny builders; every test builds its own modules from them.

Also the tiny SSL and ASR training configs, the generated corpus they train on (``write_corpus``)
and the helpers that run ESPnet's entry points on it (``run_module``, ``data_args``).

Also: a closing line naming the test files skipped because the shared test data is absent.
"""

import json
import os
import re
import shutil
import subprocess
import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional

import numpy as np
import pytest
import soundfile as sf
import torch
from espnet2.utils.yaml_no_alias_safe_dump import yaml_no_alias_safe_dump
from torch import nn

import espnet_ils  # noqa: F401  (registration, before any ESPnet task is used)
from espnet_ils.encoder import ILSTransformerEncoder

# Test data kept outside the repository, in ../shared/data beside it (converter parity fixtures in
# ils_reference/, LibriSpeech files in librispeech_sample/). Tests that need it skip when it is
# absent, with a reason that names the missing directory under this path.
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def tiny_encoder(input_size: Optional[int] = None, **overrides) -> ILSTransformerEncoder:
    """A 4-block, width-32 encoder without dropout (deterministic in train mode)."""
    conf = dict(
        output_size=32,
        attention_heads=4,
        linear_units=64,
        num_blocks=4,
        dropout_rate=0.0,
        attention_dropout_rate=0.0,
        conv_pos_kernel=8,
        conv_pos_groups=4,
    )
    conf.update(overrides)
    return ILSTransformerEncoder(input_size or conf["output_size"], **conf)


NUM_CLASSES = 6
FRAMES_PER_SEGMENT = 5  # 100 ms at 50 Hz
LETTERS = "ABCDEF"

SSL_CONFIG = {
    "batch_type": "unsorted",
    "batch_size": 4,
    "max_epoch": 4,
    "num_iters_per_epoch": 4,
    "num_workers": 0,
    "num_att_plot": 0,
    "keep_nbest_models": 4,  # every epoch: the loss test reads 1epoch.pth, the average all four
    "seed": 3,
    "collate_fn_conf": {"label_downsampling": 1, "pad": False, "rand_crop": True},
    "frontend": "ils_cnn",
    "frontend_conf": {
        "norm_mode": "group_norm",
        "feature_grad_mult": 0.1,
        "shapes": [[32, 10, 5]] + [[32, 3, 2]] * 4 + [[32, 2, 2]] * 2,
    },
    "preencoder": "feature_projection",
    "preencoder_conf": {"output_size": 64, "dropout_rate": 0.0},
    "encoder": "ils_transformer",
    "encoder_conf": {
        "output_size": 64,
        "attention_heads": 4,
        "linear_units": 128,
        "num_blocks": 4,
        "dropout_rate": 0.0,
        "attention_dropout_rate": 0.0,
        "conv_pos_kernel": 16,
        "conv_pos_groups": 4,
    },
    "normalize": None,
    "loss": [
        {"name": "ils", "conf": {"num_classes": NUM_CLASSES, "layers": [2, 4], "final_dim": 16}}
    ],
    "util": [{"name": "mask", "conf": {"mask_prob": 0.5, "mask_length": 3}}],
    "optim": "adam",
    "optim_conf": {"lr": 0.003},
}

ASR_CONFIG = {
    "batch_type": "unsorted",
    "batch_size": 4,
    "max_epoch": 1,
    "num_iters_per_epoch": 3,
    "num_workers": 0,
    "num_att_plot": 0,
    "freeze_param": ["frontend.upstream.frontend"],
    "frontend": "espnet_ssl",
    "frontend_conf": {
        "layer": -1,
        "freeze_encoder_steps": 1,
        "masking_conf": {
            "mask_prob": 0.3,
            "mask_length": 2,
            "mask_channel_prob": 0.2,
            "mask_channel_length": 4,
        },
    },
    "normalize": None,
    "specaug": None,
    "encoder": "linear",
    "encoder_conf": {
        "output_size": 64,
        "input_layer": None,
        "normalize_before": False,
        "dropout_rate": 0.0,
    },
    "decoder": None,
    "model_conf": {"ctc_weight": 1.0, "extract_feats_in_collect_stats": False},
    "optim": "adam",
    "optim_conf": {"lr": 0.001},
}


def write_corpus(root: Path) -> None:
    """8 utterances (1-2.75 s) with frame labels, letter transcripts, token lists and shapes."""
    rng = np.random.default_rng(0)
    (root / "wav").mkdir(parents=True)
    scp, labels, chars, shapes = [], [], [], []
    for index in range(8):
        samples = 16000 + 4000 * index
        frames = (samples - 400) // 320 + 1
        label = rng.integers(0, NUM_CLASSES, size=frames // FRAMES_PER_SEGMENT + 1).repeat(
            FRAMES_PER_SEGMENT
        )[:frames]
        pitch = 150.0 * 1.4 ** label.repeat(320)  # one tone per 20 ms frame, pitch from the label
        pitch = np.pad(pitch, (0, samples - pitch.size), mode="edge")
        wave = 0.3 * np.sin(2 * np.pi * np.cumsum(pitch) / 16000) + 0.01 * rng.standard_normal(
            samples
        )
        name = f"utt{index}"
        sf.write(root / "wav" / f"{name}.flac", wave.astype(np.float32), 16000)
        scp.append(f"{name} {root / 'wav' / name}.flac")
        labels.append(f"{name} " + " ".join(map(str, label)))
        chars.append(f"{name} " + "".join(LETTERS[c] for c in label[::FRAMES_PER_SEGMENT][:6]))
        shapes.append(f"{name} {samples}")
    for filename, lines in [
        ("wav.scp", scp),
        ("labels", labels),
        ("text", chars),
        ("speech_shape", shapes),
    ]:
        (root / filename).write_text("\n".join(lines) + "\n")
    (root / "km_tokens.txt").write_text(
        "\n".join([str(i) for i in range(NUM_CLASSES)] + ["<unk>"]) + "\n"
    )
    (root / "char_tokens.txt").write_text(
        "\n".join(["<blank>", "<unk>", *LETTERS, "<sos/eos>"]) + "\n"
    )


def run_module(module: str, args: list, cwd: Path) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [sys.executable, "-m", module, *map(str, args)], cwd=cwd, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr[-3000:]
    offline_noise = [w for w in ("nltk_data", "urlopen") if w in result.stderr + result.stdout]
    assert not offline_noise, f"{module} tried the network: {offline_noise}"
    return result


def data_args(root: Path, text_file: str) -> list:
    args = []
    for split in ("train", "valid"):
        args += [f"--{split}_data_path_and_name_and_type", f"{root / 'wav.scp'},speech,sound"]
        args += [f"--{split}_data_path_and_name_and_type", f"{root / text_file},text,text"]
        args += [f"--{split}_shape_file", root / "speech_shape"]
    return args


# A tiny ILS-SSL model: conv front of 7 blocks (total stride 320, receptive field 400), 3 blocks of 32.
SHAPES = [[16, 10, 5]] + [[16, 3, 2]] * 4 + [[16, 2, 2]] * 2
ENCODER = dict(output_size=32, attention_heads=4, linear_units=64, num_blocks=3, conv_pos_kernel=8)


def tiny_config(norm_mode: str, pre_ln: bool) -> Dict:
    """A tiny SSL training config (what ``ssl_train`` reads); ``norm_mode`` "fbank": log-mel front."""
    if norm_mode == "fbank":  # as the mini configs: 50 Hz log-mel, utterance mean/variance norm
        front = {"frontend": "default", "normalize": "utterance_mvn"}
        front["frontend_conf"] = dict(n_fft=400, hop_length=320, center=False, n_mels=16)
    else:
        front = {"frontend": "ils_cnn", "normalize": None}
        front["frontend_conf"] = dict(norm_mode=norm_mode, shapes=SHAPES, normalize_audio=pre_ln)
    return {
        **front,
        "preencoder": "feature_projection",
        "preencoder_conf": {"output_size": 32},
        "encoder": "ils_transformer",
        "encoder_conf": dict(ENCODER, conv_pos_groups=4, normalize_before=pre_ln),
        "loss": [{"name": "ils", "conf": {"num_classes": 5, "layers": [2, 3], "final_dim": 8}}],
        "util": [{"name": "mask", "conf": {"mask_prob": 0.5}}],
    }


def write_model(task, config: Dict, tokens: List[str], outdir: Path) -> Path:
    """Build ``config`` with random weights and save it as ESPnet training does; returns weights."""
    outdir.mkdir(parents=True)
    draft = outdir / "draft.yaml"
    with draft.open("w") as f:
        yaml_no_alias_safe_dump(config, f)
    args = task.get_parser().parse_args(["--config", str(draft)])
    args.token_list = tokens
    model = task.build_model(args)
    with torch.no_grad():  # move the norms off their defaults so that a mistake shows
        for module in model.modules():
            if isinstance(module, (nn.LayerNorm, nn.GroupNorm)):
                module.weight.normal_(1.0, 0.3)
                module.bias.normal_(0.0, 0.3)
    with (outdir / "config.yaml").open("w") as f:
        yaml_no_alias_safe_dump(vars(args), f)
    torch.save(model.state_dict(), outdir / "valid.loss.best.pth")
    return outdir / "valid.loss.best.pth"


# The LibriSpeech sample in ../shared (14 utterances, 79 s, speakers 1089, 1988, 2412, 3752).
LIBRISPEECH_SAMPLE = SHARED_DATA / "librispeech_sample"
needs_sample = pytest.mark.skipif(
    not LIBRISPEECH_SAMPLE.is_dir(), reason=f"{LIBRISPEECH_SAMPLE} (shared test data) is absent"
)
# Libri-Light's subset of each sample speaker (write_librilight).
SUBSET_OF_SPEAKER = {"1089": "small", "1988": "medium", "2412": "medium", "3752": "large"}


def two_segments(duration: float) -> List[List[float]]:
    """A VAD of two stretches with a pause between them and silence at both ends."""
    return [[0.21, round(0.45 * duration, 3)], [round(0.5 * duration, 3), round(duration - 0.1, 3)]]


def write_json(flac: Path, voice_activity) -> None:
    """Libri-Light's JSON beside ``flac``: its speaker, book and VAD ``[[start, end], ...]`` (s)."""
    meta = {"speaker": flac.parent.parent.name, "book_meta": {"id": "1"}, "snr": 9.5}
    flac.with_suffix(".json").write_text(json.dumps({**meta, "voice_activity": voice_activity}))


def write_librilight(root: Path, vad: Callable = two_segments) -> Path:
    """The 14 sample FLACs as Libri-Light: speaker 1089 in small/, 1988 and 2412 in medium/, 3752
    in large/, LibriSpeech's chapter as the book."""
    for flac in sorted(LIBRISPEECH_SAMPLE.rglob("*.flac")):
        speaker, book = flac.parent.parent.name, flac.parent.name
        dst = root / SUBSET_OF_SPEAKER[speaker] / speaker / book / flac.name
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(flac, dst)
        write_json(dst, vad(sf.info(str(flac)).duration))
    return root


# A tiny fairseq HuBERT checkpoint (a ``hubert`` model as hubert_base_ls960.pt, at tiny sizes): its
# keys written out from fairseq's names, its weights those of a torchaudio model of the same sizes.
HUBERT_CONV = [(16, 10, 5)] + [(16, 3, 2)] * 4 + [(16, 2, 2)] * 2
HUBERT_WIDTH = 32
HUBERT_BLOCKS = 3
HUBERT_FINAL_DIM = 8


def tiny_torchaudio_kwargs(pre_ln: bool = False) -> Dict:
    """``wav2vec2_model`` arguments of a tiny HuBERT (BASE-like, or LARGE-like when pre-LN)."""
    return dict(
        extractor_mode="layer_norm" if pre_ln else "group_norm",
        extractor_conv_layer_config=HUBERT_CONV,
        extractor_conv_bias=False,
        encoder_embed_dim=HUBERT_WIDTH,
        encoder_projection_dropout=0.1,
        encoder_pos_conv_kernel=8,
        encoder_pos_conv_groups=4,
        encoder_num_layers=HUBERT_BLOCKS,
        encoder_num_heads=4,
        encoder_attention_dropout=0.1,
        encoder_ff_interm_features=64,
        encoder_ff_interm_dropout=0.0,
        encoder_dropout=0.1,
        encoder_layer_norm_first=pre_ln,
        encoder_layer_drop=0.05,
        aux_num_out=None,
    )


def fairseq_encoder_keys(pre_ln: bool) -> List[str]:
    """fairseq HubertModel's encoder keys for the tiny sizes (fairseq's names, written out)."""
    params = ("weight", "bias")
    keys = [f"feature_extractor.conv_layers.{j}.0.weight" for j in range(len(HUBERT_CONV))]
    if pre_ln:  # extractor_mode layer_norm: a LayerNorm in every conv block
        keys += [
            f"feature_extractor.conv_layers.{j}.2.1.{p}"
            for j in range(len(HUBERT_CONV))
            for p in params
        ]
    else:  # extractor_mode default: a GroupNorm in block 0
        keys += [f"feature_extractor.conv_layers.0.2.{p}" for p in params]
    keys += [f"{module}.{p}" for module in ("layer_norm", "post_extract_proj") for p in params]
    keys += [f"encoder.pos_conv.0.{p}" for p in ("bias", "weight_g", "weight_v")]
    keys += [f"encoder.layer_norm.{p}" for p in params]
    modules = [f"self_attn.{name}_proj" for name in ("k", "v", "q", "out")]
    modules += ["self_attn_layer_norm", "fc1", "fc2", "final_layer_norm"]
    keys += [
        f"encoder.layers.{i}.{module}.{p}"
        for i in range(HUBERT_BLOCKS)
        for module in modules
        for p in params
    ]
    return keys


def torchaudio_name(key: str) -> str:
    """torchaudio's key for a fairseq key, as its state dict names weight-norm tensors."""
    from torchaudio.models.wav2vec2.utils.import_fairseq import _map_key

    key = _map_key(key)
    return key.replace("weight_g", "parametrizations.weight.original0").replace(
        "weight_v", "parametrizations.weight.original1"
    )


def hubert_cfg(pre_ln: bool) -> Dict:
    """The cfg of a fairseq ``hubert`` checkpoint of the tiny sizes (BASE- or LARGE-like)."""
    return {
        "_name": None,
        "model": {
            "_name": "hubert",
            "label_rate": 50.0,
            "extractor_mode": "layer_norm" if pre_ln else "default",
            "encoder_layers": HUBERT_BLOCKS,
            "encoder_embed_dim": HUBERT_WIDTH,
            "encoder_ffn_embed_dim": 64,
            "encoder_attention_heads": 4,
            "activation_fn": "gelu",
            "layer_type": "transformer",
            "dropout": 0.1,
            "attention_dropout": 0.1,
            "activation_dropout": 0.0,
            "encoder_layerdrop": 0.05,
            "dropout_input": 0.1,
            "dropout_features": 0.1,
            "final_dim": HUBERT_FINAL_DIM,
            "untie_final_proj": False,
            "layer_norm_first": pre_ln,
            "conv_feature_layers": "[(16,10,5)] + [(16,3,2)] * 4 + [(16,2,2)] * 2",
            "conv_bias": False,
            "logit_temp": 0.1,
            "target_glu": False,
            "feature_grad_mult": 0.1,
            "mask_length": 10,
            "mask_prob": 0.8,
            "mask_selection": "static",
            "mask_other": 0.0,
            "no_mask_overlap": False,
            "mask_min_space": 1,
            "mask_channel_length": 10,
            "mask_channel_prob": 0.0,
            "mask_channel_selection": "static",
            "mask_channel_other": 0.0,
            "no_mask_channel_overlap": False,
            "mask_channel_min_space": 1,
            "conv_pos": 8,
            "conv_pos_groups": 4,
            "conv_pos_batch_norm": False,
            "latent_temp": [2.0, 0.5, 0.999995],
            "skip_masked": False,
            "skip_nomask": False,
            "checkpoint_activations": False,
            "required_seq_len_multiple": 2,
        },
        "task": {
            "_name": "hubert_pretraining",
            "labels": ["km"],
            "label_rate": 50.0,
            "sample_rate": 16000,
            "normalize": pre_ln,
            "max_sample_size": 250000,
            "min_sample_size": 32000,
        },
        "criterion": {
            "_name": "hubert",
            "pred_masked_weight": 1.0,
            "pred_nomask_weight": 0.0,
            "loss_weights": [10.0],
        },
    }


def fairseq_hubert_checkpoint(source: Dict[str, torch.Tensor], pre_ln: bool) -> Dict:
    """A tiny fairseq ``hubert`` checkpoint ``{"cfg", "model"}`` with the weights of ``source``
    (the state dict of ``wav2vec2_model(**tiny_torchaudio_kwargs(pre_ln))``) under fairseq's keys,
    plus a random head (``final_proj``, ``label_embs_concat`` over ``NUM_CLASSES`` clusters)."""
    names = {key: torchaudio_name(key) for key in fairseq_encoder_keys(pre_ln)}
    assert sorted(names.values()) == sorted(source), "fairseq keys do not cover torchaudio's"
    state = {key: source[name].clone() for key, name in names.items()}
    generator = torch.Generator().manual_seed(7)
    state["mask_emb"] = torch.rand(HUBERT_WIDTH, generator=generator)
    state["final_proj.weight"] = 0.2 * torch.randn(
        HUBERT_FINAL_DIM, HUBERT_WIDTH, generator=generator
    )
    state["final_proj.bias"] = 0.1 * torch.randn(HUBERT_FINAL_DIM, generator=generator)
    state["label_embs_concat"] = torch.rand(4 + NUM_CLASSES, HUBERT_FINAL_DIM, generator=generator)
    return {"cfg": hubert_cfg(pre_ln), "model": state}


@pytest.fixture(autouse=True)
def _seeded() -> Iterator[None]:
    torch.manual_seed(0)
    yield


STAND_IN_WGET = r"""#!/usr/bin/env bash
echo "$*" >> "${WGET_CALLS}"
[ "${WGET_OFFLINE:-0}" = 1 ] && exit 4  # wget's "network failure"
prefix=. continue=0 spider=0 url=
while [ $# -gt 0 ]; do
    case $1 in
        --directory-prefix) prefix=$2; shift 2 ;;
        --continue) continue=1; shift ;;
        --spider) spider=1; shift ;;
        --*) shift ;;
        *) url=$1; shift ;;
    esac
done
source=${WGET_SERVES}/${url##*/}
[ -f "${source}" ] || exit 8  # the server's 404
[ "${spider}" = 1 ] && exit 0
out=${prefix}/${url##*/}
have=0
if [ "${continue}" = 1 ] && [ -f "${out}" ]; then have=$(stat -c %s "${out}"); else : > "${out}"; fi
tail -c +$((have + 1)) "${source}" >> "${out}"
"""


@dataclass
class StandInWget:
    """The ``stand_in`` fixture's ``wget``: what it serves and what it was asked."""

    served: Path  # the files it serves, found by the basename of the URL asked for
    call_log: Path  # one line of arguments per call

    def calls(self) -> List[str]:
        """Its calls so far, each as the line of its arguments."""
        return self.call_log.read_text().splitlines() if self.call_log.exists() else []


@pytest.fixture
def stand_in(tmp_path, monkeypatch) -> StandInWget:
    """A ``wget`` on PATH that serves files from a local folder (``--continue`` resumes a partial
    file like an HTTP range request, ``--spider`` only checks) or, with ``WGET_OFFLINE=1``, fails
    like an unreachable host; every call is logged. Used by the recipe's download tests."""
    bin_dir, served = tmp_path / "bin", tmp_path / "served"
    bin_dir.mkdir()
    served.mkdir()
    wget = bin_dir / "wget"
    wget.write_text(STAND_IN_WGET)
    wget.chmod(0o755)
    # The recipe's scripts run "python", as under path.sh: this interpreter.
    path = os.pathsep.join([str(bin_dir), str(Path(sys.executable).parent), os.environ["PATH"]])
    monkeypatch.setenv("PATH", path)
    monkeypatch.setenv("WGET_CALLS", str(tmp_path / "wget_calls"))
    monkeypatch.setenv("WGET_SERVES", str(served))
    return StandInWget(served=served, call_log=tmp_path / "wget_calls")


@pytest.fixture(scope="session")
def lm_root(tmp_path_factory) -> Path:
    """The grammar texts and LM text of tests/test_transformer_lm.py (``make_lm_root``)."""
    from test_transformer_lm import make_lm_root  # ESPnet's LM task: only where it is used

    return make_lm_root(tmp_path_factory.mktemp("lm"))


@pytest.fixture(scope="session")
def lm_exp(lm_root) -> Path:
    """The letter Transformer LM of tests/test_transformer_lm.py (``train_lm``), trained once per
    session for the LM tests and the decoding benchmark's test."""
    from test_transformer_lm import train_lm

    return train_lm(lm_root)


def pytest_terminal_summary(terminalreporter) -> None:
    """After the run, one line naming the files whose tests skipped for missing shared data."""
    shared_path = re.compile(re.escape(str(SHARED_DATA)) + r"/[^/\s)]+")
    files_of: Dict[str, Dict[str, int]] = defaultdict(lambda: defaultdict(int))  # data -> file -> n
    for report in terminalreporter.stats.get("skipped", []):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else ""
        found = shared_path.search(reason)
        if found:
            files_of[found.group(0)][report.nodeid.split("::")[0]] += 1
    if not files_of:
        return
    total = sum(sum(files.values()) for files in files_of.values())
    needs = "; ".join(
        ", ".join(f"{name} ({count})" for name, count in sorted(files.items())) + f" need {data}"
        for data, files in sorted(files_of.items())
    )
    terminalreporter.write_line(
        f"{total} tests skipped for missing shared test data: {needs} "
        f"(put the data in {SHARED_DATA} to run them)",
        yellow=True,
        bold=True,
    )

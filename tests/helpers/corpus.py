"""The generated corpus (``write_corpus``: 8 utterances whose tones follow their frame labels),
the tiny SSL and ASR training configs that train on it, and running ESPnet's entry points on it
(``run_module``, ``data_args``)."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import soundfile as sf

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
    """Run ``python -m module args`` in ``cwd``; it must succeed without trying the network."""
    result = subprocess.run(
        [sys.executable, "-m", module, *map(str, args)], cwd=cwd, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr[-3000:]
    offline_noise = [w for w in ("nltk_data", "urlopen") if w in result.stderr + result.stdout]
    assert not offline_noise, f"{module} tried the network: {offline_noise}"
    return result


def data_args(root: Path, text_file: str) -> list:
    """ESPnet's training and validation data options for the corpus in ``root``: its audio, the
    targets in ``text_file`` (``labels``: frame labels for SSL, ``text``: letters for ASR), its
    shapes."""
    args = []
    for split in ("train", "valid"):
        args += [f"--{split}_data_path_and_name_and_type", f"{root / 'wav.scp'},speech,sound"]
        args += [f"--{split}_data_path_and_name_and_type", f"{root / text_file},text,text"]
        args += [f"--{split}_shape_file", root / "speech_shape"]
    return args

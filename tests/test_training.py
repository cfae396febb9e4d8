"""End to end through ESPnet: ssl_train -> ESPnetSSLFrontend in asr_train -> Speech2Text.

Runs the real entry points in subprocesses (as the recipe does) on a few generated waveforms whose
k-means-like labels are learnable: each 100 ms segment is a tone whose pitch encodes its label.
"""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import yaml
from espnet2.tasks.ssl import SSLTask

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


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("e2e")
    write_corpus(root)
    (root / "ssl.yaml").write_text(yaml.safe_dump(SSL_CONFIG))
    (root / "asr.yaml").write_text(yaml.safe_dump(ASR_CONFIG))
    return root


@pytest.fixture(scope="module")
def ssl_exp(workdir) -> Path:
    exp = workdir / "exp" / "ssl"
    run_module(
        "espnet_ils.bin.ssl_train",
        [
            "--config",
            workdir / "ssl.yaml",
            "--output_dir",
            exp,
            "--ngpu",
            0,
            "--token_list",
            workdir / "km_tokens.txt",
            "--token_type",
            "word",
            *data_args(workdir, "labels"),
        ],
        workdir,
    )
    return exp


def fixed_batch_loss(exp: Path, checkpoint: str, root: Path) -> float:
    model, args = SSLTask.build_model_from_file(exp / "config.yaml", exp / checkpoint, device="cpu")
    model.eval()
    waves, labels = [], []
    for line in (root / "labels").read_text().splitlines()[:4]:
        name, *ids = line.split()
        waves.append(torch.from_numpy(sf.read(root / "wav" / f"{name}.flac", dtype="float32")[0]))
        labels.append(torch.tensor([int(i) for i in ids]))
    samples = min(w.numel() for w in waves)
    frames = (samples - 400) // 320 + 1
    speech = torch.stack([w[:samples] for w in waves])
    text = torch.stack([t[:frames] for t in labels])
    torch.manual_seed(0)  # the same masks for every checkpoint
    with torch.no_grad():
        loss, _, _ = model(speech, torch.full((4,), samples), text, torch.full((4,), frames))
    return float(loss)


def test_ssl_train_writes_checkpoints_and_the_loss_falls(ssl_exp, workdir):
    assert (ssl_exp / "valid.loss.best.pth").exists() and (ssl_exp / "checkpoint.pth").exists()
    config = yaml.safe_load((ssl_exp / "config.yaml").read_text())
    assert config["encoder"] == "ils_transformer" and config["loss"][0]["name"] == "ils"
    first = fixed_batch_loss(ssl_exp, "1epoch.pth", workdir)
    last = fixed_batch_loss(ssl_exp, "4epoch.pth", workdir)
    assert last < first - 0.3, f"loss on a fixed batch did not fall: {first:.3f} -> {last:.3f}"


def test_the_average_of_the_best_checkpoints_is_written_as_espnet_recipes_use_it(ssl_exp):
    """``--inference_model valid.loss.ave.pth``: ESPnet's average of the ``keep_nbest_models``
    best epochs, written at the end of training through our crash-safe trainer."""
    averaged = torch.load(ssl_exp / "valid.loss.ave.pth", map_location="cpu")
    assert (ssl_exp / "valid.loss.ave.pth").resolve().name == "valid.loss.ave_4best.pth"
    epochs = [torch.load(ssl_exp / f"{n}epoch.pth", map_location="cpu") for n in range(1, 5)]
    name = "encoder.encoders.0.fc1.weight"
    torch.testing.assert_close(averaged[name], sum(e[name] for e in epochs) / 4)
    assert not torch.equal(averaged[name], epochs[-1][name])


@pytest.fixture(scope="module")
def asr_exp(ssl_exp, workdir) -> Path:
    exp = workdir / "exp" / "asr"
    run_module(
        "espnet_ils.bin.asr_train",
        [
            "--config",
            workdir / "asr.yaml",
            "--output_dir",
            exp,
            "--ngpu",
            0,
            "--token_list",
            workdir / "char_tokens.txt",
            "--token_type",
            "char",
            "--frontend_conf",
            f"frontend_conf.path_or_url={ssl_exp / 'valid.loss.best.pth'}",
            *data_args(workdir, "text"),
        ],
        workdir,
    )
    return exp


def test_finetuned_model_holds_the_pretrained_ils_encoder(asr_exp, ssl_exp):
    from espnet2.tasks.asr import ASRTask

    asr_model, _ = ASRTask.build_model_from_file(
        asr_exp / "config.yaml", asr_exp / "valid.loss.best.pth"
    )
    ssl_model, _ = SSLTask.build_model_from_file(
        ssl_exp / "config.yaml", ssl_exp / "valid.loss.best.pth"
    )
    upstream = asr_model.frontend.upstream
    assert type(upstream.encoder).__name__ == "ILSTransformerEncoder"
    # the conv front was frozen: it still holds the pretrained weights
    for name, tensor in ssl_model.frontend.state_dict().items():
        torch.testing.assert_close(upstream.frontend.state_dict()[name], tensor)


def test_asr_inference_decodes_with_the_finetuned_model(asr_exp, workdir):
    out = workdir / "exp" / "decode"
    run_module(
        "espnet_ils.bin.asr_inference",
        [
            "--ngpu",
            0,
            "--data_path_and_name_and_type",
            f"{workdir / 'wav.scp'},speech,sound",
            "--asr_train_config",
            asr_exp / "config.yaml",
            "--asr_model_file",
            asr_exp / "valid.loss.best.pth",
            "--output_dir",
            out,
            "--ctc_weight",
            1.0,
            "--lm_weight",
            0.0,
            "--beam_size",
            2,
        ],
        workdir,
    )
    hyps = (out / "1best_recog" / "text").read_text().splitlines()
    assert sorted(line.split()[0] for line in hyps) == [f"utt{i}" for i in range(8)]

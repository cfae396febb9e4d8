"""End to end through ESPnet: ssl_train -> ESPnetSSLFrontend in asr_train -> Speech2Text.

Runs the real entry points in subprocesses (as the recipe does) on a few generated waveforms whose
k-means-like labels are learnable: each 100 ms segment is a tone whose pitch encodes its label
(``helpers.corpus.write_corpus``).
"""

from pathlib import Path

import pytest
import soundfile as sf
import torch
import yaml
from espnet2.tasks.ssl import SSLTask
from helpers.corpus import ASR_CONFIG, SSL_CONFIG, data_args, run_module, write_corpus

pytestmark = pytest.mark.slow  # trains or runs the recipe: the full suite only


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

"""The LARGE recipe (run_large.sh) from Libri-Light to WER, every stage that runs offline (1-11;
12 is skipped without --hf_repo), on a corpus built here from the shared LibriSpeech sample:

* unlab_60k: its 14 files in Libri-Light's layout with VAD JSONs written here (small/, medium/,
  large/), cut by stage 1;
* train_960 (the fine-tuning set: its three subsets one sample speaker each), dev_clean and
  test_clean in LibriSpeech's layout;
* the label model: a tiny random-weight HuBERT saved as a fairseq checkpoint (as
  hubert_base_ls960.pt) and a k-means quantizer fitted here on its block 2 (as
  hubert_base_ls960_L9_km500.bin), given through db.sh's HUBERT_BASE and HUBERT_BASE_KMEANS;
* tiny LARGE-shaped configs derived from the recipe's (pre-LN, a LayerNorm per conv block and per
  head, K = {2, 3}), a few steps each.

Most of its time goes to starting ESPnet's entry points (10-20 s of imports each), so it runs the
fewest: decoding by best path of test_clean only, cluster quality on dev_clean only (skipped,
saying so: no alignments); the other decode modes and test sets take the same paths as in run.sh
and tests/test_recipe_ci.py.
"""

import os
import subprocess
import time
from pathlib import Path

import pytest
import soundfile as sf
import torch
import torchaudio
import yaml
from espnet2.utils.yaml_no_alias_safe_dump import yaml_no_alias_safe_dump
from helpers.hubert import fairseq_hubert_checkpoint, tiny_torchaudio_kwargs
from helpers.librilight import write_librilight
from helpers.shared_data import LIBRISPEECH_SAMPLE, needs_sample

from espnet_ils.data.audio import num_frames
from espnet_ils.data.kaldi_files import read_key_file
from espnet_ils.targets.kmeans import fit_kmeans, load_kmeans, save_kmeans
from espnet_ils.targets.label_models import load_label_model

pytestmark = pytest.mark.slow  # trains or runs the recipe: the full suite only

RECIPE = Path(__file__).resolve().parents[1] / "egs2/librispeech_ils/ssl1"
LAYER, CLUSTERS = 2, 8  # block 2 of the tiny HuBERT's 3 (the paper: 9 of 12), k-means 8 (500)
TAG = f"it2_L{LAYER}_km{CLUSTERS}_hubert_tiny"  # named after the label model's file
RUN = "ils_seed0"
ASR_EXP = f"asr_{TAG}_{RUN}_train_asr_ctc_large_tiny"
# LibriSpeech subsets from the sample: the three of train_960 one speaker each (no utterance in
# two of them), the dev and test sets whole.
SUBSETS = {
    "train-clean-100": "dev-clean/1988",
    "train-clean-360": "dev-clean/2412",
    "train-other-500": "dev-clean/3752",
    "dev-clean": "dev-clean",
    "test-clean": "test-clean",
}
TINY_CONV = [[16, 10, 5]] + [[16, 3, 2]] * 4 + [[16, 2, 2]] * 2
TINY_ENCODER = dict(
    output_size=32, attention_heads=4, linear_units=64, num_blocks=3, conv_pos_kernel=8,
    conv_pos_groups=4,
)  # fmt: skip
FEW_STEPS = dict(
    batch_bins=320000, accum_grad=1, max_epoch=1, num_iters_per_epoch=2, keep_nbest_models=1,
    use_amp=False, num_workers=0,
)  # fmt: skip


def write_librispeech(root: Path) -> Path:
    for subset, source in SUBSETS.items():
        for flac in sorted((LIBRISPEECH_SAMPLE / source).rglob("*.flac")):
            chapter = root / subset / flac.parent.relative_to(flac.parents[2])
            chapter.mkdir(parents=True, exist_ok=True)
            (chapter / flac.name).symlink_to(flac)
        for trans in sorted((LIBRISPEECH_SAMPLE / source).rglob("*.trans.txt")):
            dst = root / subset / trans.parent.relative_to(trans.parents[2]) / trans.name
            dst.write_text(trans.read_text())
    return root


def write_label_model(root: Path) -> tuple:
    """The tiny fairseq HuBERT and a k-means quantizer fitted on its block ``LAYER`` over the
    sample's audio, as the released pair is: (checkpoint, quantizer)."""
    root.mkdir(parents=True)
    torch.manual_seed(0)
    model = torchaudio.models.wav2vec2_model(**tiny_torchaudio_kwargs(pre_ln=False))
    checkpoint = root / "hubert_tiny.pt"
    torch.save(fairseq_hubert_checkpoint(model.state_dict(), pre_ln=False), checkpoint)
    waves = [
        torch.from_numpy(sf.read(str(flac), dtype="float32")[0])
        for flac in sorted(LIBRISPEECH_SAMPLE.rglob("*.flac"))
    ]
    features = torch.cat(load_label_model(checkpoint).extract(waves, layer=LAYER)).numpy()
    quantizer = root / f"hubert_tiny_L{LAYER}_km{CLUSTERS}.bin"
    save_kmeans(fit_kmeans(features, CLUSTERS, 0, {"n_init": 1}), quantizer)
    return checkpoint, quantizer


def write_configs(root: Path) -> tuple:
    """The recipe's LARGE pretraining and fine-tuning configs at tiny sizes, a few steps each."""
    root.mkdir(parents=True)
    ssl = yaml.safe_load((RECIPE / "conf/tuning/train_ssl_ils_large.yaml").read_text())
    ssl.update(FEW_STEPS)
    ssl["frontend_conf"]["shapes"] = TINY_CONV
    ssl["preencoder_conf"]["output_size"] = TINY_ENCODER["output_size"]
    ssl["encoder_conf"].update(TINY_ENCODER)
    ssl["loss"][0]["conf"].update(num_classes=CLUSTERS, layers=[LAYER, 3], final_dim=8)
    ssl["scheduler_conf"] = {"warmup_steps_list": [0, 1, 2], "warmup_lr_list": [0.0, 1e-3, 0.0]}
    asr = yaml.safe_load((RECIPE / "conf/tuning/train_asr_ctc_large_960h.yaml").read_text())
    asr.update(FEW_STEPS)
    asr["frontend_conf"]["freeze_encoder_steps"] = 1
    # ESPnet's Masking needs mask_channel_prob * width / mask_channel_length >= 1 channel span
    asr["frontend_conf"]["masking_conf"]["mask_channel_length"] = 4
    asr["encoder_conf"]["output_size"] = TINY_ENCODER["output_size"]
    asr["scheduler_conf"]["max_steps"] = 2
    paths = root / "train_ssl_ils_large_tiny.yaml", root / "train_asr_ctc_large_tiny.yaml"
    for config, path in zip((ssl, asr), paths):
        path.write_text(yaml_no_alias_safe_dump(config))
    return paths


def run_large(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["./run_large.sh", *args], cwd=RECIPE, env=env, capture_output=True, text=True, timeout=600
    )


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("large")
    write_librilight(root / "librilight")
    librispeech = write_librispeech(root / "LibriSpeech")
    checkpoint, quantizer = write_label_model(root / "hubert")
    ssl_config, asr_config = write_configs(root / "conf")
    dirs = {name: root / name for name in ("data", "dump", "exp")}
    env = {
        **os.environ,
        "LIBRILIGHT": str(root / "librilight"),
        "LIBRISPEECH": str(librispeech),
        "LIBRISPEECH_LM": str(root / "librispeech_lm"),  # absent: nothing of it is used
        "LIBRISPEECH_ALIGNMENTS": str(root / "alignments"),  # absent: stage 7 says so
        "HUBERT_BASE": str(checkpoint),
        "HUBERT_BASE_KMEANS": str(quantizer),
    }
    args = [arg for name, path in dirs.items() for arg in (f"--{name}dir", str(path))]
    args += [
        # one utterance per forward pass: the labels the test computes, bit for bit
        *("--ngpu", "0", "--nj", "1", "--inference_nj", "1", "--label_batch_size", "1"),
        *("--it2_layer", str(LAYER), "--it2_n_clusters", str(CLUSTERS)),
        *("--it2_config", str(ssl_config), "--asr_config", str(asr_config)),
        *("--num_splits_ssl", "2"),  # the split iterator, as the recipe's 32 parts
        *("--decode_modes", "greedy", "--test_sets", "test_clean", "--quality_sets", "dev_clean"),
        # The disk plan takes Libri-Light's and LibriSpeech's published sizes (3.5 TB for the
        # cut unlab_60k) until stage 1 has made the data directories: here the corpus is tiny.
        *("--disk_check", "false"),
    ]
    start = time.monotonic()
    result = run_large(env, *args)
    assert result.returncode == 0, result.stderr[-5000:]
    print(f"run_large.sh: {time.monotonic() - start:.0f} s")
    return dirs, result, checkpoint, quantizer


@needs_sample
def test_labels_of_the_unlab_set_come_from_block_2_of_the_label_model(run):
    """Stage 5 labels every utterance of unlab_60k (and dev_clean) with the given quantizer on the
    label model's block: one label per 50 Hz frame, the labels the test computes itself; no
    iteration 1 and no features written."""
    dirs, result, checkpoint, quantizer = run
    dump, exp = dirs["dump"], dirs["exp"]
    extractor, kmeans = load_label_model(checkpoint), load_kmeans(quantizer)
    for dset in ("unlab_60k", "dev_clean"):
        labels = read_key_file(dump / "labels" / TAG / dset / "text")
        lengths = read_key_file(dump / "raw" / dset / "utt2num_samples")
        assert set(labels) == set(lengths) and len(labels) >= 10
        for utt, ids in labels.items():
            assert len(ids.split()) == num_frames(int(lengths[utt])), utt
        utt, wav = next(iter(read_key_file(dump / "raw" / dset / "wav.scp").items()))
        wave = torch.from_numpy(sf.read(wav, dtype="float32")[0])
        expected = kmeans.predict(extractor.extract([wave], layer=LAYER)[0].numpy())
        assert labels[utt].split() == [str(c) for c in expected]
    sources = read_key_file(dirs["data"] / "unlab_60k" / "utt2source")
    assert {source.split("/")[0] for source in sources.values()} == {"small", "medium", "large"}
    tokens = (dump / "labels" / TAG / "tokens.txt").read_text().split()
    assert tokens == [str(c) for c in range(CLUSTERS)] + ["<unk>"]
    assert "Stages 3-4: skipped: no iteration 1 with --label_model" in result.stderr
    assert not (dump / "mfcc").exists() and not (exp / "kmeans").exists()
    assert not list(exp.glob("ssl_it1_*")) and not list(dump.glob("feats_*"))


@needs_sample
def test_the_pretrained_model_is_large_shaped_and_trained_on_split_data(run):
    dirs, result, _, _ = run
    ssl = dirs["exp"] / f"ssl_{TAG}_{RUN}"
    assert (ssl / "valid.loss.best.pth").is_file()
    config = yaml.safe_load((ssl / "config.yaml").read_text())
    assert config["encoder_conf"]["normalize_before"] is True
    assert config["frontend_conf"]["norm_mode"] == "layer_norm"
    assert config["loss"][0]["conf"]["layers"] == [LAYER, 3]
    assert config["loss"][0]["conf"]["layer_norm_inputs"] is True
    assert config["multiple_iterator"] is True
    split = dirs["dump"] / "labels" / TAG / "unlab_60k" / "split2"
    assert [(split / "text" / f"split.{i}").is_file() for i in range(3)] == [True, True, False]
    # Stage 7 scores the iteration-2 model only, and says why it cannot here
    assert "Stage 7: cluster quality skipped" in result.stderr


@needs_sample
def test_fine_tuned_decoded_scored_and_packed(run):
    dirs, result, _, _ = run
    exp = dirs["exp"]
    asr = exp / ASR_EXP
    assert (asr / "valid.cer_ctc.best.pth").is_file()
    config = yaml.safe_load((asr / "config.yaml").read_text())
    assert config["frontend_conf"]["frontend_conf"]["path_or_url"] == str(
        exp / f"ssl_{TAG}_{RUN}" / "valid.loss.best.pth"
    )
    train = read_key_file(dirs["dump"] / "raw" / "train_960" / "text")
    assert {utt.split("-")[0] for utt in train} == {"1988", "2412", "3752"}
    results = (exp / "RESULTS.md").read_text()
    hyps = read_key_file(asr / "decode_greedy" / "test_clean" / "text")
    assert set(hyps) == set(read_key_file(dirs["dump"] / "raw" / "test_clean" / "wav.scp"))
    assert "|decode_greedy/test_clean|" in results
    assert (asr / "packed" / f"{ASR_EXP}.zip").stat().st_size > 0
    assert f"{RUN}\tils\t0\t{TAG}\t" in (exp / "runs.tsv").read_text()
    assert "Stage 12: skipped: no --hf_repo given" in result.stderr


def test_a_missing_hubert_file_is_named_with_its_url(tmp_path):
    env = {**os.environ, "HUBERT_BASE": str(tmp_path / "hubert_base_ls960.pt")}
    result = run_large(env, "--stage", "1", "--stop_stage", "1")
    assert result.returncode != 0
    assert (
        f"HUBERT_BASE in db.sh is {tmp_path}/hubert_base_ls960.pt: no such file. Download "
        "https://dl.fbaipublicfiles.com/hubert/hubert_base_ls960.pt there" in result.stderr
    )

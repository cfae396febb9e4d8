"""The disk plan ils.sh logs before stage 1 (``espnet_ils.recipe.disk_plan``): bytes per stage as its
docstring states them, a full disk stops the entry point and ils.sh naming the folders and both
figures, the BASE run's stage-5 features at their expected size, the known sizes in step with
local/data.sh."""

import logging
import re
import subprocess
from collections import namedtuple
from pathlib import Path

import pytest
import yaml

from espnet_ils.analysis.probes import ProbeLayout
from espnet_ils.bin import disk_plan as disk_plan_bin
from espnet_ils.recipe.disk_plan import (
    LETTERS,
    KnownSizes,
    ModelSizes,
    RunOptions,
    human_bytes,
    kept_snapshots,
    plan_rows,
)

RECIPE = Path(__file__).resolve().parents[1] / "egs2/librispeech_ils/ssl1"
CONF = RECIPE / "conf/tuning"
KNOWN = KnownSizes.from_yaml(RECIPE / "local/corpus_sizes.yaml")
SECONDS = {"train": 60, "dev": 10, "test": 10}  # of the tiny data directories
HOUR = 3600  # seconds


def write_sets(dumpdir: Path) -> None:
    """dump/raw/{train,dev,test}/utt2num_samples: 20 x 3 s, 5 x 2 s, 4 x 2.5 s (16 kHz)."""
    for name, count, samples in (("train", 20, 48000), ("dev", 5, 32000), ("test", 4, 40000)):
        folder = dumpdir / "raw" / name
        folder.mkdir(parents=True)
        lines = [f"{name}-{i:02d} {samples}" for i in range(count)]
        (folder / "utt2num_samples").write_text("\n".join(lines) + "\n")


def mini_options(tmp_path: Path, **overrides) -> RunOptions:
    """The mini recipe's options (two runs: ILS and the baseline), folders under ``tmp_path``."""
    exp = tmp_path / "exp"
    values = dict(
        stage=1,
        stop_stage=12,
        corpus="mini",
        mini_hours=1.0,
        known=KNOWN,
        corpus_roots={"LIBRISPEECH": tmp_path / "ls", "LIBRISPEECH_LM": tmp_path / "lm"},
        audio_dir=tmp_path / "dump" / "librilight",
        datadir=tmp_path / "data",
        dumpdir=tmp_path / "dump",
        expdir=exp,
        sets=["dev", "test", "train", "train_ft"],
        train_set="train",
        valid_set="dev",
        finetune_set="train_ft",
        test_sets=["test"],
        nj=2,
        inference_nj=2,
        it1_config=CONF / "train_ssl_hubert_mini_it1.yaml",
        it1_tag="it1_mfcc_km100",
        it1_exp=exp / "ssl_it1_mfcc_km100_hubert",
        it2_config=CONF / "train_ssl_ils_mini.yaml",
        it2_tag="it2_L2_km100",
        ssl_exps=[exp / "ssl_it2_L2_km100_ils_seed0", exp / "ssl_it2_L2_km100_hubert_seed0"],
        kmeans_portion=0.5,
        kmeans_max_hours=0.005,  # 18 s: less than half of the 60 s of train
        kmeans_feats_storage="two_byte",
        asr_config=CONF / "train_asr_ctc_mini.yaml",
        asr_exps=[exp / "asr_ils_seed0", exp / "asr_hubert_seed0"],
        token_list=tmp_path / "dump" / "token_list" / "char" / "tokens.txt",
        decode_modes=["greedy", "ngram"],
        probe_tasks=["pr"],
        probe_configs={"pr": CONF / "train_probe_pr_mini.yaml"},
    )
    values.update(overrides)
    return RunOptions(**values)


def state_bytes(model) -> int:
    return sum(t.numel() * t.element_size() for t in model.state_dict().values())


def trainable_bytes(model) -> int:
    return sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)


def trainer_bytes(config: Path, model: int, trainable: int) -> int:
    """ESPnet's trainer files as the docstring states them, from the config's own values."""
    conf = yaml.safe_load(config.read_text())
    keep = conf["keep_nbest_models"]
    keep = [keep] if isinstance(keep, int) else keep
    criteria = len(conf["best_model_criterion"])
    snapshots = min(conf["max_epoch"], max(keep) * criteria + 1)
    snapshots += criteria * sum(1 for n in keep if 1 < n <= conf["max_epoch"])
    return (1 + snapshots) * model + 2 * trainable


def test_tiny_run_plans_the_bytes_its_docstring_states_per_stage(tmp_path):
    from espnet_ils.bin.count_params import build_from_config

    write_sets(tmp_path / "dump")
    labels = tmp_path / "dump" / "labels" / "it2_L2_km100" / "dev"
    labels.mkdir(parents=True)
    (labels / "text").write_text("dev-00 1 22 333\n")  # 9 bytes for 3 labels
    (tmp_path / "dump" / "mfcc" / "train").mkdir(parents=True)
    (tmp_path / "dump" / "mfcc" / "train" / "feats.1.ark").write_bytes(b"\0" * 1000)
    opts = mini_options(tmp_path, hub_folders=True, hub_transformers=True)  # with --hf_repo
    rows, sizes = plan_rows(opts)
    by_stage = {}
    for row in rows:
        by_stage.setdefault(row.stage, []).append(row)

    assert sizes["train"].hours == pytest.approx(60 / HOUR) and sizes["train"].utterances == 20
    ssl_seconds = SECONDS["train"] + SECONDS["dev"]
    mfcc, it1_labels = by_stage[3]
    assert mfcc.bytes == pytest.approx(ssl_seconds * 100 * 39 * 4, abs=1)
    assert mfcc.there == 1000 and mfcc.to_write == mfcc.bytes - 1000  # what a rerun finds
    assert it1_labels.bytes == pytest.approx(2 * ssl_seconds * 50 * 4.0, abs=1)  # 4 B default

    it1_model = build_from_config(str(opts.it1_config))
    it1, it1_trainable = state_bytes(it1_model), trainable_bytes(it1_model)
    assert [r.bytes for r in by_stage[4]] == [trainer_bytes(opts.it1_config, it1, it1_trainable)]

    features, it2_labels = by_stage[5]
    assert features.bytes == pytest.approx(
        0.005 * HOUR * 50 * 256 * 2, abs=1
    )  # two bytes per value, capped
    assert it2_labels.bytes == pytest.approx(2 * ssl_seconds * 50 * 3.0, abs=1)  # measured: 3 B

    it2_model = build_from_config(str(opts.it2_config))
    it2, it2_trainable = state_bytes(it2_model), trainable_bytes(it2_model)
    assert [r.bytes for r in by_stage[6]] == [
        trainer_bytes(opts.it2_config, it2, it2_trainable)
    ] * 2

    heads = sum(t.numel() * t.element_size() for t in it2_model.losses.state_dict().values())
    phones_logprobs = 2 * SECONDS["test"] * 50 * 72 * 4  # two runs, 72 phones
    probe = trainer_bytes(CONF / "train_probe_pr_mini.yaml", it2 - heads, 0)
    assert [r.bytes for r in by_stage[7]] == [pytest.approx(2 * probe + phones_logprobs, abs=2)]

    asr = it2 - heads + (256 + 1) * LETTERS * 4  # the CTC layer over 31 letters
    assert [r.bytes for r in by_stage[8]] == [trainer_bytes(opts.asr_config, asr, asr)] * 2
    decoded = (SECONDS["test"] + SECONDS["dev"]) * 50 * LETTERS * 4  # greedy: test; ngram: + dev
    assert [r.bytes for r in by_stage[9]] == [pytest.approx(decoded, abs=1)] * 2
    assert [r.bytes for r in by_stage[11]] == [asr + it2] * 2
    hub_folders = [(exp / "hub", asr + it2) for exp in opts.asr_exps]
    exports = [(exp / "hub_transformers", asr) for exp in opts.asr_exps]  # the model in float32
    assert [(r.folder, r.bytes) for r in by_stage[12]] == hub_folders + exports
    without_export = plan_rows(mini_options(tmp_path, stage=12, hub_folders=True))[0]
    assert [(r.folder, r.bytes) for r in without_export] == hub_folders  # --hf_transformers false
    assert not plan_rows(mini_options(tmp_path, stage=12))[0]  # without --hf_repo: nothing
    assert {r.folder for r in by_stage[9]} == {e / "ctc_logprobs" for e in opts.asr_exps}


class NoModels(ModelSizes):
    """Fails the test on any model build."""

    def ssl(self, *args, **kwargs):
        raise AssertionError("a model was built")

    finetuned = probe = lm = ssl


def test_finished_trainings_count_what_they_hold_without_building_models(tmp_path):
    write_sets(tmp_path / "dump")
    opts = mini_options(tmp_path, stage=4, decode_modes=["greedy"], hub_folders=True)
    trainings = [opts.it1_exp, *opts.ssl_exps, *opts.asr_exps]
    layout = ProbeLayout.of_recipe(opts.dumpdir, opts.expdir, opts.it2_tag)
    trainings += [layout.probe_exp("pr", run) for run in ("ils_seed0", "hubert_seed0")]
    for exp in trainings:
        exp.mkdir(parents=True)
        (exp / ".done").write_text("{}")
        (exp / "checkpoint.pth").write_bytes(b"\0" * 1000)
    for exp in opts.asr_exps:
        (exp / "packed").mkdir()
        (exp / "packed" / "x.zip").write_bytes(b"\0" * 500)
        (exp / "packed" / "x.zip.done").write_text("{}")
        (exp / "hub").mkdir()
        (exp / "hub" / "meta.yaml").write_bytes(b"\0" * 300)
        (exp / "hub.done").write_text("{}")
    rows, _ = plan_rows(opts, NoModels())
    trained = [r for r in rows if r.stage in (4, 6, 8, 11, 12)]
    assert len(trained) == 9 and all(r.to_write == 0 and "(done)" in r.what for r in trained)
    assert [r.bytes for r in rows if r.stage == 4] == [1000 + 2]  # the checkpoint and .done
    assert [r.bytes for r in rows if r.stage == 12] == [300] * 2  # the Hub folders as they are
    (probes,) = [r for r in rows if r.stage == 7]
    assert "(trained)" in probes.what
    assert probes.to_write == 2 * SECONDS["test"] * 50 * 72 * 4  # the log-probs still to write


def test_mini_corpus_before_stage_1_is_mini_hours_of_flac(tmp_path):
    rows, sizes = plan_rows(mini_options(tmp_path, stop_stage=2, mini_hours=2.0))
    data, raw = rows
    assert data.folder == tmp_path / "data" and data.hours == 2.0
    utterances = sum(sizes[s].utterances for s in ("train", "dev", "test", "train_ft"))
    assert sizes["train"].hours == pytest.approx(1.6) and sizes["train"].source.endswith(
        "--mini_hours"
    )
    assert data.bytes == pytest.approx(2.0 * 68e6 + utterances * 400, abs=1)
    assert raw.bytes == utterances * 400


def base_options(tmp_path: Path, **overrides) -> RunOptions:
    """run.sh's LibriSpeech BASE options before stage 1: no data directories."""
    exp = tmp_path / "exp"
    values = dict(
        corpus="librispeech",
        corpus_roots={
            "LIBRISPEECH": tmp_path / "LibriSpeech",
            "LIBRILIGHT": tmp_path / "librilight",
            "LIBRISPEECH_LM": tmp_path / "librispeech_lm",
        },
        sets=[
            "dev_clean",
            "dev_other",
            "finetune_10h",
            "test_clean",
            "test_other",
            "train_960",
            "train_clean_100",
        ],
        train_set="train_960",
        valid_set="dev_clean",
        finetune_set="finetune_10h",
        test_sets=["test_clean", "test_other"],
        nj=32,
        inference_nj=32,
        it1_config=CONF / "train_ssl_hubert_base_it1.yaml",
        it2_config=CONF / "train_ssl_ils_base_it2.yaml",
        it2_tag="it2_L6_km500",
        ssl_exps=[exp / "ssl_it2_L6_km500_ils_seed0"],
        kmeans_portion=0.1,
        kmeans_max_hours=100.0,
        kmeans_feats_storage="float32",
        asr_config=CONF / "train_asr_ctc_base_10h.yaml",
        asr_exps=[exp / "asr_it2_L6_km500_ils_seed0_train_asr_ctc_base_10h"],
        decode_modes=["greedy", "ngram", "lm_rescore"],
        probe_tasks=[],
    )
    values.update(overrides)
    return mini_options(tmp_path, **values)


def test_base_run_plans_53_gb_of_stage_5_features_before_any_data(tmp_path):
    rows, sizes = plan_rows(base_options(tmp_path, stage=1, stop_stage=5))
    assert sizes["train_960"].hours == pytest.approx(960.9)
    (features,) = [r for r in rows if r.stage == 5 and "feats_" in str(r.folder)]
    expected = 0.1 * 960.9 * 768 * 50 * HOUR * 4  # 53.1 GB: the portion's, not 531 GB
    assert features.bytes == pytest.approx(expected, rel=0.03)
    assert human_bytes(features.bytes) == "53.1 GB"
    (mfcc,) = [r for r in rows if r.stage == 3 and r.folder.name == "mfcc"]
    assert mfcc.bytes == pytest.approx((960.9 + 5.4) * 3600 * 100 * 39 * 4, rel=0.01)
    download = [r for r in rows if r.stage == 1 and r.root == "LIBRISPEECH (db.sh)"]
    assert len(download) == 1 and "train-other-500" in download[0].what
    assert download[0].bytes == pytest.approx(
        sum(s.bytes for s in KNOWN.subsets.values() if s.root == "LIBRISPEECH") + 32.2e9
    )  # every subset run.sh uses, and the largest archive while it unpacks
    assert not (tmp_path / "dump").exists() and not (tmp_path / "exp").exists()


def test_targets_from_another_model_plan_no_iteration_1_and_with_a_quantizer_no_features(
    tmp_path,
):
    """run_large.sh: --label_model skips stages 3-4; --label_kmeans leaves stage 5 its labels."""
    external = dict(label_model=tmp_path / "hubert_base_ls960.pt", stage=1, stop_stage=5)
    rows, _ = plan_rows(base_options(tmp_path, **external))
    assert {r.stage for r in rows} == {1, 2, 5}
    (features,) = [r for r in rows if r.stage == 5 and "feats_" in str(r.folder)]
    assert features.bytes == pytest.approx(0.1 * 960.9 * 768 * 50 * HOUR * 4, rel=0.03)
    quantizer = tmp_path / "hubert_base_ls960_L9_km500.bin"
    rows, _ = plan_rows(base_options(tmp_path, label_kmeans=quantizer, **external))
    assert [r for r in rows if r.stage == 5 and "feats_" in str(r.folder)] == []
    assert [r for r in rows if r.stage == 5]  # the labels


def sparse_file(path: Path, size: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as file:
        file.truncate(size)  # holes: the size without the bytes


def test_libri_light_plans_its_download_and_counts_the_cut_shards_done(tmp_path):
    sparse_file(tmp_path / "librilight" / "small" / "a.flac", 17_500_000_000)  # half of small
    (tmp_path / "dump" / "librilight" / "small").mkdir(parents=True)
    (tmp_path / "dump" / "librilight" / "small" / ".done.1").write_text("{}")  # 1 of 2 shards cut
    sparse_file(tmp_path / "LibriSpeech" / "dev-clean" / "a.flac", 353_000_000 // 4)
    opts = base_options(tmp_path, stage=1, stop_stage=1, sets=["unlab_60k", "dev_clean"], nj=2)
    rows, sizes = plan_rows(opts)
    (download,) = [r for r in rows if r.root == "LIBRILIGHT (db.sh)"]
    assert "small" not in download.what and download.hours == 5193.0 + 51934.0
    assert download.bytes == pytest.approx(321e9 + 3.05e12 + 3.05e12)  # + large.tar unpacking
    assert not [r for r in rows if r.root == "LIBRISPEECH (db.sh)"]  # dev-clean is there
    (cut,) = [r for r in rows if r.folder == tmp_path / "dump" / "librilight"]
    hours = 577 / 2 + 5193 + 51934  # small: the half found in the root
    assert cut.hours == pytest.approx(hours) and cut.bytes == pytest.approx(hours * 61e6, rel=1e-6)
    assert cut.there == pytest.approx(577 / 2 * 61e6 / 2, rel=1e-6)  # half of it cut
    assert cut.files == pytest.approx(hours * 3600 / 15, abs=1)
    assert sizes["unlab_60k"] == (57704.0, 13849000, "known size")  # to be downloaded
    assert sizes["dev_clean"].hours == pytest.approx(5.4 / 4)  # a quarter of it found
    assert sizes["dev_clean"].utterances == round(2703 / 4)


def entry_point_args(tmp_path: Path) -> list:
    return [
        *("--stage", "2", "--stop_stage", "3", "--corpus", "mini"),
        *("--known_sizes", str(RECIPE / "local/corpus_sizes.yaml")),
        *("--audio_dir", str(tmp_path / "dump/librilight"), "--datadir", str(tmp_path / "data")),
        *("--dumpdir", str(tmp_path / "dump"), "--expdir", str(tmp_path / "exp")),
        *("--sets", "dev test train", "--train_set", "train", "--valid_set", "dev"),
        *("--finetune_set", "train", "--test_sets", "test"),
        *("--it1_config", str(CONF / "train_ssl_hubert_mini_it1.yaml"), "--it1_tag", "it1"),
        *(
            "--it1_exp",
            str(tmp_path / "exp/it1"),
            "--it2_config",
            str(CONF / "train_ssl_ils_mini.yaml"),
        ),
        *("--it2_tag", "it2", "--asr_config", str(CONF / "train_asr_ctc_mini.yaml")),
        *("--token_list", str(tmp_path / "tokens.txt"), "--pretrain_args=--max_epoch 1"),
    ]


def test_entry_point_stops_on_a_full_disk_naming_the_folder_and_both_figures(
    tmp_path, monkeypatch, caplog
):
    write_sets(tmp_path / "dump")
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr("shutil.disk_usage", lambda path: usage(10**6, 10**6 - 1000, 1000))
    with caplog.at_level(logging.INFO), pytest.raises(SystemExit) as stop:
        disk_plan_bin.main(entry_point_args(tmp_path))
    assert stop.value.code == 1
    mfcc = (SECONDS["train"] + SECONDS["dev"]) * 100 * 39 * 4
    raw = (20 + 5 + 4) * 400
    labels = 2 * (SECONDS["train"] + SECONDS["dev"]) * 50 * 4
    there = sum(f.stat().st_size for f in (tmp_path / "dump" / "raw").rglob("*") if f.is_file())
    needed = mfcc + raw - there + labels  # the utt2num_samples files are there already
    assert f"would write {human_bytes(needed)} ({needed:,} B, an estimate)" in caplog.text
    assert "which has 1.0 kB (1,000 B) free" in caplog.text
    folder = re.escape(f"{tmp_path}/dump/ (--dumpdir) {human_bytes(needed)}")
    assert re.search(folder, caplog.text)
    assert "DOES NOT FIT" in caplog.text and "--disk_check false" in caplog.text

    monkeypatch.setattr("shutil.disk_usage", lambda path: usage(10**12, 0, 10**12))
    disk_plan_bin.main(entry_point_args(tmp_path))  # fits: returns
    assert not (tmp_path / "dump" / "mfcc").exists()  # the plan writes nothing


@pytest.mark.parametrize(
    "max_epoch, keep, criteria, expected",
    [
        (400, 5, 1, 7),  # BASE pretraining: the 5 best, the latest, their average
        (4, 1, 1, 2),  # the mini configs: the best and the latest
        (25, 5, 2, 13),  # BASE fine-tuning: 5 best of CER and of loss, the latest, 2 averages
        (5, 10, 1, 5),  # the LibriSpeech LM: every epoch, no average of 10 from 5
        (1, [1, 5], 1, 1),
    ],
)
def test_trainer_snapshots_follow_espnets_keep_rules(max_epoch, keep, criteria, expected):
    assert kept_snapshots(max_epoch, keep, criteria) == expected


def test_letters_match_the_fine_tuning_token_list_of_config_check():
    from espnet_ils.recipe.config_check import LETTER_TOKENS

    assert LETTERS == len(LETTER_TOKENS)


def test_known_sets_are_the_sets_of_data_sh_with_its_subsets():
    data_sh = (RECIPE / "local/data.sh").read_text()
    function = re.search(r"^subsets_of\(\) \{.*?^\}", data_sh, re.MULTILINE | re.DOTALL).group(0)
    names = " ".join(KNOWN.sets)
    script = f'{function}\nfor s in {names}; do echo "$s $(subsets_of "$s")"; done'
    result = subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=True)
    data_sh_subsets = {
        line.split()[0]: tuple(line.split()[1:]) for line in result.stdout.splitlines()
    }
    assert data_sh_subsets == {name: known.subsets for name, known in KNOWN.sets.items()}
    listed = re.search(r"the sets are (.*?)\"", data_sh).group(1)
    assert set(re.findall(r"\b(?:train|dev|test|finetune|unlab)_\w+", listed)) == set(KNOWN.sets)


def test_known_sizes_name_the_key_that_is_not_a_number(tmp_path):
    text = (RECIPE / "local/corpus_sizes.yaml").read_text()
    assert yaml.safe_load(text)["librispeech"]["subsets"]["train-clean-100"]["bytes"] == 6.76e9
    path = tmp_path / "sizes.yaml"
    path.write_text(text.replace("bytes: 6.76e+9", "bytes: 6.76e9"))  # YAML 1.1: a string
    with pytest.raises(ValueError, match=r"librispeech.subsets.train-clean-100.bytes is '6.76e9'"):
        KnownSizes.from_yaml(path)


@pytest.mark.slow
def test_ils_sh_stops_before_stage_1_when_the_disk_cannot_hold_the_run(tmp_path):
    """The plan runs after the option checks and before stage 1: a mini corpus of 10^9 hours (68 PB
    of FLAC) stops the run naming --datadir's folder, and nothing is written."""
    dirs = [f"--{name}dir" for name in ("data", "dump", "exp")]
    args = [arg for d in dirs for arg in (d, str(tmp_path / d[2:-3]))]
    result = subprocess.run(
        [
            "./ils.sh",
            *("--corpus", "mini", "--mini_hours", "1e9", "--stage", "1", "--stop_stage", "1"),
            *("--it1_config", "conf/tuning/train_ssl_hubert_mini_it1.yaml"),
            *("--it2_config", "conf/tuning/train_ssl_ils_mini.yaml", "--it2_n_clusters", "100"),
            *("--asr_config", "conf/tuning/train_asr_ctc_mini.yaml", *args),
        ],
        cwd=RECIPE,
        capture_output=True,
        text=True,
    )
    assert result.returncode != 0
    folder = re.escape(f"{tmp_path}/data/ (--datadir) ") + r"6\d\.\d PB"
    assert re.search(folder, result.stderr), result.stderr[-3000:]
    assert "free" in result.stderr and "Disk plan of stages 1-1" in result.stderr
    assert not any(tmp_path.iterdir())

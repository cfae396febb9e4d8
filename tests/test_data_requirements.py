"""What the later stages need of the formatted sets (``espnet_ils.data_requirements``): each need
found as the stage would find it, only for the stages and options of the run, and the recipe
stopping right after stage 2 on a set that cannot serve stage 7."""

import subprocess
from pathlib import Path
from typing import Dict, Optional

import pytest
from helpers.corpus import write_corpus

from espnet_ils.bin.check_data import main as check_data_main
from espnet_ils.data.splits import split_keyed_files
from espnet_ils.recipe.data_requirements import DataOptions, check_data
from espnet_ils.targets.selection import choose_portion

RECIPE = Path(__file__).resolve().parents[1] / "egs2/librispeech_ils/ssl1"
SECOND = 16000  # samples


def write_set(
    raw: Path,
    name: str,
    samples: Dict[str, int],
    speakers: Optional[Dict[str, str]] = None,
    text: bool = True,
    alignment: Optional[Dict[str, str]] = None,
) -> Path:
    """A formatted set as stage 2 leaves it: the keyed files of ``samples`` and its ``.done``."""
    set_dir = raw / name
    set_dir.mkdir(parents=True)
    files = {
        "wav.scp": {utt: f"{utt}.flac" for utt in samples},
        "utt2num_samples": samples,
        "utt2spk": speakers,
        "text": {utt: "A B" for utt in samples} if text else None,
        "phone_alignment": alignment,
    }
    for file_name, entries in files.items():
        if entries is not None:
            (set_dir / file_name).write_text("".join(f"{u} {v}\n" for u, v in entries.items()))
    (set_dir / ".done").write_text("{}\n")
    return set_dir


def options(**changes) -> DataOptions:
    """Sets train, dev, ft, test; no k-means, probes or LMs unless ``changes`` ask for them."""
    defaults = dict(
        train_set="train",
        valid_set="dev",
        finetune_set="ft",
        test_sets=["test"],
        transcribed_set="train",
        label_model=Path("model.pt"),
        label_kmeans=Path("km.bin"),
        it2_encoder="e_branchformer",
    )
    return DataOptions(**{**defaults, **changes})


@pytest.fixture
def raw(tmp_path) -> Path:
    """Four sets of 6 utterances of 3 s, 2 per speaker."""
    raw = tmp_path / "raw"
    for name in ("train", "dev", "ft", "test"):
        utts = [f"{name}-{i}" for i in range(6)]
        write_set(
            raw,
            name,
            {u: 3 * SECOND for u in utts},
            {u: f"spk{i // 2}" for i, u in enumerate(utts)},
        )
    return raw


def test_a_sid_probe_set_with_two_utterances_per_speaker_is_named_with_its_counts(raw):
    (raw / "ft" / "utt2spk").write_text("ft-0 s1\nft-1 s1\nft-2 s1\nft-3 s2\nft-4 s2\nft-5 s3\n")
    problems = check_data(options(probe_tasks=["sid"], probe_sid_set="ft"), raw, 3, 12)
    assert problems == [
        f"{raw / 'ft'}: speaker s3 has 1 utterance(s) (and 1 more of its 3 speakers have fewer "
        "than 3); --probe_tasks sid (--probe_sid_set ft) needs at least 3 utterances per speaker "
        "(one each for the probe's train, valid, test)"
    ]
    (raw / "ft" / "utt2spk").unlink()
    assert check_data(options(probe_tasks=["sid"], probe_sid_set="ft"), raw, 3, 12) == [
        f"{raw / 'ft'}: no utt2spk; --probe_tasks sid (--probe_sid_set ft) needs at least 3 "
        "utterances per speaker (one each for the probe's train, valid, test)"
    ]


@pytest.mark.parametrize(
    "changes, first, last",
    [
        ({"probe_tasks": ["pr"], "probe_sid_set": "ft"}, 3, 12),  # no sid probe
        ({"probe_tasks": ["sid"], "probe_sid_set": "ft"}, 3, 6),  # stage 7 not run
        ({"probe_tasks": ["sid"], "probe_sid_set": "ft"}, 8, 12),  # stage 7 run before
    ],
)
def test_only_the_stages_and_options_of_the_run_are_checked(raw, changes, first, last):
    assert check_data(options(**changes), raw, first, last) == []


@pytest.mark.parametrize(
    "changes, stage, missing, needed_by",
    [
        ({}, 8, "ft", "CTC fine-tuning (stage 8, --finetune_set)"),
        ({}, 8, "dev", "CTC fine-tuning's validation (stage 8)"),
        ({}, 10, "test", "the scoring (stage 10)"),
        ({"decode_modes": ["ngram"]}, 9, "dev", "the LM weights' tuning (stage 9)"),
        (
            {"decode_modes": ["lm_rescore"]},
            8,
            "train",
            "the LMs of --decode_modes, trained on it by default",
        ),
    ],
)
def test_a_set_without_transcripts_is_named_by_the_stage_that_reads_them(
    raw, changes, stage, missing, needed_by
):
    (raw / missing / "text").unlink()
    problems = check_data(options(**changes), raw, stage, stage)
    assert len(problems) == 1 and problems[0].startswith(f"{raw / missing}: no text; {needed_by}")
    assert check_data(options(**changes), raw, stage + 1, 12) == []


@pytest.mark.parametrize(
    "replacement", [{"ngram_arpa": Path("4-gram.arpa.gz")}, {"ngram_text": Path("lm.txt")}]
)
def test_the_word_ngram_reads_the_train_transcripts_only_by_default(raw, replacement):
    (raw / "train" / "text").unlink()
    assert check_data(options(decode_modes=["ngram"]), raw, 8, 8)
    assert check_data(options(decode_modes=["ngram"], **replacement), raw, 8, 8) == []


@pytest.mark.parametrize("num_splits", [2, 3, 4, 6, 9])
def test_an_empty_split_part_is_found_exactly_when_split_scps_refuses_the_set(raw, num_splits):
    data = raw / "train"
    try:
        split_keyed_files([data / "wav.scp", data / "text"], num_splits, raw.parent / "split")
        refused = False
    except ValueError as error:
        assert "gets no utterance" in str(error)
        refused = True
    problems = check_data(options(num_splits_ssl=num_splits), raw, 4, 6)
    assert bool(problems) == refused
    if refused:
        assert problems[0].startswith(f"{data}: part ")
        assert (
            f"ESPnet's split iterator (--num_splits_ssl {num_splits}) needs an utterance in"
            in problems[0]
        )
    assert check_data(options(num_splits_ssl=num_splits), raw, 7, 12) == []  # stage 6 not run


def test_kmeans_needs_a_frame_per_cluster_in_the_portion_the_stage_chooses(raw):
    lengths = {f"train-{i}": (i + 1) * SECOND for i in range(6)}
    (raw / "train" / "utt2num_samples").write_text(
        "".join(f"{u} {n}\n" for u, n in lengths.items())
    )
    portion = dict(kmeans_portion=0.5, kmeans_max_hours=0.0, seed=3, label_kmeans=None)
    chosen = choose_portion(lengths, 0.5, 0.0, 3)
    frames = sum((lengths[u] - 400) // 320 + 1 for u in chosen)  # 50 Hz
    assert check_data(options(it2_n_clusters=frames, **portion), raw, 5, 5) == []
    problems = check_data(options(it2_n_clusters=frames + 1, **portion), raw, 5, 5)
    assert problems == [
        f"{raw / 'train'}: the 3 utterance(s) k-means is fitted on hold {frames} frames; "
        f"stage 5's k-means (--it2_n_clusters {frames + 1}, --kmeans_portion 0.5, "
        f"--kmeans_max_hours 0.0) needs at least {frames + 1} frames, one per cluster"
    ]
    # A given k-means model (--label_kmeans) fits none.
    assert (
        check_data(
            options(it2_n_clusters=frames + 1, **dict(portion, label_kmeans=Path("km"))), raw, 5, 5
        )
        == []
    )


def test_iteration_1_kmeans_counts_mfcc_frames_and_is_skipped_with_a_label_model(raw):
    mfcc_frames = 6 * ((3 * SECOND - 400) // 160 + 1)  # portion 1: every utterance, 100 Hz
    it1 = dict(label_model=None, kmeans_portion=1.0, it1_n_clusters=mfcc_frames + 1)
    problems = check_data(options(**it1), raw, 3, 3)
    assert len(problems) == 1 and f"hold {mfcc_frames} frames; stage 3's k-means" in problems[0]
    assert check_data(options(**dict(it1, label_model=Path("hubert.pt"))), raw, 3, 3) == []


def test_the_cluster_quality_is_checked_only_where_it_runs(raw, tmp_path):
    quality = dict(quality_sets=["dev"], quality_fit_hours=0.0, quality_n_clusters=10**6)
    assert (
        check_data(options(it2_encoder="ils_transformer", **quality), raw, 7, 7) == []
    )  # unaligned
    (raw / "dev" / "phone_alignment").write_text("dev-0 aa\n")
    problems = check_data(options(it2_encoder="ils_transformer", **quality), raw, 7, 7)
    assert len(problems) == 1 and "the cluster quality's k-means per block" in problems[0]
    assert check_data(options(**quality), raw, 7, 7) == []  # stage 7 skips other encoders
    assert check_data(options(it2_layer_auto=True, **quality), raw, 5, 5) == problems
    missing = tmp_path / "nowhere"  # stage 7 skips it, saying so
    assert (
        check_data(
            options(it2_encoder="ils_transformer", phone_alignments=missing, **quality), raw, 7, 7
        )
        == []
    )


def test_the_phone_probe_needs_a_phone_in_every_aligned_utterance(raw):
    (raw / "test" / "phone_alignment").write_text("test-0 sil aa aa sil\ntest-1 sil sil\n")
    pr = dict(probe_tasks=["pr"], probe_pr_train_set="train")
    assert check_data(options(**pr), raw, 7, 7) == [
        f"{raw / 'test'}: utterance test-1 is aligned to silence only; --probe_tasks pr needs "
        "a phone in every utterance's alignment (its transcript)"
    ]
    # Alignments imported in stage 7 (--phone_alignments) are checked by the import.
    assert check_data(options(phone_alignments=Path("mfa"), **pr), raw, 7, 7) == []


def test_a_set_not_formatted_yet_is_left_to_its_stage(raw):
    (raw / "ft" / "text").unlink()
    (raw / "ft" / ".done").unlink()
    assert check_data(options(), raw, 8, 8) == []


def test_the_entry_point_names_every_shortfall_and_fails(raw, caplog):
    for name in ("ft", "test"):
        (raw / name / "text").unlink()
    args = ["--raw_dir", str(raw), "--stage", "8", "--stop_stage", "10", "--train_set", "train"]
    args += ["--valid_set", "dev", "--finetune_set", "ft", "--test_sets", "test"]
    args += ["--transcribed_set", "train", "--it2_layer_auto", "false"]
    with pytest.raises(SystemExit) as stop:
        check_data_main(args)
    assert stop.value.code == 1
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert [e.split(";")[0] for e in errors] == [
        f"{raw / 'ft'}: no text",
        f"{raw / 'test'}: no text",
    ]
    (raw / "ft" / "text").write_text("ft-0 A\n")
    (raw / "test" / "text").write_text("test-0 A\n")
    check_data_main(args)  # met: returns


@pytest.mark.slow
def test_the_recipe_stops_after_stage_2_on_a_sid_set_of_two_utterances_per_speaker(tmp_path):
    """ils.sh on 8 generated utterances, 2 per speaker: stage 2 formats them, then the run stops
    naming the speaker before stage 3 starts; a run from stage 3 stops the same way."""
    write_corpus(tmp_path / "corpus")
    wav_scp = (tmp_path / "corpus" / "wav.scp").read_text().splitlines()
    for name in ("train", "dev", "test", "train_ft"):
        data = tmp_path / "data" / name
        data.mkdir(parents=True)
        (data / "wav.scp").write_text("".join(f"{line}\n" for line in wav_scp))
        (data / "utt2spk").write_text("".join(f"utt{i} spk{i // 2}\n" for i in range(8)))
        (data / "text").write_text("".join(f"utt{i} A B\n" for i in range(8)))
    dirs = [
        arg for name in ("data", "dump", "exp") for arg in (f"--{name}dir", str(tmp_path / name))
    ]
    args = [
        *("--corpus", "mini", "--train_set", "train", "--valid_set", "dev"),
        *("--finetune_set", "train_ft", "--test_sets", "test", "--probe_tasks", "sid"),
        *("--it1_config", "conf/tuning/train_ssl_hubert_mini_it1.yaml"),
        *("--it2_config", "conf/tuning/train_ssl_ils_mini.yaml", "--it2_layer", "2"),
        *("--asr_config", "conf/tuning/train_asr_ctc_mini.yaml"),
        *("--probe_sid_config", "conf/tuning/train_probe_sid_mini.yaml"),
        *("--nj", "1", "--ngpu", "0", "--min_wav_duration", "1", "--it2_n_clusters", "100"),
        *("--disk_check", "false"),  # the plan imports ESPnet's tasks: 12 s a run, beside the point
        *dirs,
    ]
    message = (
        f"{tmp_path / 'dump/raw/train_ft'}: speaker spk0 has 2 utterance(s) (and 3 more of its 4 "
        "speakers have fewer than 3); --probe_tasks sid (--probe_sid_set train_ft) needs at least "
        "3 utterances per speaker"
    )
    for first in ("2", "3"):
        result = subprocess.run(
            ["./ils.sh", *args, "--stage", first, "--stop_stage", "7"],
            cwd=RECIPE, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert result.returncode != 0 and message in result.stderr, result.stderr[-3000:]
        assert "Stage 3" not in result.stderr and not (tmp_path / "dump" / "mfcc").exists()
        assert (tmp_path / "dump" / "raw" / "train_ft" / ".done").is_file()

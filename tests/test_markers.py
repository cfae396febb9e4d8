"""Completion markers know what they stand for: a changed input recomputes, an unchanged one skips."""

import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers.audio import write_librispeech, write_wavs

from espnet_ils.bin.dump_labels import dump_labels
from espnet_ils.bin.dump_mfcc import dump_mfcc
from espnet_ils.bin.fit_kmeans import main as fit_kmeans_main
from espnet_ils.data.datadir import format_data_dir
from espnet_ils.data.kaldi_files import read_key_file
from espnet_ils.data.labels import to_encoder_rate
from espnet_ils.data.markers import (
    changes,
    file_checksum,
    listing_checksum,
    step_identity,
    up_to_date,
    write_marker,
)
from espnet_ils.data.shards import read_features
from espnet_ils.targets.kmeans import load_kmeans

RECIPE = Path(__file__).resolve().parents[1] / "egs2/librispeech_ils/ssl1"
SKIPPED = "skipped: done with the same options and inputs"


def fit(feats: Path, model: Path, seed: int) -> None:
    fit_kmeans_main(
        [
            *("--feats_dir", str(feats), "--n_clusters", "8", "--portion", "1.0"),
            *("--n_init", "1", "--seed", str(seed), "--model", str(model)),
        ]
    )


def test_identity_changes_name_the_option_and_the_input(tmp_path):
    (tmp_path / "a").write_text("one")
    old = step_identity({"seed": 0}, {"km_model": file_checksum(tmp_path / "a")})
    (tmp_path / "a").write_text("two")
    new = step_identity({"seed": 1}, {"km_model": file_checksum(tmp_path / "a")})
    assert changes(old, new) == ["option seed changed (0 -> 1)", "input km_model changed"]
    assert changes(old, old) == []


def test_stale_marker_is_removed_and_an_equal_one_skips(tmp_path, caplog):
    caplog.set_level(logging.INFO)
    marker = tmp_path / ".done"
    identity = step_identity({"n": 1}, {})
    assert not up_to_date(marker, identity, "step")
    assert "step: computing (no completion marker" in caplog.text
    write_marker(marker, identity)
    assert up_to_date(marker, identity, "step")
    assert f"step: {SKIPPED}" in caplog.text
    assert not up_to_date(marker, step_identity({"n": 2}, {}), "step")
    assert "step: recomputing: option n changed (1 -> 2)" in caplog.text
    assert not marker.exists()  # a half-done rerun never leaves a matching marker behind


def test_kmeans_refit_with_another_seed_recomputes_the_labels(tmp_path, caplog):
    caplog.set_level(logging.INFO)
    wav_scp = write_wavs(tmp_path, count=4)
    feats, model, labels_dir = tmp_path / "mfcc", tmp_path / "km" / "km.joblib", tmp_path / "labels"
    dump_mfcc(wav_scp, feats, 1, 1)
    fit(feats, model, seed=0)
    dump_labels(feats, 100, model, labels_dir, 1, 1)
    first = read_key_file(labels_dir / "labels.1")

    fit(feats, model, seed=1)  # same path, another model
    dump_labels(feats, 100, model, labels_dir, 1, 1)
    assert "recomputing: input km_model changed" in caplog.text
    refitted = load_kmeans(model)
    expected = {
        utt: " ".join(str(c) for c in to_encoder_rate(refitted.predict(f.astype("float32")), 100))
        for utt, f in read_features(feats / "feats.1.scp")
    }
    labels = read_key_file(labels_dir / "labels.1")
    assert labels == expected
    assert labels != first  # the seeds give different models here, so the test means something


def test_unchanged_inputs_skip_and_changed_audio_listing_recomputes(tmp_path, caplog):
    caplog.set_level(logging.INFO)
    wav_scp = write_wavs(tmp_path, count=4)
    feats, model, labels_dir = tmp_path / "mfcc", tmp_path / "km.joblib", tmp_path / "labels"
    dump_mfcc(wav_scp, feats, 1, 1)
    fit(feats, model, seed=0)
    dump_labels(feats, 100, model, labels_dir, 1, 1)
    stamps = {p: p.stat().st_mtime_ns for p in (feats / "feats.1.ark", labels_dir / "labels.1")}
    caplog.clear()
    dump_mfcc(wav_scp, feats, 1, 1)
    dump_labels(feats, 100, model, labels_dir, 1, 1)
    assert caplog.text.count(SKIPPED) == 2
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps

    # One utterance fewer: the listing changes, so the features and then the labels are redone.
    wav_scp.write_text("".join(wav_scp.read_text().splitlines(keepends=True)[:3]))
    caplog.clear()
    dump_mfcc(wav_scp, feats, 1, 1)
    dump_labels(feats, 100, model, labels_dir, 1, 1)
    assert "MFCC shard 1/1" in caplog.text and "recomputing: input wav_scp changed" in caplog.text
    assert "recomputing: input features changed" in caplog.text
    assert sorted(read_key_file(labels_dir / "labels.1")) == ["u0", "u1", "u2"]


def test_format_data_dir_redoes_a_changed_source(tmp_path, caplog):
    caplog.set_level(logging.INFO)
    src = tmp_path / "src"
    write_wavs(src, count=4)
    (src / "text").write_text("".join(f"u{i} A\n" for i in range(4)))
    assert format_data_dir(src, tmp_path / "dst", 0.0, 100.0) == 4
    assert format_data_dir(src, tmp_path / "dst", 0.0, 100.0) == 4
    assert SKIPPED in caplog.text
    (src / "text").write_text("".join(f"u{i} B\n" for i in range(4)))
    format_data_dir(src, tmp_path / "dst", 0.0, 100.0)
    assert "recomputing: input text changed" in caplog.text
    assert set(read_key_file(tmp_path / "dst" / "text").values()) == {"B"}


def prepare(source: Path, dst: Path) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [sys.executable, str(RECIPE / "local/prepare_librispeech.py"), "--src", str(source)]
        + ["--dst", str(dst)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    return result


def test_another_corpus_root_or_a_changed_file_rebuilds_the_data_directory(tmp_path):
    dst = tmp_path / "data" / "dev_clean"
    first = write_librispeech(tmp_path / "copy1", "HELLO")
    prepare(first, dst)
    assert SKIPPED in prepare(first, dst).stderr

    second = write_librispeech(tmp_path / "copy2", "WORLD")  # LIBRISPEECH points elsewhere
    result = prepare(second, dst)
    assert "recomputing: option sources changed" in result.stderr
    assert set(read_key_file(dst / "text").values()) == {"WORLD"}
    assert all(str(second) in path for path in read_key_file(dst / "wav.scp").values())

    trans = second / "1" / "2" / "1-2.trans.txt"  # same root, a transcript edited in place
    trans.write_text(trans.read_text().replace("WORLD", "AGAIN"))
    os.utime(trans, ns=(trans.stat().st_atime_ns, trans.stat().st_mtime_ns + 10**9))
    assert "recomputing: input listing of" in prepare(second, dst).stderr
    assert set(read_key_file(dst / "text").values()) == {"AGAIN"}


def test_listing_checksum_sees_paths_sizes_and_mtimes_only_of_matching_files(tmp_path):
    source = write_librispeech(tmp_path / "c", "HI")
    before = listing_checksum(source, ("*.flac", "*.trans.txt"))
    (source / "notes.md").write_text("not corpus data")
    assert listing_checksum(source, ("*.flac", "*.trans.txt")) == before
    shutil.copy(source / "1" / "2" / "1-2-0000.flac", source / "1" / "2" / "1-2-0002.flac")
    assert listing_checksum(source, ("*.flac", "*.trans.txt")) != before


def run_marker(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "espnet_ils.bin.marker", *args], capture_output=True, text=True
    )


def test_marker_command_line_checks_writes_and_names_what_changed(tmp_path):
    data = tmp_path / "model.pth"
    data.write_bytes(b"weights 1")
    marker = tmp_path / "step.done"
    check = ["check", str(marker), "--what", "Stage 7", "--option", "seed=0"]
    check += ["--input", f"model={data}", "--input", f"model={tmp_path / 'model.pth'}.yaml"]
    (tmp_path / "model.pth.yaml").write_text("config")
    assert run_marker(*check).returncode == 1
    assert not marker.exists()
    assert run_marker("write", str(marker)).returncode == 0
    result = run_marker(*check)
    assert result.returncode == 0 and f"Stage 7: {SKIPPED}" in result.stderr
    data.write_bytes(b"weights 2")
    result = run_marker(*check)
    assert result.returncode == 1 and "Stage 7: recomputing: input model changed" in result.stderr
    result = run_marker(*check[:-2], "--input", f"config={tmp_path / 'nope.yaml'}")
    assert result.returncode == 2 and "nope.yaml: no such file" in result.stderr
    result = run_marker("write", str(tmp_path / "other.done"))
    assert result.returncode == 2 and "no pending identity" in result.stderr


@pytest.mark.parametrize("bad", ["seed", "=0"])
def test_marker_command_line_refuses_an_option_without_a_name_or_value(tmp_path, bad):
    result = run_marker("check", str(tmp_path / "m"), "--what", "x", "--option", bad)
    assert result.returncode == 2 and "expected NAME=VALUE" in result.stderr


def test_kmeans_reads_only_the_shards_of_its_nj(tmp_path, caplog):
    """Shards of an earlier run with more jobs stay on disk; k-means must not fit on them."""
    caplog.set_level(logging.INFO)
    wav_scp = write_wavs(tmp_path, count=6)
    for job in (1, 2):
        dump_mfcc(wav_scp, tmp_path / "mfcc", job, 2)
    wav_scp.write_text("".join(wav_scp.read_text().splitlines(keepends=True)[:2]))
    dump_mfcc(wav_scp, tmp_path / "mfcc", 1, 1)
    fit_kmeans_main(
        [
            *("--feats_dir", str(tmp_path / "mfcc"), "--n_clusters", "4", "--portion", "1.0"),
            *("--n_init", "1", "--nj", "1", "--model", str(tmp_path / "km.joblib")),
        ]
    )
    assert "frames of 2 utterances" in caplog.text


def test_resumable_step_started_with_other_inputs_is_an_error_not_a_resume(tmp_path):
    """A training killed half-way and re-run on other labels must not continue the old run."""
    labels = tmp_path / "text"
    labels.write_text("u0 1 2 3\n")
    marker = tmp_path / "exp" / ".done"
    check = ["check", str(marker), "--what", "pretraining", "--resumable", "true"]
    check += ["--input", f"labels={labels}"]
    assert run_marker(*check).returncode == 1  # started (then killed: no write)
    assert run_marker(*check).returncode == 1  # same inputs: resume
    labels.write_text("u0 4 5 6\n")
    result = run_marker(*check)
    assert result.returncode == 2 and "input labels changed" in result.stderr
    assert "remove what it made" in result.stderr

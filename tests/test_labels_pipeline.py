"""MFCC -> k-means -> labels, through the entry points the recipe calls, on generated audio."""

import errno
import math
import os

import numpy as np
import pytest
import soundfile as sf
from helpers.audio import write_wavs

from espnet_ils.analysis.metrics import cluster_quality, joint_counts
from espnet_ils.bin.dump_labels import dump_labels
from espnet_ils.bin.dump_mfcc import dump_mfcc
from espnet_ils.bin.fit_kmeans import main as fit_kmeans_main
from espnet_ils.bin.merge_labels import merge_labels
from espnet_ils.data.audio import load_waveform, num_frames
from espnet_ils.data.kaldi_files import read_key_file, write_text_atomic
from espnet_ils.data.labels import to_encoder_rate
from espnet_ils.data.shards import feature_shard_writer
from espnet_ils.targets.mfcc import compute_mfcc


@pytest.mark.parametrize(
    "samples", [400, 401, 559, 560, 719, 720, 16000, 16159, 16160, 16319, 250000]
)
def test_mfcc_every_second_frame_matches_the_encoder_frames(samples):
    mfcc = compute_mfcc(np.zeros(samples, dtype=np.float32) + 0.01)
    assert mfcc.shape == ((samples - 400) // 160 + 1, 39)
    assert len(to_encoder_rate(np.arange(len(mfcc)), 100)) == num_frames(samples)


def test_pipeline_writes_checked_labels_and_a_rerun_does_nothing(tmp_path):
    wav_scp = write_wavs(tmp_path)
    feats = tmp_path / "mfcc"
    for job in (1, 2):
        dump_mfcc(wav_scp, feats, job, 2)
    model = tmp_path / "km" / "km.joblib"
    fit_kmeans_main(
        [
            "--feats_dir",
            str(feats),
            "--n_clusters",
            "8",
            "--portion",
            "1.0",
            "--n_init",
            "2",
            "--model",
            str(model),
        ]
    )
    labels_dir = tmp_path / "labels"
    for job in (1, 2):
        dump_labels(feats, 100, model, labels_dir, job, 2)
    merge_labels(wav_scp, labels_dir, 2, labels_dir / "text")

    labels = read_key_file(labels_dir / "text")
    assert list(labels) == [f"u{i}" for i in range(6)]
    for utt, path in read_key_file(wav_scp).items():
        ids = [int(x) for x in labels[utt].split()]
        assert len(ids) == num_frames(len(load_waveform(path, utt)))
        assert 0 <= min(ids) and max(ids) < 8

    stamps = {p: p.stat().st_mtime_ns for p in (feats / "feats.1.ark", labels_dir / "labels.2")}
    dump_mfcc(wav_scp, feats, 1, 2)
    dump_labels(feats, 100, model, labels_dir, 2, 2)
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps


@pytest.mark.slow
def test_kmeans_is_reproducible_for_a_seed(tmp_path):
    wav_scp = write_wavs(tmp_path)
    dump_mfcc(wav_scp, tmp_path / "mfcc", 1, 1)
    centers = []
    for name in ("a", "b"):
        model = tmp_path / name / "km.joblib"
        fit_kmeans_main(
            [
                "--feats_dir",
                str(tmp_path / "mfcc"),
                "--n_clusters",
                "5",
                "--n_init",
                "2",
                "--portion",
                "0.5",
                "--model",
                str(model),
            ]
        )
        centers.append(__import__("joblib").load(model).cluster_centers_)
    np.testing.assert_array_equal(centers[0], centers[1])


@pytest.mark.parametrize(
    "content, match",
    [
        (b"", "empty|cannot read"),
        (b"not audio at all", "cannot read audio file"),
    ],
)
def test_unreadable_or_empty_audio_names_the_utterance_and_leaves_no_shard(
    tmp_path, content, match
):
    wav_scp = write_wavs(tmp_path, count=3)
    (tmp_path / "wav" / "u1.flac").write_bytes(content)
    with pytest.raises(ValueError, match=f"utterance u1: .*({match})"):
        dump_mfcc(wav_scp, tmp_path / "mfcc", 1, 1)
    assert not (tmp_path / "mfcc" / "feats.1.scp").exists()
    assert not (tmp_path / "mfcc" / ".done.1").exists()


def test_empty_flac_names_the_file(tmp_path):
    path = tmp_path / "empty.wav"  # a FLAC without samples is not even readable
    sf.write(path, np.zeros(0, dtype=np.float32), 16000)
    with pytest.raises(ValueError, match=f"utterance e: {path} is empty"):
        load_waveform(path, "e")


def test_wrong_sample_rate_is_refused(tmp_path):
    path = tmp_path / "x.flac"
    sf.write(path, np.zeros(800, dtype=np.float32), 8000)
    with pytest.raises(ValueError, match="utterance x: .* 8000 Hz; expected 16000 Hz"):
        load_waveform(path, "x")


def test_missing_directory_and_missing_labels_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="no feats"):
        fit_kmeans_main(
            [
                "--feats_dir",
                str(tmp_path / "nope"),
                "--n_clusters",
                "2",
                "--model",
                str(tmp_path / "m"),
            ]
        )
    with pytest.raises(FileNotFoundError, match="wav.scp: no such file"):
        dump_mfcc(tmp_path / "data" / "wav.scp", tmp_path / "mfcc", 1, 1)
    wav_scp = write_wavs(tmp_path, count=3)
    labels_dir = tmp_path / "labels"
    labels_dir.mkdir()
    (labels_dir / "labels.1").write_text("u0 1 2\nu2 3 4\n")
    (labels_dir / ".done.1").write_text("{}")
    with pytest.raises(ValueError, match=r"missing for \['u1'\]"):
        merge_labels(wav_scp, labels_dir, 1, labels_dir / "text")
    assert not (labels_dir / "text").exists()


def test_label_count_mismatch_names_the_utterance(tmp_path):
    wav_scp = write_wavs(tmp_path, count=2)
    feats = tmp_path / "mfcc"
    dump_mfcc(wav_scp, feats, 1, 1)
    fit_kmeans_main(
        [
            "--feats_dir",
            str(feats),
            "--n_clusters",
            "3",
            "--n_init",
            "1",
            "--portion",
            "1.0",
            "--model",
            str(tmp_path / "km.joblib"),
        ]
    )
    lengths = feats / "utt2num_samples.1"
    lengths.write_text(lengths.read_text().replace("u1 9931", "u1 19931"))
    with pytest.raises(ValueError, match="utterance u1: 30 labels but the encoder gives 62 frames"):
        dump_labels(feats, 100, tmp_path / "km.joblib", tmp_path / "labels", 1, 1)
    assert not (tmp_path / "labels" / "labels.1").exists()


def test_cluster_quality_on_a_case_known_by_hand():
    # 4 frames: phones a a b b; clusters 0 0 0 1.
    counts = joint_counts(["a", "a", "b", "b"], [0, 0, 0, 1])
    quality = cluster_quality(counts)
    assert quality["phone_purity"] == pytest.approx(
        3 / 4
    )  # cluster 0 -> a (2 of 3), cluster 1 -> b
    assert quality["cluster_purity"] == pytest.approx(
        3 / 4
    )  # a -> 0 (2 of 2), b -> 0 or 1 (1 of 2)
    # I(p;c) = H(p) - H(p|c) = log 2 - 3/4 * H(2/3, 1/3)
    h_cond = -(2 / 3 * math.log(2 / 3) + 1 / 3 * math.log(1 / 3))
    assert quality["pnmi"] == pytest.approx((math.log(2) - 0.75 * h_cond) / math.log(2))


def test_cluster_quality_extremes():
    perfect = cluster_quality(joint_counts(list("aabbcc"), [5, 5, 7, 7, 9, 9]))
    assert perfect == pytest.approx({"phone_purity": 1.0, "cluster_purity": 1.0, "pnmi": 1.0})
    independent = cluster_quality(joint_counts(list("aabb"), [0, 1, 0, 1]))
    assert independent["pnmi"] == pytest.approx(0.0, abs=1e-12)


def test_a_full_disk_leaves_no_partial_shard_and_names_it(tmp_path):
    """A write that fails (ENOSPC here) removes the temporary files, which would otherwise hold
    the space a re-run needs, and the error names the shard; no marker is written."""
    with pytest.raises(OSError, match=r"cannot write .*feats\.1\.ark: No space left on device"):
        with feature_shard_writer(tmp_path, 1) as writer:
            writer["u1"] = np.zeros((4, 3), dtype=np.float32)
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_a_failed_text_write_names_the_file_and_leaves_nothing(tmp_path, monkeypatch):
    def full(src, dst):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "replace", full)
    with pytest.raises(OSError, match=r"cannot write .*text: No space left on device"):
        write_text_atomic(tmp_path / "text", ["u1 A"])
    assert list(tmp_path.iterdir()) == []

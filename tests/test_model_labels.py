"""Labels straight from audio (stage 5, external label models): the same labels as dumping the
block's features first, while only the k-means portion's features are written."""

import subprocess
import sys
from pathlib import Path
from typing import Dict

import kaldiio
import numpy as np
import pytest
import soundfile
import torch
from helpers.models import tiny_config, write_model

from espnet_ils.bin.dump_labels import dump_labels
from espnet_ils.bin.extract_layer_features import extract_shard
from espnet_ils.bin.merge_labels import merge_labels
from espnet_ils.bin.model_labels import label_shard
from espnet_ils.data.kaldi_files import read_key_file, write_key_file
from espnet_ils.targets.kmeans import (
    assign_clusters,
    fit_kmeans,
    load_portion,
    nearest_centroid,
    save_kmeans,
)
from espnet_ils.targets.model_labels import windows
from espnet_ils.targets.selection import choose_portion
from espnet_ils.train.tasks import ILSSSLTask

LAYER, CLUSTERS, PORTION, SEED, NJ = 2, 6, 0.5, 3, 2
TOKENS = [str(c) for c in range(5)] + ["<unk>"]  # the tiny model's own 5 classes


@pytest.fixture(scope="module")
def model_file(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    outdir = tmp_path_factory.mktemp("ssl") / "exp"
    return write_model(ILSSSLTask, tiny_config("group_norm", False), TOKENS, outdir)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    """A data directory of 10 noise utterances of 0.3-1.2 s (wav.scp, utt2num_samples)."""
    root = tmp_path_factory.mktemp("data")
    rng = np.random.default_rng(1)
    wavs, lengths = {}, {}
    for index, num_samples in enumerate(rng.integers(4800, 19200, size=10)):
        path = root / f"u{index}.wav"
        soundfile.write(path, 0.1 * rng.standard_normal(num_samples), 16000, subtype="FLOAT")
        wavs[f"u{index}"], lengths[f"u{index}"] = str(path), str(num_samples)
    write_key_file(root / "wav.scp", wavs)
    write_key_file(root / "utt2num_samples", lengths)
    return root


def fit_on(feats_dir: Path, portion: float, km_path: Path) -> Path:
    features, _ = load_portion(feats_dir, portion, SEED, NJ)
    save_kmeans(fit_kmeans(features, CLUSTERS, SEED, {"n_init": 2}), km_path)
    return km_path


def dumped_path(model_file: Path, data_dir: Path, root: Path) -> Path:
    """Today's path: every utterance's features, k-means on a portion of them, labels from them."""
    for job in range(1, NJ + 1):
        extract_shard(model_file, None, data_dir / "wav.scp", LAYER, root / "feats", NJ, job)
    km = fit_on(root / "feats", PORTION, root / "km.joblib")
    for job in range(1, NJ + 1):
        dump_labels(root / "feats", 50, km, root / "labels", job, NJ)
    merge_labels(data_dir / "wav.scp", root / "labels", NJ, root / "labels" / "text")
    return root / "labels" / "text"


def streamed_path(model_file: Path, data_dir: Path, root: Path, batch_size: int = 1) -> Path:
    """Stage 5's path: the portion's features only, labels straight from audio (the portion's
    from its features)."""
    num_samples = {u: int(n) for u, n in read_key_file(data_dir / "utt2num_samples").items()}
    portion = choose_portion(num_samples, PORTION, 0, SEED)
    root.mkdir(parents=True)
    (root / "portion").write_text("".join(f"{utt}\n" for utt in portion))
    for job in range(1, NJ + 1):
        extract_shard(
            model_file, None, data_dir / "wav.scp", LAYER, root / "feats", NJ, job,
            utt_list=root / "portion",
        )  # fmt: skip
    km = fit_on(root / "feats", 1.0, root / "km.joblib")
    for job in range(1, NJ + 1):
        label_shard(
            model_file, None, LAYER, km, CLUSTERS, data_dir, root / "labels", NJ, job, batch_size,
            feats_dir=root / "feats",
        )  # fmt: skip
    merge_labels(data_dir / "wav.scp", root / "labels", NJ, root / "labels" / "text")
    return root / "labels" / "text"


@pytest.fixture(scope="module")
def streamed(model_file, data_dir, tmp_path_factory) -> Path:
    """Stage 5's labels (batch 1); the feature folder of the portion is next to them."""
    return streamed_path(model_file, data_dir, tmp_path_factory.mktemp("streamed") / "b1")


def test_labels_from_audio_equal_the_dumped_features_path_bit_for_bit(
    model_file, data_dir, streamed, tmp_path
):
    dumped = dumped_path(model_file, data_dir, tmp_path / "dumped")
    assert streamed.read_bytes() == dumped.read_bytes()
    scps = (streamed.parents[1] / "feats").glob("feats.*.scp")
    written = {utt for scp in scps for utt in read_key_file(scp)}
    assert len(written) == 5 and written < set(read_key_file(data_dir / "wav.scp"))


@pytest.mark.slow
def test_batches_of_several_utterances_give_the_same_labels(
    model_file, data_dir, streamed, tmp_path
):
    one = read_key_file(streamed)
    batched = read_key_file(streamed_path(model_file, data_dir, tmp_path / "b4", batch_size=4))
    pairs = [(a, b) for utt in one for a, b in zip(one[utt].split(), batched[utt].split())]
    assert len(pairs) > 300
    assert sum(a == b for a, b in pairs) / len(pairs) > 0.99  # padding changes the last bits only


def test_the_portion_is_labelled_from_its_features_without_its_audio(
    model_file, data_dir, streamed, tmp_path
):
    """Its audio gone, the portion's labels still come out the same: they are read from the
    features k-means was fitted on, and only the other utterances go through the model."""
    root = streamed.parents[1]
    portion = set((root / "portion").read_text().split())
    moved = tmp_path / "data"
    moved.mkdir()
    audio = read_key_file(data_dir / "wav.scp")
    write_key_file(
        moved / "wav.scp", {u: "/gone.wav" if u in portion else p for u, p in audio.items()}
    )
    (moved / "utt2num_samples").write_text((data_dir / "utt2num_samples").read_text())
    for job in range(1, NJ + 1):
        label_shard(
            model_file, None, LAYER, root / "km.joblib", CLUSTERS, moved, tmp_path / "labels",
            NJ, job, feats_dir=root / "feats",
        )  # fmt: skip
    merge_labels(moved / "wav.scp", tmp_path / "labels", NJ, tmp_path / "text")
    assert (tmp_path / "text").read_bytes() == streamed.read_bytes()


def test_a_done_shard_is_skipped_before_torch_scikit_learn_or_espnet_is_imported(
    model_file, data_dir, streamed
):
    """A re-run of stage 5 that finds its shards done costs no model imports (10 s a job)."""
    root = streamed.parents[1]
    common = ["--model_file", model_file, "--layer", LAYER, "--nj", NJ, "--job", 1]
    commands = {
        "extract_layer_features": [
            *common, "--wav_scp", data_dir / "wav.scp", "--utt_list", root / "portion",
            "--out_dir", root / "feats",
        ],
        "model_labels": [
            *common, "--km_model", root / "km.joblib", "--n_clusters", CLUSTERS, "--data_dir",
            data_dir, "--outdir", root / "labels", "--feats_dir", root / "feats",
        ],
    }  # fmt: skip
    for name, args in commands.items():
        result = subprocess.run(
            [sys.executable, "-X", "importtime", "-m", f"espnet_ils.bin.{name}", *map(str, args)],
            capture_output=True,
            text=True,
        )
        assert result.returncode == 0, result.stderr[-2000:]
        assert "skipped: done with the same options and inputs" in result.stderr
        imported = {line.split("|")[-1].strip() for line in result.stderr.splitlines()}
        assert not {"torch", "sklearn", "espnet2"} & {name.split(".")[0] for name in imported}


def test_windows_keep_the_order_and_sort_each_window_by_length():
    lengths = {f"u{i}": n for i, n in enumerate([9, 3, 7, 1, 5, 8, 2])}
    runs = list(windows(list(lengths), lengths, batch_size=2, window=3))
    assert [window for window, _ in runs] == [["u0", "u1", "u2"], ["u3", "u4", "u5"], ["u6"]]
    assert runs[0][1] == [["u1", "u2"], ["u0"]]
    assert runs[1][1] == [["u3", "u4"], ["u5"]]
    skipping = list(windows(list(lengths), lengths, batch_size=2, window=3, skip={"u1", "u4"}))
    assert skipping[0] == (["u0", "u1", "u2"], [["u2", "u0"]])
    assert skipping[1][1] == [["u3", "u5"]]


def test_the_portion_is_today_s_portion_then_capped_in_hours():
    num_samples = {f"u{i:02d}": 16000 * 60 for i in range(40)}  # one minute each
    from espnet_ils.targets.selection import choose_utterances

    assert choose_portion(num_samples, 0.5, 0, 7) == list(
        choose_utterances(sorted(num_samples), 0.5, 7)
    )
    capped = choose_portion(num_samples, 0.5, 5 / 60, 7)  # 5 minutes
    assert len(capped) == 5 and set(capped) < set(choose_portion(num_samples, 0.5, 0, 7))


def test_the_gpu_distances_pick_scikit_learn_s_centroid():
    rng = np.random.default_rng(0)
    centers = rng.standard_normal((7, 5)).astype(np.float32) * 4
    frames = centers[rng.integers(0, 7, 200)] + 0.3 * rng.standard_normal((200, 5)).astype(
        np.float32
    )
    model = fit_kmeans(np.concatenate([centers, frames]), 7, 0, {"n_init": 1})
    got = nearest_centroid(torch.from_numpy(frames), torch.from_numpy(model.cluster_centers_))
    np.testing.assert_array_equal(got.numpy(), model.predict(frames))
    np.testing.assert_array_equal(
        assign_clusters(model, torch.from_numpy(frames)), model.predict(frames)
    )


def write_km(path: Path, clusters: int, dim: int) -> Path:
    rng = np.random.default_rng(0)
    save_kmeans(fit_kmeans(rng.standard_normal((50, dim)).astype(np.float32), clusters, 0), path)
    return path


@pytest.mark.slow
def test_a_rerun_skips_and_a_new_kmeans_model_relabels(model_file, data_dir, tmp_path):
    km = write_km(tmp_path / "km.joblib", CLUSTERS, 32)
    out = label_shard(model_file, None, LAYER, km, CLUSTERS, data_dir, tmp_path / "labels", NJ, 1)
    stamp = out.stat().st_mtime_ns
    label_shard(model_file, None, LAYER, km, CLUSTERS, data_dir, tmp_path / "labels", NJ, 1)
    assert out.stat().st_mtime_ns == stamp
    write_km(tmp_path / "km.joblib", CLUSTERS + 0, 32).touch()
    save_kmeans(
        fit_kmeans(
            np.random.default_rng(5).standard_normal((60, 32)).astype(np.float32), CLUSTERS, 1
        ),
        km,
    )
    label_shard(model_file, None, LAYER, km, CLUSTERS, data_dir, tmp_path / "labels", NJ, 1)
    assert out.stat().st_mtime_ns != stamp


BAD_INPUT: Dict[str, tuple] = {
    "a k-means model of another dimension": (
        (CLUSTERS, 16),
        CLUSTERS,
        r"km.joblib has 16-dimensional centroids, but the blocks of .* are 32 wide",
    ),
    "another cluster count than the token list": (
        (CLUSTERS, 32),
        CLUSTERS + 1,
        r"has 6 clusters, but --n_clusters is 7",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUT))
def test_a_kmeans_model_that_does_not_fit_is_named(model_file, data_dir, tmp_path, case):
    (clusters, dim), n_clusters, message = BAD_INPUT[case]
    km = write_km(tmp_path / "km.joblib", clusters, dim)
    with pytest.raises(ValueError, match=message):
        label_shard(model_file, None, LAYER, km, n_clusters, data_dir, tmp_path / "labels", NJ, 1)
    assert not (tmp_path / "labels" / "labels.1").exists()
    assert not (tmp_path / "labels" / ".done.1").exists()


@pytest.mark.slow
def test_audio_of_another_length_than_the_data_directory_says_is_named(
    model_file, data_dir, tmp_path
):
    other = tmp_path / "data"
    other.mkdir()
    (other / "wav.scp").write_text((data_dir / "wav.scp").read_text())
    lengths = read_key_file(data_dir / "utt2num_samples")
    lengths["u0"] = str(int(lengths["u0"]) + 320)
    write_key_file(other / "utt2num_samples", lengths)
    km = write_km(tmp_path / "km.joblib", CLUSTERS, 32)
    with pytest.raises(ValueError, match=r"utterance u0: .* the data directory says"):
        label_shard(model_file, None, LAYER, km, CLUSTERS, other, tmp_path / "labels", 1, 1)
    assert not (tmp_path / "labels" / "labels.1").exists()


def test_a_layer_beyond_the_model_is_refused(model_file, data_dir, tmp_path):
    km = write_km(tmp_path / "km.joblib", CLUSTERS, 32)
    with pytest.raises(ValueError, match=r"valid layers are 0 .* to 3"):
        label_shard(model_file, None, 4, km, CLUSTERS, data_dir, tmp_path / "labels", 1, 1)


def test_a_quantizer_pickled_by_old_scikit_learn_is_rebuilt_from_its_centroids(
    tmp_path, monkeypatch
):
    """fairseq's released quantizers (hubert_base_ls960_L9_km500.bin) were pickled by
    scikit-learn < 0.22 from the module sklearn.cluster.k_means_, which no longer exists."""
    import sklearn.base
    from sklearn.cluster import KMeans, MiniBatchKMeans

    from espnet_ils.targets.kmeans import load_kmeans

    frames = np.random.default_rng(0).standard_normal((300, 8)).astype(np.float32)
    model = fit_kmeans(frames, 6, 0, {"n_init": 1})
    old_module = type(sys)("sklearn.cluster.k_means_")
    old_module.MiniBatchKMeans = MiniBatchKMeans
    monkeypatch.setitem(sys.modules, "sklearn.cluster.k_means_", old_module)
    monkeypatch.setattr(MiniBatchKMeans, "__module__", "sklearn.cluster.k_means_")
    monkeypatch.setattr(sklearn.base, "__version__", "0.21.3")
    save_kmeans(model, tmp_path / "km500.bin")
    monkeypatch.undo()
    assert b"sklearn.cluster.k_means_" in (tmp_path / "km500.bin").read_bytes()

    loaded = load_kmeans(tmp_path / "km500.bin")
    assert type(loaded) is KMeans and "sklearn.cluster.k_means_" not in sys.modules
    np.testing.assert_array_equal(loaded.cluster_centers_, model.cluster_centers_)
    np.testing.assert_array_equal(
        loaded.predict(frames), model.predict(frames)
    )  # the attributes predict reads


def test_a_file_that_is_no_kmeans_model_is_named(tmp_path):
    from espnet_ils.targets.kmeans import load_kmeans

    (tmp_path / "km.bin").write_bytes(b"not a pickle")
    with pytest.raises(ValueError, match=r"km\.bin: cannot be read as a k-means model"):
        load_kmeans(tmp_path / "km.bin")
    save_kmeans({"centers": [1, 2]}, tmp_path / "dict.bin")
    with pytest.raises(
        ValueError, match=r"dict\.bin: holds a dict without \(C, D\) cluster_centers_"
    ):
        load_kmeans(tmp_path / "dict.bin")


@pytest.mark.slow
def test_two_byte_storage_halves_the_portion_s_features_within_its_step(
    model_file, data_dir, tmp_path
):
    sizes, features = {}, {}
    for storage in ("float32", "two_byte"):
        out = tmp_path / storage
        extract_shard(model_file, None, data_dir / "wav.scp", LAYER, out, storage=storage)
        sizes[storage] = (out / "feats.1.ark").stat().st_size
        features[storage] = dict(kaldiio.load_scp(str(out / "feats.1.scp")).items())
    assert sizes["two_byte"] < 0.55 * sizes["float32"]
    for utt, exact in features["float32"].items():
        step = (exact.max() - exact.min()) / 65535
        np.testing.assert_allclose(features["two_byte"][utt], exact, rtol=0, atol=2 * step)

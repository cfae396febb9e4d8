"""Stage 1 on LibriSpeech (local/data.sh): only the subsets of the sets a run uses, downloads into
LIBRISPEECH itself (resumable, bounded), and a clear message within seconds when offline.

``wget`` is the stand-in of conftest.py (fixture ``stand_in``): it serves tarballs from a local
folder (honouring ``--continue`` like an HTTP range request) or fails like an unreachable host; every
call is logged.
"""

import os
import subprocess
import tarfile
import time
from pathlib import Path

from helpers.audio import write_librispeech

from espnet_ils.data.kaldi_files import read_key_file

RECIPE = Path(__file__).resolve().parents[1] / "egs2/librispeech_ils/ssl1"


def serve_subset(served: Path, tmp_path: Path, words: str) -> Path:
    """The official tarball's layout: ``LibriSpeech/dev-clean/<spk>/<chapter>/...``."""
    write_librispeech(tmp_path / "tarball_src" / "LibriSpeech", words)
    tarball = served / "dev-clean.tar.gz"
    with tarfile.open(tarball, "w:gz") as archive:
        archive.add(tmp_path / "tarball_src" / "LibriSpeech", arcname="LibriSpeech")
    return tarball


def stage1(root: Path, datadir: Path, sets: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["local/data.sh", "--corpus", "librispeech", "--datadir", str(datadir), "--sets", sets],
        cwd=RECIPE,
        env={**os.environ, "LIBRISPEECH": str(root)},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_only_the_subsets_of_the_sets_used_are_needed(tmp_path, stand_in):
    root = tmp_path / "corpus"
    write_librispeech(root, "HELLO")  # only dev-clean; no train, test or fine-tuning subsets
    result = stage1(root, tmp_path / "data", "dev_clean")
    assert result.returncode == 0, result.stderr
    assert stand_in.calls() == []
    assert set(read_key_file(tmp_path / "data" / "dev_clean" / "text").values()) == {"HELLO"}


def test_a_missing_subset_is_downloaded_into_the_root_and_resumed(tmp_path, stand_in):
    tarball = serve_subset(stand_in.served, tmp_path, "WORLD")
    root = tmp_path / "my_copy"  # not called LibriSpeech: the download lands here all the same
    partial = root / ".download" / "dev-clean.tar.gz"
    partial.parent.mkdir(parents=True)
    partial.write_bytes(tarball.read_bytes()[:100])  # an earlier download cut off after 100 bytes

    result = stage1(root, tmp_path / "data", "dev_clean")
    assert result.returncode == 0, result.stderr
    download = [call for call in stand_in.calls() if "--spider" not in call]
    assert len(download) == 1 and "--continue" in download[0] and "--tries=5" in download[0]
    assert "--timeout=60" in download[0]
    assert (root / "dev-clean" / "1" / "2" / "1-2.trans.txt").is_file()
    assert not (root / ".download" / "dev-clean.tar.gz").exists()  # unpacked, then removed
    assert set(read_key_file(tmp_path / "data" / "dev_clean" / "text").values()) == {"WORLD"}

    before = len(stand_in.calls())
    again = stage1(root, tmp_path / "data", "dev_clean")
    assert again.returncode == 0, again.stderr
    assert len(stand_in.calls()) == before  # found locally: nothing downloaded again
    assert "skipped: done with the same options and inputs" in again.stderr


def test_offline_with_a_subset_missing_names_it_and_where_to_put_it(
    tmp_path, stand_in, monkeypatch
):
    monkeypatch.setenv("WGET_OFFLINE", "1")
    root = tmp_path / "corpus"
    write_librispeech(root, "HELLO")
    start = time.monotonic()
    result = stage1(root, tmp_path / "data", "dev_clean test_clean")
    assert time.monotonic() - start < 30
    assert result.returncode != 0
    assert "test-clean is not in" in result.stderr and "cannot be reached" in result.stderr
    assert f"put the subset at {root}/test-clean" in result.stderr
    assert not (tmp_path / "data" / "dev_clean").exists()  # stopped before any preparation


def test_a_damaged_tarball_is_removed_and_a_wrong_one_is_named(tmp_path, stand_in):
    (stand_in.served / "test-clean.tar.gz").write_bytes(b"not a tarball")
    root = tmp_path / "corpus"
    result = stage1(root, tmp_path / "data", "test_clean")
    assert result.returncode != 0
    assert "test-clean.tar.gz is damaged (removed): run stage 1 again" in result.stderr
    assert not (root / ".download" / "test-clean.tar.gz").exists()
    assert not (root / "test-clean").exists()

    # dev-clean's tarball served under test-clean's name
    serve_subset(stand_in.served, tmp_path, "HI")
    (stand_in.served / "dev-clean.tar.gz").rename(stand_in.served / "test-clean.tar.gz")
    result = stage1(root, tmp_path / "data", "test_clean")
    assert "holds no LibriSpeech/test-clean/" in result.stderr
    assert not (root / "test-clean").exists()


def test_an_unknown_set_is_refused_before_any_download(tmp_path, stand_in):
    result = stage1(tmp_path / "corpus", tmp_path / "data", "dev_clean train_100")
    assert result.returncode != 0
    assert "set train_100: not a LibriSpeech set; the sets are train_960" in result.stderr
    assert stand_in.calls() == []

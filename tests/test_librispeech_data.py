"""Stage 1 on LibriSpeech (local/data.sh): only the subsets of the sets a run uses, downloads into
LIBRISPEECH itself (resumable, bounded), and a clear message within seconds when offline.

``wget`` is a stand-in on PATH that serves tarballs from a local folder (honouring ``--continue``
like an HTTP range request) or fails like an unreachable host; every call is logged.
"""

import os
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest
from test_markers import write_librispeech

from espnet_ils.audio import read_key_file

RECIPE = Path(__file__).resolve().parents[1] / "egs2/librispeech_ils/ssl1"

STAND_IN_WGET = r"""#!/usr/bin/env bash
echo "$*" >> "${WGET_CALLS}"
[ "${WGET_OFFLINE:-0}" = 1 ] && exit 4  # wget's "network failure"
prefix=. continue=0 spider=0 url=
while [ $# -gt 0 ]; do
    case $1 in
        --directory-prefix) prefix=$2; shift 2 ;;
        --continue) continue=1; shift ;;
        --spider) spider=1; shift ;;
        --*) shift ;;
        *) url=$1; shift ;;
    esac
done
source=${WGET_SERVES}/${url##*/}
[ -f "${source}" ] || exit 8  # the server's 404
[ "${spider}" = 1 ] && exit 0
out=${prefix}/${url##*/}
have=0
if [ "${continue}" = 1 ] && [ -f "${out}" ]; then have=$(stat -c %s "${out}"); else : > "${out}"; fi
tail -c +$((have + 1)) "${source}" >> "${out}"
"""


@pytest.fixture
def stand_in(tmp_path, monkeypatch):
    bin_dir, served = tmp_path / "bin", tmp_path / "served"
    bin_dir.mkdir()
    served.mkdir()
    wget = bin_dir / "wget"
    wget.write_text(STAND_IN_WGET)
    wget.chmod(0o755)
    # data.sh runs "python", as under path.sh: this interpreter.
    path = os.pathsep.join([str(bin_dir), str(Path(sys.executable).parent), os.environ["PATH"]])
    monkeypatch.setenv("PATH", path)
    monkeypatch.setenv("WGET_CALLS", str(tmp_path / "wget_calls"))
    monkeypatch.setenv("WGET_SERVES", str(served))
    return served


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


def wget_calls(tmp_path: Path) -> list:
    calls = tmp_path / "wget_calls"
    return calls.read_text().splitlines() if calls.exists() else []


def test_only_the_subsets_of_the_sets_used_are_needed(tmp_path, stand_in):
    root = tmp_path / "corpus"
    write_librispeech(root, "HELLO")  # only dev-clean; no train, test or fine-tuning subsets
    result = stage1(root, tmp_path / "data", "dev_clean")
    assert result.returncode == 0, result.stderr
    assert wget_calls(tmp_path) == []
    assert set(read_key_file(tmp_path / "data" / "dev_clean" / "text").values()) == {"HELLO"}


def test_a_missing_subset_is_downloaded_into_the_root_and_resumed(tmp_path, stand_in):
    tarball = serve_subset(stand_in, tmp_path, "WORLD")
    root = tmp_path / "my_copy"  # not called LibriSpeech: the download lands here all the same
    partial = root / ".download" / "dev-clean.tar.gz"
    partial.parent.mkdir(parents=True)
    partial.write_bytes(tarball.read_bytes()[:100])  # an earlier download cut off after 100 bytes

    result = stage1(root, tmp_path / "data", "dev_clean")
    assert result.returncode == 0, result.stderr
    download = [call for call in wget_calls(tmp_path) if "--spider" not in call]
    assert len(download) == 1 and "--continue" in download[0] and "--tries=5" in download[0]
    assert "--timeout=60" in download[0]
    assert (root / "dev-clean" / "1" / "2" / "1-2.trans.txt").is_file()
    assert not (root / ".download" / "dev-clean.tar.gz").exists()  # unpacked, then removed
    assert set(read_key_file(tmp_path / "data" / "dev_clean" / "text").values()) == {"WORLD"}

    before = len(wget_calls(tmp_path))
    again = stage1(root, tmp_path / "data", "dev_clean")
    assert again.returncode == 0, again.stderr
    assert len(wget_calls(tmp_path)) == before  # found locally: nothing downloaded again
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
    (stand_in / "test-clean.tar.gz").write_bytes(b"not a tarball")
    root = tmp_path / "corpus"
    result = stage1(root, tmp_path / "data", "test_clean")
    assert result.returncode != 0
    assert "test-clean.tar.gz is damaged (removed): run stage 1 again" in result.stderr
    assert not (root / ".download" / "test-clean.tar.gz").exists()
    assert not (root / "test-clean").exists()

    serve_subset(stand_in, tmp_path, "HI")  # dev-clean's tarball served under test-clean's name
    (stand_in / "dev-clean.tar.gz").rename(stand_in / "test-clean.tar.gz")
    result = stage1(root, tmp_path / "data", "test_clean")
    assert "holds no LibriSpeech/test-clean/" in result.stderr
    assert not (root / "test-clean").exists()


def test_an_unknown_set_is_refused_before_any_download(tmp_path, stand_in):
    result = stage1(tmp_path / "corpus", tmp_path / "data", "dev_clean train_100")
    assert result.returncode != 0
    assert "set train_100: not a LibriSpeech set; the sets are train_960" in result.stderr
    assert wget_calls(tmp_path) == []

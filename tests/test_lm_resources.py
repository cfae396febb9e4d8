"""The LibriSpeech LM resources (local/lm_resources.sh): a copy in LIBRISPEECH_LM is used as it is, a
missing file is downloaded into that folder (resumable, bounded, a .gz tested before it is moved into
place), offline a clear message within seconds, and only the known files are accepted.

``wget`` is the stand-in of conftest.py (fixture ``stand_in``).
"""

import gzip
import os
import subprocess
import time
from pathlib import Path

import pytest

RECIPE = Path(__file__).resolve().parents[1] / "egs2/librispeech_ils/ssl1"
OPENSLR_LM = "https://www.openslr.org/resources/11"
KNOWN = "4-gram.arpa.gz, librispeech-lexicon.txt, librispeech-lm-norm.txt.gz"  # as listed


def lm_resources(files: str, lm_dir: Path, via: str = "db.sh") -> subprocess.CompletedProcess:
    """Run the script for ``files`` with its folder set through db.sh's variable or ``--dir``."""
    args, env = ["local/lm_resources.sh", "--files", files], dict(os.environ)
    if via == "db.sh":
        env["LIBRISPEECH_LM"] = str(lm_dir)
    else:
        args += ["--dir", str(lm_dir)]
        env.pop("LIBRISPEECH_LM", None)
    return subprocess.run(args, cwd=RECIPE, env=env, capture_output=True, text=True, timeout=60)


def arpa_gz() -> bytes:
    """A stand-in for 4-gram.arpa.gz: a few kB of gzip, so that a cut-off part is not valid."""
    unigrams = "".join(f"-2.0\tWORD{i}\n" for i in range(2000))
    return gzip.compress(f"\\data\\\nngram 1=2000\n\n\\1-grams:\n{unigrams}\n\\end\\\n".encode())


@pytest.mark.parametrize("via", ["db.sh", "--dir"])
def test_a_local_copy_is_used_as_it_is_and_nothing_downloaded(tmp_path, stand_in, via):
    lm_dir = tmp_path / "my_lm"
    lm_dir.mkdir()
    (lm_dir / "4-gram.arpa.gz").write_bytes(b"a local copy, not tested")
    (lm_dir / "librispeech-lexicon.txt").write_text("HELLO HH AH0 L OW1\n")
    result = lm_resources("4-gram.arpa.gz librispeech-lexicon.txt", lm_dir, via)
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    assert stand_in.calls() == []
    assert (lm_dir / "4-gram.arpa.gz").read_bytes() == b"a local copy, not tested"
    assert not (lm_dir / ".download").exists()


def test_missing_files_are_downloaded_a_partial_one_resumed_and_kept(tmp_path, stand_in):
    arpa = arpa_gz()
    (stand_in.served / "4-gram.arpa.gz").write_bytes(arpa)
    (stand_in.served / "librispeech-lexicon.txt").write_text("HELLO HH AH0 L OW1\n")
    lm_dir = tmp_path / "lm"
    partial = lm_dir / ".download" / "4-gram.arpa.gz"
    partial.parent.mkdir(parents=True)
    partial.write_bytes(arpa[:100])  # an earlier download cut off after 100 bytes

    result = lm_resources("4-gram.arpa.gz librispeech-lexicon.txt", lm_dir)
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    probes = [call for call in stand_in.calls() if "--spider" in call]
    downloads = [call for call in stand_in.calls() if "--spider" not in call]
    assert len(probes) == 2 and all("--tries=1 --timeout=15" in call for call in probes)
    assert len(downloads) == 2
    for call in downloads:
        assert "--continue --tries=5 --timeout=60 --waitretry=10" in call
        assert f"--directory-prefix {lm_dir}/.download {OPENSLR_LM}/" in call
    assert (lm_dir / "4-gram.arpa.gz").read_bytes() == arpa
    assert (lm_dir / "librispeech-lexicon.txt").read_text() == "HELLO HH AH0 L OW1\n"
    assert list((lm_dir / ".download").iterdir()) == []  # moved into place

    before = len(stand_in.calls())
    again = lm_resources("4-gram.arpa.gz librispeech-lexicon.txt", lm_dir)
    assert again.returncode == 0, again.stderr
    assert again.stdout == ""
    assert len(stand_in.calls()) == before  # found in place: nothing downloaded again


def test_offline_names_the_file_its_url_and_where_to_put_it(tmp_path, stand_in, monkeypatch):
    monkeypatch.setenv("WGET_OFFLINE", "1")
    lm_dir = tmp_path / "lm"
    start = time.monotonic()
    result = lm_resources("librispeech-lm-norm.txt.gz", lm_dir)
    assert time.monotonic() - start < 30
    assert result.returncode != 0
    url = f"{OPENSLR_LM}/librispeech-lm-norm.txt.gz"
    assert f"librispeech-lm-norm.txt.gz is not in {lm_dir} and {url} cannot be reached" in (
        result.stderr
    )
    assert f"put librispeech-lm-norm.txt.gz at {lm_dir}/librispeech-lm-norm.txt.gz" in result.stderr
    assert "point LIBRISPEECH_LM in db.sh to a folder that has it" in result.stderr
    assert not (lm_dir / "librispeech-lm-norm.txt.gz").exists()


def test_a_damaged_gz_is_removed_and_not_moved_into_place(tmp_path, stand_in):
    (stand_in.served / "4-gram.arpa.gz").write_bytes(arpa_gz()[:-20])  # cut off at the server
    lm_dir = tmp_path / "lm"
    result = lm_resources("4-gram.arpa.gz", lm_dir)
    assert result.returncode != 0
    assert f"{lm_dir}/.download/4-gram.arpa.gz is damaged (removed): run it again" in result.stderr
    assert not (lm_dir / ".download" / "4-gram.arpa.gz").exists()
    assert not (lm_dir / "4-gram.arpa.gz").exists()


@pytest.mark.parametrize(
    "files, message",
    [
        (
            "4-gram.arpa.gz 3-gram.arpa.gz",
            "--files: 3-gram.arpa.gz is not a LibriSpeech LM resource",
        ),
        (" ", "option --files is needed: one or more of " + KNOWN),
    ],
)
def test_an_unknown_or_missing_name_is_refused_before_any_download(
    tmp_path, stand_in, files, message
):
    (stand_in.served / "4-gram.arpa.gz").write_bytes(arpa_gz())
    result = lm_resources(files, tmp_path / "lm")
    assert result.returncode != 0
    assert message in result.stderr and KNOWN in result.stderr
    assert stand_in.calls() == []
    assert not (tmp_path / "lm").exists()

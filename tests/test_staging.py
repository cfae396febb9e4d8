"""Output directories written whole: nothing of a failed write is left where its output belongs."""

import os

import pytest

from espnet_ils.data.staging import check_new_directory, staged_directory


def test_a_finished_block_becomes_the_directory_even_where_an_empty_one_stood(tmp_path):
    umask = os.umask(0o022)
    os.umask(umask)
    outdir = tmp_path / "out"
    outdir.mkdir()
    with staged_directory(outdir) as staging:
        assert staging.parent == tmp_path and staging != outdir
        (staging / "model.pth").write_bytes(b"weights")
    assert [p.name for p in tmp_path.iterdir()] == ["out"]
    assert (outdir / "model.pth").read_bytes() == b"weights"
    assert outdir.stat().st_mode & 0o777 == 0o777 & ~umask  # as mkdir would make it, not 0700


def test_a_failed_block_leaves_nothing(tmp_path):
    outdir = tmp_path / "deep" / "out"
    with pytest.raises(RuntimeError, match="half-way"), staged_directory(outdir) as staging:
        (staging / "config.yaml").write_text("half")
        raise RuntimeError("half-way")
    assert not outdir.exists() and list((tmp_path / "deep").iterdir()) == []


@pytest.mark.parametrize("kind", ["file", "full directory"])
def test_an_occupied_output_is_refused_naming_the_option(tmp_path, kind):
    outdir = tmp_path / "out"
    if kind == "file":
        outdir.write_text("x")
    else:
        outdir.mkdir()
        (outdir / "old").write_text("x")
    with pytest.raises(ValueError, match=f"--outdir {outdir} exists and is not empty"):
        check_new_directory(outdir, "--outdir")
    check_new_directory(tmp_path / "new", "--outdir")  # absent: fine

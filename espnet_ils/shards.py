"""Sharded per-utterance jobs (``${cmd} JOB=1:nj ...``) with outputs a re-run can trust.

A shard's outputs are written under temporary names, renamed into place, and a completion marker
holding the job's options is written last. A shard whose marker is present with the same options is
skipped; anything else (no marker, other options) is recomputed from scratch.
"""

import json
import logging
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Dict, Iterator, List, Sequence, TypeVar

import kaldiio
import numpy as np

logger = logging.getLogger(__name__)

T = TypeVar("T")


def shard(items: Sequence[T], job: int, nj: int) -> List[T]:
    """The ``job``-th (1-based) of ``nj`` contiguous, near-equal slices of ``items``."""
    if not 1 <= job <= nj:
        raise ValueError(f"--job {job} must be in 1..--nj {nj}")
    start = len(items) * (job - 1) // nj
    end = len(items) * job // nj
    return list(items[start:end])


def marker_path(outdir: Path, job: int) -> Path:
    return Path(outdir) / f".done.{job}"


def is_done(outdir: Path, job: int, options: Dict) -> bool:
    """True when shard ``job`` finished earlier with the same ``options``."""
    marker = marker_path(outdir, job)
    if not marker.is_file():
        return False
    try:
        return json.loads(marker.read_text()) == options
    except json.JSONDecodeError:
        return False


def mark_done(outdir: Path, job: int, options: Dict) -> None:
    """Write the completion marker of shard ``job`` (last, after every output is in place)."""
    marker = marker_path(outdir, job)
    tmp = marker.with_name(marker.name + ".tmp")
    tmp.write_text(json.dumps(options, sort_keys=True))
    os.replace(tmp, marker)


@contextmanager
def feature_shard_writer(outdir: Path, job: int) -> Iterator[kaldiio.WriteHelper]:
    """Write ``feats.<job>.ark`` / ``feats.<job>.scp`` atomically.

    Yields a kaldiio writer (``writer[utt] = array``); the files appear under their final names
    only when the block ends without an error. The scp points at the final ark name.
    """
    outdir = Path(outdir).resolve()
    outdir.mkdir(parents=True, exist_ok=True)
    marker_path(outdir, job).unlink(missing_ok=True)
    ark, scp = outdir / f"feats.{job}.ark", outdir / f"feats.{job}.scp"
    tmp_ark, tmp_scp = ark.with_suffix(".ark.tmp"), scp.with_suffix(".scp.tmp")
    with kaldiio.WriteHelper(f"ark,scp:{tmp_ark},{tmp_scp}") as writer:
        yield writer
    lines = tmp_scp.read_text().splitlines()
    tmp_scp.write_text("".join(line.replace(str(tmp_ark), str(ark), 1) + "\n" for line in lines))
    os.replace(tmp_ark, ark)
    os.replace(tmp_scp, scp)


def write_text_atomic(path: Path, lines: Sequence[str]) -> None:
    """Write ``lines`` (newline-terminated) to ``path`` through a temporary file."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    os.replace(tmp, path)


def read_features(scp: Path) -> Iterator:
    """Iterate ``(utt, (T, D) array)`` over a kaldiio scp, in file order."""
    with kaldiio.ReadHelper(f"scp:{scp}") as reader:
        for utt, array in reader:
            yield utt, np.asarray(array)

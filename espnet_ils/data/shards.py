"""Sharded per-utterance jobs (``${cmd} JOB=1:nj ...``) with outputs a re-run can trust.

A shard's outputs are written under temporary names, renamed into place, and a completion marker
``.done.<job>`` holding the job's options and the checksums of its inputs (``espnet_ils.data.markers``)
is written last. A shard whose marker holds the same identity is skipped; anything else (no
marker, another option, a changed input) is recomputed from scratch.
"""

import logging
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, List, Optional, Sequence, TypeVar

import kaldiio
import numpy as np

from espnet_ils.data.kaldi_files import removed_on_error

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


def feature_shard_files(feats_dir: Path, job: int) -> List[Path]:
    """The files that identify feature shard ``job``: its scp listing, lengths and marker (which
    holds the identity of the audio and model that produced it)."""
    feats_dir = Path(feats_dir)
    return [
        feats_dir / f"feats.{job}.scp",
        feats_dir / f"utt2num_samples.{job}",
        marker_path(feats_dir, job),
    ]


@contextmanager
def feature_shard_writer(
    outdir: Path, job: int, compression_method: Optional[int] = None
) -> Iterator[kaldiio.WriteHelper]:
    """Write ``feats.<job>.ark`` / ``feats.<job>.scp`` atomically.

    ``compression_method``: Kaldi's compressed-matrix method for kaldiio (3: two bytes per value),
    or None for float32 matrices.

    Yields a kaldiio writer (``writer[utt] = array``); the files appear under their final names
    only when the block ends without an error. The scp points at the final ark name. On an error
    the temporary files are removed (on a full disk they would hold the space a re-run needs).

    Raises:
        OSError: A write failed (disk full, read-only), naming the shard.
    """
    outdir = Path(outdir).resolve()
    outdir.mkdir(parents=True, exist_ok=True)
    marker_path(outdir, job).unlink(missing_ok=True)
    ark, scp = outdir / f"feats.{job}.ark", outdir / f"feats.{job}.scp"
    tmp_ark, tmp_scp = ark.with_suffix(".ark.tmp"), scp.with_suffix(".scp.tmp")
    with removed_on_error(ark, tmp_ark, tmp_scp):
        with kaldiio.WriteHelper(
            f"ark,scp:{tmp_ark},{tmp_scp}", compression_method=compression_method
        ) as writer:
            yield writer
        lines = tmp_scp.read_text().splitlines()
        tmp_scp.write_text(
            "".join(line.replace(str(tmp_ark), str(ark), 1) + "\n" for line in lines)
        )
        os.replace(tmp_ark, ark)
        os.replace(tmp_scp, scp)


def feature_scps(feats_dir: Path, nj: Optional[int] = None) -> List[Path]:
    """``feats.1..nj.scp`` of ``feats_dir`` (every ``feats.*.scp`` when ``nj`` is None); with ``nj``
    given, shards left by an earlier run with more jobs are not read."""
    if nj is None:
        scps = sorted(Path(feats_dir).glob("feats.*.scp"))
    else:
        scps = [Path(feats_dir) / f"feats.{job}.scp" for job in range(1, nj + 1)]
        scps = [scp for scp in scps if scp.is_file()]
        if scps and len(scps) != nj:
            raise FileNotFoundError(
                f"{feats_dir}: {len(scps)} of --nj {nj} feats.JOB.scp; rerun the feature stage"
            )
    if not scps:
        raise FileNotFoundError(f"{feats_dir}: no feats.*.scp; run the feature stage first")
    return scps


def read_features(scp: Path) -> Iterator:
    """Iterate ``(utt, (T, D) array)`` over a kaldiio scp, in file order."""
    with kaldiio.ReadHelper(f"scp:{scp}") as reader:
        for utt, array in reader:
            yield utt, np.asarray(array)

"""A training set cut into parts for ESPnet's split iterator (``--multiple_iterator true``).

ESPnet reads a ``text``/``scp`` file whole into a dict in every training process: 60k hours of
50 Hz k-means labels are 10.8 G labels, about 40 GB of text (``bench/bench_manifest_memory.py``).
With ``--multiple_iterator true`` (``espnet2.tasks.abs_task.AbsTask.build_multiple_iter_factory``)
each ``--train_data_path_and_name_and_type`` and ``--train_shape_file`` path is a folder holding
``num_splits`` (the count) and ``split.0`` .. ``split.<N-1>``; the parts are read one at a time,
so a process holds about one part (two while it builds the next one).

ESPnet's own cutter (``espnet2.bin.split_scps``) deals the files out line by line and needs every
file to list the same keys in the same order. Here every line goes to the part of its key, chosen
by a stable hash of the key, so the files are split independently (each streamed once, in any
order, with one part file open per part) and an utterance lands in the same part in all of them.
That the files list the same utterances is checked on the way (count and a sum of key hashes per
part and file); a difference is reported with the utterances that make it. Part sizes vary by
chance, by about the square root of a part's size (0.2% for Libri-Light's 10.8M utterances in 32
parts); a part left empty (a set of few utterances for its parts) is refused.
"""

import hashlib
import logging
import os
from pathlib import Path
from typing import Dict, List, Sequence, Set, Tuple

from tqdm import tqdm

from espnet_ils.data.kaldi_files import PathLike, removed_on_error

logger = logging.getLogger(__name__)

HASH_MODULUS = 1 << 64
BUFFER_BYTES = 1 << 20  # per part file


def key_hash(key: bytes) -> int:
    """A stable 64-bit hash of an utterance key (blake2b; Python's ``hash`` changes per process)."""
    return int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "little")


def split_file(path: Path, num_splits: int, output_dir: Path) -> Tuple[List[int], List[int]]:
    """Cut one keyed file into ``output_dir/split.<i>``; each part is written to a temporary name
    and renamed into place when the file is done.

    Returns:
        Per part: the number of utterances and the sum of their key hashes (mod 2^64).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: A line without a value (naming the line).
        OSError: A part could not be written (naming it); no temporary file is left behind.
    """
    path, output_dir = Path(path), Path(output_dir)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    output_dir.mkdir(parents=True, exist_ok=True)
    finals = [output_dir / f"split.{i}" for i in range(num_splits)]
    temporaries = [p.with_name(p.name + ".tmp") for p in finals]
    counts, sums = [0] * num_splits, [0] * num_splits
    with removed_on_error(output_dir, *temporaries):
        parts = [p.open("wb", buffering=BUFFER_BYTES) for p in temporaries]
        try:
            with (
                path.open("rb") as f,
                tqdm(
                    desc=f"split {path}", total=path.stat().st_size, unit="B", unit_scale=True
                ) as bar,
            ):
                read = 0
                for number, line in enumerate(f, start=1):
                    read += len(line)
                    if number % 10000 == 0:
                        bar.update(read)
                        read = 0
                    fields = line.split(maxsplit=1)
                    if not fields:
                        continue
                    if len(fields) != 2:
                        raise ValueError(
                            f"{path}:{number}: expected 'key value', got {line.strip()!r}"
                        )
                    hashed = key_hash(fields[0])
                    part = hashed % num_splits
                    counts[part] += 1
                    sums[part] = (sums[part] + hashed) % HASH_MODULUS
                    parts[part].write(line if line.endswith(b"\n") else line + b"\n")
                bar.update(read)
        finally:
            for part_file in parts:
                part_file.close()
        for tmp, final in zip(temporaries, finals):
            os.replace(tmp, final)
    return counts, sums


def keys_of(path: Path) -> Set[bytes]:
    """The keys of a keyed file (one part: small)."""
    with Path(path).open("rb") as f:
        return {fields[0] for fields in (line.split(maxsplit=1) for line in f) if fields}


def split_keyed_files(
    paths: Sequence[PathLike], num_splits: int, output_dir: PathLike
) -> List[int]:
    """Cut Kaldi-style keyed files (``wav.scp``, ``text``, ``speech_shape``) of one data set into
    ``num_splits`` parts by utterance, in ESPnet's layout for ``--multiple_iterator true``:
    ``output_dir/<file name>/split.<i>`` (i = 0 .. num_splits - 1) and ``<file name>/num_splits``
    (written last).

    Args:
        paths: The files, each ``key value`` per line, all listing the same utterances (in any
            order); their file names (``wav.scp``, ``text``, ...) name the folders they are cut into.
        num_splits: Parts, >= 1 (the recipe's ``--num_splits_ssl`` / ``--num_splits_asr``).
        output_dir: Where the folders go (e.g. ``dump/labels/<tag>/<set>/split8``).

    Returns:
        The number of utterances of each part.

    Raises:
        ValueError: ``num_splits`` < 1; two files share a name; the files do not list the same
            utterances (naming some of those that differ); a part is empty (fewer utterances
            than parts).
    """
    paths, output_dir = [Path(p) for p in paths], Path(output_dir)
    if num_splits < 1:
        raise ValueError(f"num_splits={num_splits}: must be >= 1 (1: one part, no split)")
    names = [p.name for p in paths]
    if not paths or len(set(names)) != len(names):
        raise ValueError(
            f"split_keyed_files: give files with distinct names, got {list(map(str, paths))}"
        )
    fingerprints: Dict[str, Tuple[List[int], List[int]]] = {}
    for path in paths:
        (output_dir / path.name / "num_splits").unlink(missing_ok=True)  # complete only at the end
        fingerprints[path.name] = split_file(path, num_splits, output_dir / path.name)
    first = names[0]
    for part in range(num_splits):
        if any(fingerprints[n][0][part] != fingerprints[first][0][part] for n in names) or any(
            fingerprints[n][1][part] != fingerprints[first][1][part] for n in names
        ):
            report_difference(paths, output_dir, part)
    counts = fingerprints[first][0]
    empty = [part for part, count in enumerate(counts) if count == 0]
    if empty:
        raise ValueError(
            f"num_splits={num_splits}: part {empty[0]} gets no utterance ({sum(counts)} "
            f"utterances in {paths[0]}); use fewer parts"
        )
    for name in names:
        (output_dir / name / "num_splits").write_text(f"{num_splits}\n")
    logger.info(
        "%s -> %s: %d utterances in %d parts of %d..%d",
        ", ".join(map(str, paths)), output_dir, sum(counts), num_splits, min(counts), max(counts),
    )  # fmt: skip
    return counts


def report_difference(paths: Sequence[Path], output_dir: Path, part: int) -> None:
    """Raise a ValueError naming utterances that part ``part`` of one file has and another lacks."""
    keys = {p.name: keys_of(output_dir / p.name / f"split.{part}") for p in paths}
    everywhere = set.intersection(*keys.values())
    for path in paths:
        extra = sorted(keys[path.name] - everywhere)
        if extra:
            shown = ", ".join(k.decode(errors="replace") for k in extra[:5])
            raise ValueError(
                f"{path} lists {len(extra)} utterance(s) that "
                f"{', '.join(str(p) for p in paths if p != path)} lack(s) (at least): {shown}"
                f"{' ...' if len(extra) > 5 else ''}; the files of a data set must list the "
                "same utterances (remake them from one data directory)"
            )
    raise ValueError(  # same keys, different counts: a key repeated in one file
        f"part {part}: the files list the same utterances but not equally often (a repeated "
        f"key in {', '.join(map(str, paths))}); each utterance must appear once per file"
    )

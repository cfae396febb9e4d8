"""Completion markers that know what they stand for: the options and the identity of every input.

A step (a feature shard, a data directory, a recipe stage) is trusted on re-run only when its
marker holds what would produce it now::

    {"options": {"seed": 0, ...}, "inputs": {"km_model": "<checksum>", ...}}

``up_to_date`` compares the marker with the step's current identity: equal, the step is skipped
and the skip is logged with its reason; anything else (no marker, an option or an input changed)
is logged naming what changed, the stale marker is removed, and the caller recomputes and calls
``write_marker`` last, after every output is in place.

An input's identity is its content, never its path:

- ``file_checksum``: blake2b of a file's bytes (read in chunks), e.g. a k-means or SSL model.
- ``files_checksum``: one identity for an input made of several files (name and content of each),
  e.g. the ``feats.J.scp`` listings and shard markers of a feature directory. A listing changes
  when the data it lists changes; a shard marker holds the identity of what produced the shard,
  so identities chain from the corpus to the last stage.
- ``listing_checksum``: a folder too big to read (a corpus): sorted relative paths, sizes and
  modification times of its matching files; ``paths_checksum`` the same of chosen files under a
  folder (one shard of a corpus).
"""

import hashlib
import json
import logging
from pathlib import Path
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Union

from espnet_ils.data.kaldi_files import write_text_atomic

logger = logging.getLogger(__name__)

CHUNK = 1 << 20  # bytes per read


def file_checksum(path: Union[str, Path]) -> str:
    """blake2b (hex) of the bytes of ``path``; raises ``FileNotFoundError`` naming it if absent."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file (an input of this step)")
    digest = hashlib.blake2b(digest_size=20)
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def files_checksum(paths: Iterable[Union[str, Path]]) -> str:
    """One identity of several files: the name (not the folder) and content of each, by name."""
    digest = hashlib.blake2b(digest_size=20)
    by_name = sorted((Path(p).name, Path(p)) for p in paths)
    if len({name for name, _ in by_name}) != len(by_name):
        raise ValueError(
            f"files_checksum: two inputs share a file name: {[str(p) for _, p in by_name]}"
        )
    for name, path in by_name:
        digest.update(f"{name}\0{file_checksum(path)}\n".encode())
    return digest.hexdigest()


def listing_checksum(root: Union[str, Path], patterns: Sequence[str]) -> str:
    """Identity of a folder without reading its files: relative path, size and mtime of each file
    under ``root`` whose name matches one of ``patterns`` (``glob`` style, e.g. ``*.flac``)."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such directory (an input of this step)")
    return paths_checksum(
        root, (path for pattern in patterns for path in root.rglob(pattern) if path.is_file())
    )


def paths_checksum(root: Union[str, Path], paths: Iterable[Union[str, Path]]) -> str:
    """:func:`listing_checksum` of the files ``paths`` (each under ``root``), without reading them.

    Raises:
        FileNotFoundError: A path is not a file, naming it.
    """
    root = Path(root)
    entries = set()
    for path in map(Path, paths):
        try:
            stat = path.stat()
        except FileNotFoundError as error:
            raise FileNotFoundError(f"{path}: no such file (an input of this step)") from error
        entries.add(f"{path.relative_to(root)}\0{stat.st_size}\0{stat.st_mtime_ns}\n")
    digest = hashlib.blake2b(digest_size=20)
    for entry in sorted(entries):
        digest.update(entry.encode())
    return digest.hexdigest()


def step_identity(options: Mapping, inputs: Mapping[str, str]) -> Dict:
    """What a marker holds: ``options`` (JSON values) and ``inputs`` (name -> checksum)."""
    return json.loads(
        json.dumps({"options": dict(options), "inputs": dict(inputs)}, sort_keys=True)
    )


def read_marker(marker: Union[str, Path]) -> Optional[Dict]:
    """The identity stored in ``marker``; None when absent or not a marker of this format."""
    try:
        stored = json.loads(Path(marker).read_text())
    except (FileNotFoundError, json.JSONDecodeError, UnicodeDecodeError):
        return None
    if not isinstance(stored, dict) or set(stored) != {"options", "inputs"}:
        return None
    return stored


def changes(old: Mapping, new: Mapping) -> List[str]:
    """What differs between two identities, one phrase per option or input."""
    found = []
    for kind in ("options", "inputs"):
        before, after = old.get(kind, {}), new.get(kind, {})
        for name in sorted(set(before) | set(after)):
            if name not in before:
                found.append(f"{kind[:-1]} {name} is new")
            elif name not in after:
                found.append(f"{kind[:-1]} {name} is gone")
            elif before[name] != after[name]:
                if kind == "options":
                    found.append(f"option {name} changed ({before[name]!r} -> {after[name]!r})")
                else:
                    found.append(f"input {name} changed")
    return found


def up_to_date(marker: Union[str, Path], wanted: Mapping, what: str) -> bool:
    """True (and the skip logged) when ``marker`` holds ``wanted``.

    Otherwise logs why ``what`` is (re)computed and removes the stale marker, so that a run
    stopped half-way never leaves outputs behind a marker that matches.
    """
    marker = Path(marker)
    stored = read_marker(marker)
    if stored == wanted:
        logger.info(
            "%s: skipped: done with the same options and inputs (%s; %d options, %d inputs)",
            what, marker, len(wanted["options"]), len(wanted["inputs"]),
        )  # fmt: skip
        return True
    if stored is None:
        reason = "no completion marker" if not marker.exists() else "marker of an older format"
        logger.info("%s: computing (%s at %s)", what, reason, marker)
    else:
        logger.info("%s: recomputing: %s", what, "; ".join(changes(stored, wanted)))
    marker.unlink(missing_ok=True)
    return False


def write_marker(marker: Union[str, Path], identity: Mapping) -> None:
    """Write ``identity`` to ``marker`` through a temporary name (last, after the outputs)."""
    marker = Path(marker)
    marker.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(marker, [json.dumps(dict(identity), sort_keys=True, indent=1)])

"""A Hugging Face Hub cache holding a model repository as ``snapshot_download`` leaves it:
``models--<org>--<name>/blobs/<hash>`` (the files' bytes), ``snapshots/<commit>/<path>`` (relative
links to the blobs) and ``refs/main`` (the commit of the ``main`` revision)."""

import hashlib
import os
from pathlib import Path


def populate_hub_cache(folder: Path, cache_dir: Path, repo: str) -> Path:
    """Put ``folder``'s files into ``cache_dir`` as revision ``main`` of the model repository
    ``repo`` (``org/name``); returns the snapshot folder."""
    storage = cache_dir / ("models--" + repo.replace("/", "--"))
    files = sorted(path for path in folder.rglob("*") if path.is_file())
    commit = hashlib.sha1()  # 40 hex digits, as a git commit id
    for path in files:
        commit.update(str(path.relative_to(folder)).encode() + b"\0" + path.read_bytes())
    snapshot = storage / "snapshots" / commit.hexdigest()
    for path in files:
        data = path.read_bytes()
        blob = storage / "blobs" / hashlib.sha256(data).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(data)
        link = snapshot / path.relative_to(folder)
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    (storage / "refs").mkdir()
    (storage / "refs" / "main").write_text(commit.hexdigest())
    return snapshot

"""Output directories written whole: into a staging folder beside them, renamed into place at the end.

A converter or an export that fails half-way leaves nothing a later run or a user could take for
its output, and the rename is atomic on one filesystem.
"""

import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


def check_new_directory(outdir: Path, option: str) -> None:
    """Refuse an ``outdir`` that exists and holds anything (checked before any work starts).

    Raises:
        ValueError: ``outdir`` is a file or a non-empty directory, naming ``option`` and it.
    """
    if outdir.exists() and (not outdir.is_dir() or any(outdir.iterdir())):
        raise ValueError(f"{option} {outdir} exists and is not empty; remove it or pick another")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def staged_directory(outdir: Path, replace: bool = False) -> Iterator[Path]:
    """Yield an empty folder beside ``outdir`` to write into; it becomes ``outdir`` when the block
    succeeds and is removed when it fails.

    ``outdir`` must be absent or empty (:func:`check_new_directory`) when the block ends, unless
    ``replace``: then an older ``outdir`` is removed first (a rebuilt output of a recipe stage).
    """
    outdir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{outdir.name}.", dir=outdir.parent))
    os.chmod(staging, 0o777 & ~_umask())  # mkdtemp's 0700 would keep the output from its group
    try:
        yield staging
        if replace:
            shutil.rmtree(outdir, ignore_errors=True)
        elif outdir.exists():
            outdir.rmdir()
        os.rename(staging, outdir)
    finally:
        if staging.exists():
            shutil.rmtree(staging)

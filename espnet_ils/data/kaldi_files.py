"""Kaldi-style keyed text files (``wav.scp``, ``text``, ``utt2spk``, ``spk2utt``, ...): one
``key value...`` entry per line, read into dicts and written through a temporary name.

ESPnet has readers and writers for these (``espnet2.fileio.read_text.read_2columns_text``,
``espnet2.fileio.datadir_writer.DatadirWriter``), but the reader takes a line without a value as an
empty value and the writer writes in place; the recipe checks its files where they enter and never
leaves one half-written (a re-run would trust it), hence these.
"""

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Dict, Iterable, Iterator, List, Mapping, Union

PathLike = Union[str, Path]


@contextmanager
def removed_on_error(target: Path, *temporaries: Path) -> Iterator[None]:
    """Remove ``temporaries`` when the block fails; an OSError is raised again naming ``target``.

    On a full disk the temporaries would hold the space a re-run needs, and the OS error alone
    ("No space left on device") does not say which output failed.
    """
    try:
        yield
    except BaseException as error:
        for tmp in temporaries:
            tmp.unlink(missing_ok=True)
        if isinstance(error, OSError) and error.errno is not None:
            raise OSError(error.errno, f"cannot write {target}: {error.strerror}") from error
        raise


@contextmanager
def atomic_path(path: PathLike) -> Iterator[Path]:
    """Yield ``<path>.tmp`` to write to; it is renamed to ``path`` when the block succeeds.

    Raises:
        OSError: The write or the rename failed (disk full, read-only), naming ``path``; the
            temporary file is removed.
    """
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with removed_on_error(path, tmp):
        yield tmp
        os.replace(tmp, path)


def write_text_atomic(path: PathLike, lines: Iterable[str]) -> None:
    """Write ``lines`` (each newline-terminated, UTF-8) to ``path`` through a temporary file.

    Raises:
        OSError: The write failed (disk full, read-only), naming ``path``; nothing is left behind.
    """
    with atomic_path(path) as tmp, tmp.open("w", encoding="utf-8") as f:
        f.writelines(line + "\n" for line in lines)  # line by line: a stream stays a stream


def write_key_file(path: PathLike, entries: Mapping[str, str]) -> None:
    """Write ``key value`` lines sorted by key (:func:`write_text_atomic`)."""
    write_text_atomic(path, (f"{key} {entries[key]}" for key in sorted(entries)))


def read_key_file(path: PathLike) -> Dict[str, str]:
    """Read a Kaldi-style ``key value...`` file (``wav.scp``, ``text``, ``utt2spk``) into a dict.

    Args:
        path: The file; one ``key rest-of-line`` entry per line (blank lines are skipped).

    Returns:
        ``{key: rest}`` sorted by key.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: A line without a value, or a repeated key (naming the line).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    entries: Dict[str, str] = {}
    with path.open(encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            fields = line.strip().split(maxsplit=1)
            if not fields:
                continue
            if len(fields) != 2:
                raise ValueError(f"{path}:{number}: expected 'key value', got {line.strip()!r}")
            if fields[0] in entries:
                raise ValueError(f"{path}:{number}: key {fields[0]!r} appears twice")
            entries[fields[0]] = fields[1]
    return dict(sorted(entries.items()))


def write_spk2utt(path: PathLike, utt2spk: Mapping[str, str]) -> None:
    """Write ``spk2utt`` (``speaker utt1 utt2 ...``) of ``utt2spk``, speakers and utterances sorted."""
    speakers: Dict[str, List[str]] = {}
    for utt in sorted(utt2spk):
        speakers.setdefault(utt2spk[utt], []).append(utt)
    write_key_file(path, {speaker: " ".join(utts) for speaker, utts in speakers.items()})

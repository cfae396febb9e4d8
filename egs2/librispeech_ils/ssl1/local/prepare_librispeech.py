#!/usr/bin/env python3
"""Make a Kaldi-style data directory from LibriSpeech (or Libri-light fine-tuning) folders.

Input layout (official): ``<src>/<speaker>/<chapter>/<speaker>-<chapter>-<utt>.flac`` and one
``<speaker>-<chapter>.trans.txt`` per chapter with lines ``<utt-id> TRANSCRIPT IN CAPITALS``.
Several ``--src`` folders are merged (train_960; Libri-light's 1h = six 10-minute folds, 10h = 1h + 9h).

Output in ``--dst``: wav.scp (absolute FLAC paths), text, utt2spk (speaker = ``<speaker>-<chapter>``,
as Kaldi's LibriSpeech recipe), spk2utt, utt2num_samples, utt2dur; all sorted by utterance id and
written through temporary files; ``.done`` is written last, holding the source folders and the
listing of each (relative path, size and mtime of its ``*.flac`` and ``*.trans.txt``). A ``--dst``
whose ``.done`` holds the same is left as it is; another copy of the corpus (``LIBRISPEECH`` in
db.sh) or a changed file rebuilds it.
"""

import argparse
import logging
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import soundfile as sf

from espnet_ils.data.audio import SAMPLE_RATE
from espnet_ils.data.kaldi_files import write_key_file, write_spk2utt
from espnet_ils.data.markers import listing_checksum, step_identity, up_to_date, write_marker

logger = logging.getLogger("prepare_librispeech")

SOURCE_FILES = ("*.flac", "*.trans.txt")  # what a data directory is made from


def read_chapter(trans: Path) -> Dict[str, Tuple[str, Path]]:
    """``{utt: (transcript, flac)}`` of one chapter; every line needs its FLAC and vice versa."""
    entries = {}
    for number, line in enumerate(trans.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        utt, _, words = line.strip().partition(" ")
        flac = trans.parent / f"{utt}.flac"
        if not words:
            raise ValueError(f"{trans}:{number}: utterance {utt} has no transcript")
        if not flac.is_file():
            raise ValueError(f"{trans}:{number}: utterance {utt} has no audio file {flac}")
        entries[utt] = (words, flac.resolve())
    orphans = sorted(f.stem for f in trans.parent.glob("*.flac") if f.stem not in entries)
    if orphans:
        raise ValueError(f"{trans.parent}: audio without transcript in {trans.name}: {orphans[:5]}")
    return entries


def collect(sources: List[Path]) -> Dict[str, Tuple[str, Path]]:
    utterances: Dict[str, Tuple[str, Path]] = {}
    for source in sources:
        if not source.is_dir():
            raise FileNotFoundError(f"{source}: no such directory (check LIBRISPEECH in db.sh)")
        chapters = sorted(source.glob("**/*.trans.txt"))
        if not chapters:
            raise ValueError(f"{source}: no */*/*.trans.txt; is this a LibriSpeech subset folder?")
        for trans in chapters:
            for utt, entry in read_chapter(trans).items():
                if utt in utterances:
                    raise ValueError(
                        f"utterance {utt} appears twice ({utterances[utt][1]}, {entry[1]})"
                    )
                utterances[utt] = entry
    return dict(sorted(utterances.items()))


def prepare(sources: List[Path], dst: Path) -> int:
    """Write the data directory ``dst`` of ``sources``; returns its number of utterances."""
    for source in sources:
        if not source.is_dir():
            raise FileNotFoundError(f"{source}: no such directory (check LIBRISPEECH in db.sh)")
    identity = step_identity(
        {"sources": [str(source.resolve()) for source in sources]},
        {
            f"listing of {source.resolve()}": listing_checksum(source, SOURCE_FILES)
            for source in sources
        },
    )
    if up_to_date(dst / ".done", identity, f"data directory {dst}"):
        return len((dst / "wav.scp").read_text().splitlines())
    utterances = collect(sources)
    dst.mkdir(parents=True, exist_ok=True)
    speaker = {utt: utt.rsplit("-", 1)[0] for utt in utterances}
    num_samples = {}
    for utt, (_, flac) in utterances.items():
        info = sf.info(str(flac))
        if info.samplerate != SAMPLE_RATE or info.channels != 1:
            raise ValueError(
                f"utterance {utt}: {flac} is {info.samplerate} Hz x {info.channels}; expected 16 kHz mono"
            )
        num_samples[utt] = info.frames
    write_key_file(dst / "wav.scp", {u: str(f) for u, (_, f) in utterances.items()})
    write_key_file(dst / "text", {u: t for u, (t, _) in utterances.items()})
    write_key_file(dst / "utt2spk", speaker)
    write_spk2utt(dst / "spk2utt", speaker)
    write_key_file(dst / "utt2num_samples", {u: str(n) for u, n in num_samples.items()})
    write_key_file(dst / "utt2dur", {u: f"{n / SAMPLE_RATE:.4f}" for u, n in num_samples.items()})
    write_marker(dst / ".done", identity)
    return len(utterances)


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--src", type=Path, action="append", required=True, help="Subset folder (repeatable)"
    )
    parser.add_argument("--dst", type=Path, required=True, help="Output data directory")
    return parser


def main(cmd: Optional[List[str]] = None) -> None:
    args = get_parser().parse_args(cmd)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logger.info("arguments: %s", vars(args))
    count = prepare(args.src, args.dst)
    logger.info("%s: %d utterances", args.dst, count)


if __name__ == "__main__":
    main()

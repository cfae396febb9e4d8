#!/usr/bin/env python3
"""Write a data directory's phone alignment at the encoder's 50 Hz from forced-alignment files.

From the Montreal Forced Aligner's TextGrids (a directory, searched for ``<utt>.TextGrid``):

    python -m espnet_ils.bin.import_alignments --source /data/librispeech_alignments/dev-clean \
        --data_dir dump/raw/dev --output dump/raw/dev/phone_alignment

or from frame-level phone files in fairseq's HuBERT format (``utt<TAB>p1,p2,...``): one file, or
a directory of ``*.tsv`` files:

    python -m espnet_ils.bin.import_alignments --source dev.tsv --frame_rate 100 ...

The output holds ``utt p1 p2 ...`` (one phone per encoder frame; the rule at frame edges is in
``espnet_ils.analysis.alignments``) for every utterance of ``--data_dir`` (lengths from its
``utt2num_samples``, or the audio) that has an alignment.
Utterances without one are named in the log and listed in ``<output>.unaligned``; more than
``--max_unaligned`` of them stops the import.
"""

import argparse
import logging
from pathlib import Path
from typing import Dict, List, Optional

from espnet_ils.analysis.alignments import (
    PhoneSegment,
    encoder_alignments,
    frame_phone_segments,
    textgrid_files,
    textgrid_segments,
    unaligned,
)
from espnet_ils.bin import setup_logging
from espnet_ils.data.datadir import num_samples_of
from espnet_ils.data.kaldi_files import write_key_file, write_text_atomic

logger = logging.getLogger("espnet_ils.import_alignments")


def read_segments(
    source: Path, utts: List[str], frame_rate: float, tier: str
) -> Dict[str, List[PhoneSegment]]:
    """The phone segments of ``utts`` in ``source``: a frame-level file, or a directory of TextGrids
    (any depth) or, when it holds none, of frame-level ``*.tsv`` files."""
    if source.is_file():
        return frame_phone_segments(source, frame_rate)
    if not source.is_dir():
        raise FileNotFoundError(f"--source {source}: no such file or directory")
    files = textgrid_files(source)
    if files:
        return {utt: textgrid_segments(files[utt], tier) for utt in utts if utt in files}
    segments: Dict[str, List[PhoneSegment]] = {}
    for tsv in sorted(source.glob("*.tsv")):
        segments.update(frame_phone_segments(tsv, frame_rate))
    if not segments:
        raise FileNotFoundError(f"--source {source}: no *.TextGrid under it and no *.tsv in it")
    return segments


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--source", type=Path, required=True, help="TextGrid directory or frame-level phone file"
    )
    parser.add_argument(
        "--data_dir", type=Path, required=True, help="Data directory whose utterances to align"
    )
    parser.add_argument("--output", type=Path, required=True, help="phone_alignment to write")
    parser.add_argument(
        "--frame_rate", type=float, default=100.0, help="Hz of a frame-level phone file"
    )
    parser.add_argument("--tier", default="phones", help="TextGrid tier of the phones")
    parser.add_argument(
        "--max_unaligned",
        type=float,
        default=0.01,
        help="Largest share of utterances without an alignment that is accepted",
    )
    return parser


def main(cmd: Optional[List[str]] = None) -> None:
    args = get_parser().parse_args(cmd)
    setup_logging(args)
    lengths = num_samples_of(args.data_dir)
    segments = read_segments(args.source, list(lengths), args.frame_rate, args.tier)
    alignments = encoder_alignments(segments, lengths)
    missing = unaligned(lengths, alignments)
    if missing:
        logger.warning(
            "%d of %d utterances have no alignment in %s: %s%s",
            len(missing),
            len(lengths),
            args.source,
            " ".join(missing[:10]),
            " ..." if len(missing) > 10 else "",
        )
    if len(missing) > args.max_unaligned * len(lengths):
        raise SystemExit(
            f"{args.source}: {len(missing)} of {len(lengths)} utterances of "
            f"{args.data_dir} have no alignment (more than --max_unaligned "
            f"{args.max_unaligned}), e.g. {missing[:5]}"
        )
    args.output.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(args.output.with_name(args.output.name + ".unaligned"), missing)
    write_key_file(args.output, {utt: " ".join(labels) for utt, labels in alignments.items()})
    logger.info("wrote %s: %d utterances", args.output, len(alignments))


if __name__ == "__main__":
    main()

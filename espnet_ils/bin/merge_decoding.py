#!/usr/bin/env python3
"""Merge the 1-best hypotheses of decoding shards and check that every utterance was decoded."""

import argparse
import logging
from pathlib import Path
from typing import List, Optional

from espnet_ils.bin import setup_logging
from espnet_ils.data.kaldi_files import read_key_file, write_text_atomic

logger = logging.getLogger("espnet_ils.merge_decoding")


def merge_decoding(
    decode_dir: Path, nj: int, output: Path, hypotheses: str = "1best_recog/text"
) -> None:
    """Join ``output.JOB/<hypotheses>`` for JOB in 1..nj; keys must equal ``split/keys.*``.

    ``hypotheses``: ``1best_recog/text`` (ESPnet's ASR inference) or ``prediction/text``
    (its classification inference).
    """
    hyps, expected = {}, set()
    for job in range(1, nj + 1):
        split = decode_dir / "split" / f"keys.{job}"
        if split.is_file():
            expected.update(read_key_file(split))
        text = decode_dir / f"output.{job}" / hypotheses
        if text.is_file():
            # Empty hypotheses have no value field: read the lines ourselves.
            for line in text.read_text(encoding="utf-8").splitlines():
                utt, _, hyp = line.partition(" ")
                hyps[utt] = hyp.strip()
    missing = sorted(expected - set(hyps))
    if missing:
        raise ValueError(
            f"{decode_dir}: no hypothesis for {missing[:5]} ({len(missing)}); see {decode_dir}/log"
        )
    write_text_atomic(output, [f"{utt} {hyps[utt]}".rstrip() for utt in sorted(hyps)])


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--decode_dir", type=Path, required=True)
    parser.add_argument("--nj", type=int, required=True)
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument(
        "--hypotheses", default="1best_recog/text", help="each shard's text, under output.JOB/"
    )
    return parser


def main(cmd: Optional[List[str]] = None) -> None:
    args = get_parser().parse_args(cmd)
    setup_logging(args)
    merge_decoding(args.decode_dir, args.nj, args.output, args.hypotheses)


if __name__ == "__main__":
    main()

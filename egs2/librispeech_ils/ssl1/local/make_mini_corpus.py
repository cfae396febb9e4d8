#!/usr/bin/env python3
"""Build the embedded multi-speaker English mini corpus with offline speech synthesis.

    python local/make_mini_corpus.py --outdir data/mini --hours 1.0 --seed 0 [--nj N]

(1.0 h is the demo's size, ``run_mini.sh --profile mini``; ``ils.sh --corpus mini`` asks for 1.5 h
unless given ``--mini_hours``.)

Sentences come from the project's own grammar; festival, flite and espeak-ng speak them with 19
voices. Writes train / dev / test (speaker-disjoint) and train_ft Kaldi-style data dirs with
frame-level phone alignments; see local/mini_corpus/mini_corpus.py for the layout. A second run
with the same options does nothing. Needs the Debian packages that local/install_tts.sh installs.

The generator is recipe-local (local/mini_corpus/, beside this script, which puts it on the import
path), not part of the espnet_ils plugin: installing the encoder does not bring it.
"""

import argparse
import os
from typing import List, Optional

from mini_corpus.mini_corpus import CorpusOptions, build_mini_corpus

from espnet_ils.bin import setup_logging

DEFAULT_HOURS = 1.5  # ils.sh's default --mini_hours (the demo asks for 1.0)


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--outdir", required=True, help="output directory (e.g. data/mini)")
    size = parser.add_mutually_exclusive_group()
    size.add_argument(
        "--hours", type=float, help=f"total audio of train/dev/test ({DEFAULT_HOURS} if no size)"
    )
    size.add_argument("--minutes", type=float, help="total audio in minutes (CI: 5)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the sentence generator")
    parser.add_argument(
        "--ft_fraction",
        type=float,
        default=0.25,
        help="share of every train voice's speech in the labelled fine-tuning set train_ft",
    )
    parser.add_argument(
        "--nj", type=int, default=len(os.sched_getaffinity(0)), help="parallel synthesis processes"
    )
    return parser


def main(cmd: Optional[List[str]] = None) -> None:
    args = get_parser().parse_args(cmd)
    setup_logging(args)
    if args.minutes is not None:
        seconds = args.minutes * 60
    else:
        seconds = (DEFAULT_HOURS if args.hours is None else args.hours) * 3600
    options = CorpusOptions(seconds=seconds, seed=args.seed, ft_fraction=args.ft_fraction)
    build_mini_corpus(args.outdir, options, args.nj)


if __name__ == "__main__":
    main()

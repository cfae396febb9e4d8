#!/usr/bin/env python3
"""Choose the utterances k-means is fitted on: a seeded portion of a data directory, capped in hours.

    python -m espnet_ils.bin.kmeans_portion --data_dir dump/raw/train_960 --portion 0.1 \\
        --max_hours 100 --seed 0 --output dump/feats_it2_L6_km500/train_960/portion

Writes the utterance ids, sorted, one per line (``espnet_ils.targets.selection.choose_portion``: the same
utterances as fitting on a portion of every utterance's features, so only these need features).
"""

import argparse
import logging
from pathlib import Path
from typing import List, Optional

from espnet_ils.bin import errors_exit, setup_logging
from espnet_ils.data.audio import SAMPLE_RATE
from espnet_ils.data.datadir import num_samples_of
from espnet_ils.data.kaldi_files import write_text_atomic
from espnet_ils.targets.selection import choose_portion

logger = logging.getLogger("kmeans_portion")


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data_dir", type=Path, required=True, help="wav.scp, utt2num_samples")
    parser.add_argument("--portion", type=float, default=0.1, help="share of the utterances")
    parser.add_argument("--max_hours", type=float, default=0, help="most audio in hours (0: all)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the choice")
    parser.add_argument("--output", type=Path, required=True, help="utterance list")
    return parser


def main(cmd: Optional[List[str]] = None) -> None:
    args = get_parser().parse_args(cmd)
    setup_logging(args)
    num_samples = num_samples_of(args.data_dir)
    with errors_exit("kmeans_portion"):
        chosen = choose_portion(num_samples, args.portion, args.max_hours, args.seed)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(args.output, chosen)
    hours = sum(num_samples[utt] for utt in chosen) / SAMPLE_RATE / 3600
    logger.info(
        "%d of %d utterances, %.2f h of audio -> %s",
        len(chosen),
        len(num_samples),
        hours,
        args.output,
    )


if __name__ == "__main__":
    main()

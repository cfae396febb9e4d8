#!/usr/bin/env python3
"""Cut a training set's keyed files into parts for ESPnet's split iterator (see ``espnet_ils.data.splits``).

    python -m espnet_ils.bin.split_scps --num_splits 32 --output_dir dump/labels/it2/train/split32 \
        --scps dump/raw/train/wav.scp dump/labels/it2/train/text dump/raw/train/speech_shape

writes ``<output_dir>/{wav.scp,text,speech_shape}/split.{0..31}`` and ``.../num_splits``; training
then takes ``--multiple_iterator true`` and those folders as its data paths and shape file.
"""

import argparse
from pathlib import Path
from typing import List, Optional

from espnet_ils.bin import setup_logging
from espnet_ils.data.splits import split_keyed_files


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--scps", type=Path, nargs="+", required=True, help="Keyed files of one data set"
    )
    parser.add_argument("--num_splits", type=int, required=True, help="Parts (>= 1)")
    parser.add_argument("--output_dir", type=Path, required=True, help="Folder of the parts")
    return parser


def main(cmd: Optional[List[str]] = None) -> None:
    args = get_parser().parse_args(cmd)
    setup_logging(args)
    split_keyed_files(args.scps, args.num_splits, args.output_dir)


if __name__ == "__main__":
    main()

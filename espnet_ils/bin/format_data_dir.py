#!/usr/bin/env python3
"""Copy a data directory into the dump area, dropping utterances outside a duration range."""

import argparse
import logging
from pathlib import Path
from typing import List, Optional

from espnet_ils.bin import setup_logging
from espnet_ils.data.datadir import format_data_dir

logger = logging.getLogger("espnet_ils.format_data_dir")


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--src", type=Path, required=True, help="Kaldi-style data directory")
    parser.add_argument("--dst", type=Path, required=True, help="Output directory")
    parser.add_argument("--min_duration", type=float, default=0.0, help="Seconds")
    parser.add_argument("--max_duration", type=float, default=float("inf"), help="Seconds")
    return parser


def main(cmd: Optional[List[str]] = None) -> None:
    args = get_parser().parse_args(cmd)
    setup_logging(args)
    format_data_dir(args.src, args.dst, args.min_duration, args.max_duration)


if __name__ == "__main__":
    main()

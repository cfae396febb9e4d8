#!/usr/bin/env python3
"""Write the SSL token list for k-means labels: the ids 0..num_classes-1, then <unk>."""

import argparse
from pathlib import Path
from typing import List, Optional

from espnet_ils.data.labels import write_token_list


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--num_classes", type=int, required=True, help="k-means clusters")
    parser.add_argument("--output", type=Path, required=True, help="Token list file")
    return parser


def main(cmd: Optional[List[str]] = None) -> None:
    args = get_parser().parse_args(cmd)
    write_token_list(args.output, args.num_classes)


if __name__ == "__main__":
    main()

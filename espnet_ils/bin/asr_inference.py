#!/usr/bin/env python3
"""ESPnet ASR decoding with ILS classes registered: same flags as ``espnet2.bin.asr_inference``."""

from typing import List, Optional

from espnet2.bin import asr_inference

import espnet_ils  # noqa: F401  (registers our classes)


def get_parser():
    return asr_inference.get_parser()


def main(cmd: Optional[List[str]] = None) -> None:
    asr_inference.main(cmd)


if __name__ == "__main__":
    main()

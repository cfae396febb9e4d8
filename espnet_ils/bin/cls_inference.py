#!/usr/bin/env python3
"""ESPnet's classification inference with ILS classes registered: same flags as
``espnet2.bin.cls_inference`` (the speaker-identification probe's decoding)."""

from typing import List, Optional

from espnet2.bin import cls_inference

import espnet_ils  # noqa: F401  (registers our classes)


def get_parser():
    return cls_inference.get_parser()


def main(cmd: Optional[List[str]] = None) -> None:
    cls_inference.main(cmd)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""ESPnet's ``tokenize_text`` (token lists for the ASR task) without its offline network noise.

Same flags as ``espnet2.bin.tokenize_text``; importing ``espnet_ils`` first keeps ESPnet's g2p
imports from trying to download NLTK data.
"""

from typing import List, Optional

from espnet2.bin import tokenize_text

import espnet_ils  # noqa: F401  (g2p_en placeholder)


def get_parser():
    return tokenize_text.get_parser()


def main(cmd: Optional[List[str]] = None) -> None:
    tokenize_text.main(cmd)


if __name__ == "__main__":
    main()

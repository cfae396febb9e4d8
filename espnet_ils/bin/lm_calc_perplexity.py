#!/usr/bin/env python3
"""ESPnet's LM perplexity (``espnet2.bin.lm_calc_perplexity``, same flags) without its offline
network noise: writes ``<output_dir>/ppl`` (per-token perplexity, ``<sos/eos>`` counted) and
``utt2ppl``."""

from typing import List, Optional

from espnet2.bin import lm_calc_perplexity

import espnet_ils  # noqa: F401  (g2p_en placeholder)


def get_parser():
    return lm_calc_perplexity.get_parser()


def main(cmd: Optional[List[str]] = None) -> None:
    lm_calc_perplexity.main(cmd)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""ESPnet ASR decoding with ILS classes registered: same flags as ``espnet2.bin.asr_inference``.

With ``--lm_train_config``, the LM's files and token list are checked against the ASR model's
first (``espnet_ils.lm_check``): ESPnet fuses an LM of another token list without an error. A beam
wider than the token list is refused: ESPnet's batch beam search takes the top ``beam_size`` of the
first step's ``1 x len(token_list)`` scores and fails inside the search ("selected index k out of
range"), e.g. the paper's beam 50 with 31 letters.
"""

from typing import List, Optional

from espnet2.bin import asr_inference

import espnet_ils  # noqa: F401  (registers our classes)
from espnet_ils.lm_check import check_lm_for_asr, config_token_list


def get_parser():
    return asr_inference.get_parser()


def main(cmd: Optional[List[str]] = None) -> None:
    args = get_parser().parse_args(cmd)
    if args.asr_train_config is not None:
        size = len(config_token_list(args.asr_train_config))
        if args.beam_size > size:
            raise SystemExit(
                f"asr_inference: error: --beam_size {args.beam_size} is wider than the "
                f"{size} tokens of {args.asr_train_config}; ESPnet's beam search keeps at most "
                f"one hypothesis per token at its first step: use --beam_size {size} or less"
            )
    if args.lm_train_config is not None:
        try:
            check_lm_for_asr(args.asr_train_config, args.lm_train_config, args.lm_file)
        except (FileNotFoundError, ValueError) as error:
            raise SystemExit(f"asr_inference: error: {error}") from error
    asr_inference.main(cmd)


if __name__ == "__main__":
    main()

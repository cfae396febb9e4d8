#!/usr/bin/env python3
"""ESPnet ASR decoding with ILS classes registered: same flags as ``espnet2.bin.asr_inference``.

With ``--lm_train_config``, the LM's files and token list are checked against the ASR model's
first (``espnet_ils.decoding.lm_check``): ESPnet fuses an LM of another token list without an error. A beam
as wide as the token list or wider is refused before anything loads: a wider one fails inside
ESPnet's search, one as wide lets the blank in and returns empty output
(``espnet_ils.decoding.transformer_lm.check_beam_size``).
"""

from typing import List, Optional

from espnet2.bin import asr_inference

import espnet_ils  # noqa: F401  (registers our classes)
from espnet_ils.decoding.lm_check import check_lm_for_asr, config_token_list
from espnet_ils.decoding.transformer_lm import check_beam_size


def get_parser():
    return asr_inference.get_parser()


def main(cmd: Optional[List[str]] = None) -> None:
    args = get_parser().parse_args(cmd)
    if args.asr_train_config is not None:
        try:
            check_beam_size(args.beam_size, len(config_token_list(args.asr_train_config)))
        except ValueError as error:
            raise SystemExit(
                f"asr_inference: error: --beam_size: {error} ({args.asr_train_config})"
            ) from error
    if args.lm_train_config is not None:
        try:
            check_lm_for_asr(args.asr_train_config, args.lm_train_config, args.lm_file)
        except (FileNotFoundError, ValueError) as error:
            raise SystemExit(f"asr_inference: error: {error}") from error
    asr_inference.main(cmd)


if __name__ == "__main__":
    main()

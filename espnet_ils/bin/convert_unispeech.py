#!/usr/bin/env python3
"""Convert an original ILS-SSL or HuBERT checkpoint (fairseq) into an ESPnet model directory.

    python -m espnet_ils.bin.convert_unispeech --checkpoint ils_base.pt --outdir exp/ils_base
    python -m espnet_ils.bin.convert_unispeech --checkpoint ils_base_ft.pt --outdir exp/ils_base_ft \\
        --dict dict.ltr.txt
    python -m espnet_ils.bin.convert_unispeech --checkpoint hubert_base_ls960.pt \\
        --outdir exp/hubert_base_ls960

A pretrained (``ils_hubert``) checkpoint becomes an ``ILSSSLTask`` model, a pretrained HuBERT
(``hubert``) one the same with the loss on the top block only, a fine-tuned (``hubert_ctc``) one
an ESPnet CTC ASR model; see ``espnet_ils.converters.unispeech``. Nothing is written to
``--outdir`` unless the whole conversion succeeds.
"""

import argparse
import logging
from pathlib import Path
from typing import List, Optional

import espnet_ils  # noqa: F401  (registers our classes)
from espnet_ils.bin import errors_exit, setup_logging
from espnet_ils.converters.unispeech import convert_unispeech_checkpoint

logger = logging.getLogger("convert_unispeech")


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--checkpoint", type=Path, required=True, help="fairseq .pt file")
    parser.add_argument(
        "--outdir",
        type=Path,
        required=True,
        help="model directory to create (config.yaml, model.pth, tokens.txt); must not exist "
        "or be empty",
    )
    parser.add_argument(
        "--dict",
        type=Path,
        default=None,
        help="fairseq letter dictionary of a fine-tuned checkpoint; None: dict.<label>.txt next "
        "to the checkpoint",
    )
    parser.add_argument("--log_level", default="INFO", choices=["DEBUG", "INFO", "WARNING"])
    return parser


def main(cmd: Optional[List[str]] = None) -> None:
    args = get_parser().parse_args(cmd)
    setup_logging(args, args.log_level)
    with errors_exit("convert_unispeech"):
        convert_unispeech_checkpoint(args.checkpoint, args.outdir, args.dict)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Export an ILS-SSL model's encoder for s3prl as a WavLM checkpoint (Microsoft's format).

    # a pretrained SSL model (ssl_train's experiment, or convert_unispeech's directory)
    python -m espnet_ils.bin.export_s3prl --model_dir exp/ssl_ils_base_it2 \\
        --output exp/s3prl/ils_base.pt
    # a fine-tuned model's SSL encoder, or a released UniSpeech ILS-SSL (or HuBERT) checkpoint
    python -m espnet_ils.bin.export_s3prl --checkpoint ils_base.pt --output exp/s3prl/ils.pt

    # then, in s3prl (0.4.18):
    from s3prl.upstream.wavlm.hubconf import wavlm_local
    upstream = wavlm_local("exp/s3prl/ils_base.pt")   # upstream([wav])["hidden_states"]

See ``espnet_ils.export.s3prl_wavlm`` for what maps onto what. Nothing is written to
``--output`` unless the whole export succeeds and s3prl loads the file.
"""

import argparse
from pathlib import Path
from typing import List, Optional

import espnet_ils  # noqa: F401  (registers our classes)
from espnet_ils.bin import errors_exit, setup_logging
from espnet_ils.export.s3prl_wavlm import export_to_s3prl
from espnet_ils.export.wavlm_source import add_model_arguments, model_arguments


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add_model_arguments(parser)
    parser.add_argument(
        "--output", type=Path, required=True, help=".pt file to create; must be new"
    )
    parser.add_argument("--log_level", default="INFO", choices=["DEBUG", "INFO", "WARNING"])
    return parser


def main(cmd: Optional[List[str]] = None) -> None:
    args = get_parser().parse_args(cmd)
    setup_logging(args, args.log_level)
    with errors_exit("export_s3prl"):
        export_to_s3prl(args.output, **model_arguments(args))


if __name__ == "__main__":
    main()

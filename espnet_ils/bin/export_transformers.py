#!/usr/bin/env python3
"""Export an ILS-SSL model to Hugging Face transformers as WavLM (WavLMModel or WavLMForCTC).

    # a pretrained SSL model (ssl_train's experiment, or convert_unispeech's directory)
    python -m espnet_ils.bin.export_transformers --model_dir exp/ssl_ils_base_it2 \\
        --output_dir exp/hf/ils_base
    # a fine-tuned CTC model: WavLMForCTC + tokenizer + processor (pipeline("automatic-speech-
    # recognition") transcribes with it); --encoder_only gives its SSL encoder as WavLMModel
    python -m espnet_ils.bin.export_transformers --model_dir exp/asr_ils_base_10h \\
        --model_file exp/asr_ils_base_10h/valid.cer_ctc.best.pth --output_dir exp/hf/ils_base_10h
    # a released UniSpeech ILS-SSL (or HuBERT) checkpoint, converted on the way
    python -m espnet_ils.bin.export_transformers --checkpoint ils_base.pt --output_dir exp/hf/ils

The directory loads offline with ``transformers.AutoModel.from_pretrained(output_dir)``; see
``espnet_ils.export.transformers_wavlm`` for what maps onto what and what is refused. Nothing
is written to ``--output_dir`` unless the whole export succeeds.
"""

import argparse
from pathlib import Path
from typing import List, Optional

import espnet_ils  # noqa: F401  (registers our classes)
from espnet_ils.bin import errors_exit, setup_logging
from espnet_ils.export.transformers_wavlm import export_to_transformers
from espnet_ils.export.wavlm_source import add_model_arguments, model_arguments


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add_model_arguments(parser)
    parser.add_argument(
        "--encoder_only",
        action="store_true",
        help="export a fine-tuned model's SSL encoder as WavLMModel, without the CTC head",
    )
    parser.add_argument(
        "--output_dir", type=Path, required=True, help="directory to create; must be new or empty"
    )
    parser.add_argument("--log_level", default="INFO", choices=["DEBUG", "INFO", "WARNING"])
    return parser


def main(cmd: Optional[List[str]] = None) -> None:
    args = get_parser().parse_args(cmd)
    setup_logging(args, args.log_level)
    with errors_exit("export_transformers"):
        export_to_transformers(
            args.output_dir, encoder_only=args.encoder_only, **model_arguments(args)
        )


if __name__ == "__main__":
    main()

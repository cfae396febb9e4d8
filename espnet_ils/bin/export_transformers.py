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
import logging
from pathlib import Path
from typing import List, Optional

import espnet_ils  # noqa: F401  (registers our classes)
from espnet_ils.bin import setup_logging
from espnet_ils.export.transformers_wavlm import export_to_transformers

logger = logging.getLogger("export_transformers")


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--model_dir",
        type=Path,
        default=None,
        help="ESPnet model: an experiment or converted directory (config.yaml and model.pth or "
        "valid.loss.best.pth) or an unpacked ESPnet model (meta.yaml)",
    )
    parser.add_argument("--config", type=Path, default=None, help="config.yaml to use instead")
    parser.add_argument("--model_file", type=Path, default=None, help="weights to use instead")
    parser.add_argument(
        "--checkpoint",
        type=Path,
        default=None,
        help="instead of an ESPnet model: a fairseq ILS-SSL / HuBERT .pt (convert_unispeech)",
    )
    parser.add_argument(
        "--dict",
        type=Path,
        default=None,
        help="letter dictionary of a fine-tuned --checkpoint; None: dict.<label>.txt beside it",
    )
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
    try:
        export_to_transformers(
            args.output_dir,
            model_dir=args.model_dir,
            config=args.config,
            model_file=args.model_file,
            checkpoint=args.checkpoint,
            dictionary=args.dict,
            encoder_only=args.encoder_only,
        )
    except ValueError as error:
        raise SystemExit(f"export_transformers: error: {error}") from error


if __name__ == "__main__":
    main()

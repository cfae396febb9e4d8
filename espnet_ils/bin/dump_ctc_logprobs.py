#!/usr/bin/env python3
"""Compute the CTC log-probs of a fine-tuned ESPnet ASR model once, for lexicon/LM decoding.

    ${decode_cmd} JOB=1:${nj} ${dir}/log/dump_ctc_logprobs.JOB.log \
        python -m espnet_ils.bin.dump_ctc_logprobs --asr_train_config ${asr_exp}/config.yaml \
            --asr_model_file ${asr_exp}/valid.cer_ctc.best.pth --wav_scp dump/raw/dev_clean/wav.scp \
            --outdir ${asr_exp}/ctc_logprobs/dev_clean --nj ${nj} --job JOB

Writes ``feats.JOB.{ark,scp}`` (``utt`` -> ``(T, V)`` float32 log-softmax, V the model's tokens)
and ``.done.JOB`` last, with the checksums of the wav.scp, config and model; a finished shard with
the same identity is skipped.
"""

import argparse
import logging
from pathlib import Path
from typing import List, Optional

import espnet_ils  # noqa: F401  (registers our classes before the model is built)
from espnet_ils.bin import add_shard_arguments, errors_exit, setup_logging
from espnet_ils.decoding.ctc_logprobs import dump_ctc_logprobs

logger = logging.getLogger("espnet_ils.dump_ctc_logprobs")


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--asr_train_config", type=Path, required=True, help="config.yaml of the ASR model"
    )
    parser.add_argument("--asr_model_file", type=Path, required=True, help="its weights (.pth)")
    parser.add_argument("--wav_scp", type=Path, required=True, help="Kaldi wav.scp (16 kHz mono)")
    parser.add_argument("--outdir", type=Path, required=True, help="writes feats.JOB.{ark,scp}")
    add_shard_arguments(parser)
    parser.add_argument("--device", default="cpu", help="e.g. cpu, cuda, cuda:0")
    return parser


def main(cmd: Optional[List[str]] = None) -> None:
    args = get_parser().parse_args(cmd)
    setup_logging(args)
    with errors_exit("dump_ctc_logprobs"):
        dump_ctc_logprobs(
            args.asr_train_config,
            args.asr_model_file,
            args.wav_scp,
            args.outdir,
            args.nj,
            args.job,
            args.device,
        )


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Derive the HuBERT baseline from an ILS pretraining config: supervise the top block only.

Everything else (encoder, relative bias, labels, steps, seeds) stays identical, so the two arms of a
comparison differ only in the paper's variable, the set of supervised layers K.
"""

import argparse
import logging
from pathlib import Path
from typing import Dict, List, Optional

import yaml

from espnet_ils.data.kaldi_files import write_text_atomic
from espnet_ils.train.registration import LOSS_NAME

logger = logging.getLogger("espnet_ils.derive_baseline_config")


def baseline_config(config: Dict) -> Dict:
    """A copy of ``config`` whose ILS loss supervises ``num_blocks`` only (``layers: [N]``)."""
    try:
        num_blocks = int(config["encoder_conf"]["num_blocks"])
        losses = config["loss"]
    except (KeyError, TypeError) as error:
        raise ValueError(f"config has no encoder_conf.num_blocks or loss list: {error}") from error
    ils = [loss for loss in losses if loss.get("name") == LOSS_NAME]
    if len(ils) != 1:
        raise ValueError(f"config must have exactly one '{LOSS_NAME}' loss; found {len(ils)}")
    derived = yaml.safe_load(yaml.safe_dump(config))
    for loss in derived["loss"]:
        if loss.get("name") == LOSS_NAME:
            loss.setdefault("conf", {})["layers"] = [num_blocks]
    return derived


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", type=Path, required=True, help="ILS pretraining config")
    parser.add_argument("--output", type=Path, required=True, help="Baseline config to write")
    return parser


def main(cmd: Optional[List[str]] = None) -> None:
    args = get_parser().parse_args(cmd)
    derived = baseline_config(yaml.safe_load(args.config.read_text()))
    header = (
        f"# Derived from {args.config} by espnet_ils.bin.derive_baseline_config: top block only."
    )
    write_text_atomic(args.output, [header, yaml.safe_dump(derived, sort_keys=False)])


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Check an SSL pretraining config against the pipeline's options before any work starts.

    cd egs2/librispeech_ils/ssl1
    python -m espnet_ils.bin.check_ssl_config --config conf/tuning/train_ssl_ils_base_it2.yaml \
        --num_classes 500 --option=--it2_n_clusters

Exits with a message naming the option when the config's ILS loss does not predict ``num_classes``
clusters (the k-means size the pipeline will produce).
"""

import argparse
import sys
from pathlib import Path
from typing import List, Optional

import yaml

from espnet_ils.registration import LOSS_NAME


def check(config: Path, num_classes: int, option: str) -> Optional[str]:
    """An error message, or None when the config fits."""
    conf = yaml.safe_load(config.read_text())
    losses = [loss for loss in conf.get("loss") or [] if loss.get("name") == LOSS_NAME]
    if not losses:
        return f"{config}: no '{LOSS_NAME}' loss in the config"
    for loss in losses:
        found = (loss.get("conf") or {}).get("num_classes")
        if found != num_classes:
            return (
                f"{option} {num_classes} but {config} has num_classes: {found}; "
                f"make them equal (the loss predicts the k-means clusters)"
            )
    return None


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--num_classes", type=int, required=True)
    parser.add_argument(
        "--option",
        default="--num_classes",
        help="Pipeline option to name in errors; a value that starts with '--' needs the '=' "
        "form (--option=--it2_n_clusters)",
    )
    return parser


def main(cmd: Optional[List[str]] = None) -> None:
    args = get_parser().parse_args(cmd)
    error = check(args.config, args.num_classes, args.option)
    if error:
        print(f"Error: {error}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()

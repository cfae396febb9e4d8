#!/usr/bin/env python3
"""Print the parameter count of an SSL model config, with and without the prediction heads.

    python -m espnet_ils.bin.count_params egs2/librispeech_ils/ssl1/conf/tuning/train_ssl_ils_base_it2.yaml

The heads (the losses' projections and codeword tables) are removed after pretraining, so the
count without them is the size of the model that is fine-tuned (paper table 2: 94.68M for BASE).
"""

import argparse
from typing import Dict, List, Optional

from espnet2.ssl.espnet_model import ESPnetSSLModel

import espnet_ils  # noqa: F401  (registers our classes)
from espnet_ils.bin import setup_logging
from espnet_ils.data.labels import cluster_token_list
from espnet_ils.train.tasks import ILSSSLTask


def count_parameters(model: ESPnetSSLModel) -> Dict[str, int]:
    """Parameter counts: ``total``, ``heads`` (all SSL losses) and ``without_heads``."""
    total = sum(p.numel() for p in model.parameters())
    heads = sum(p.numel() for p in model.losses.parameters())
    return {"total": total, "heads": heads, "without_heads": total - heads}


def build_from_config(config: str) -> ESPnetSSLModel:
    """Build the SSL model of ``config`` with a token list that fits its first loss."""
    args = ILSSSLTask.get_parser().parse_args(["--config", config])
    num_classes = args.loss[0]["conf"]["num_classes"]
    args.token_list = cluster_token_list(num_classes)
    return ILSSSLTask.build_model(args)


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("configs", nargs="+", help="SSL training configs (YAML)")
    return parser


def main(cmd: Optional[List[str]] = None) -> None:
    args = get_parser().parse_args(cmd)
    setup_logging(args, "WARNING")
    for config in args.configs:
        counts = count_parameters(build_from_config(config))
        print(
            f"{config}: {counts['without_heads'] / 1e6:.2f}M without heads, "
            f"{counts['total'] / 1e6:.2f}M with heads ({counts['heads'] / 1e6:.2f}M in heads)"
        )


if __name__ == "__main__":
    main()

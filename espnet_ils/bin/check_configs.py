#!/usr/bin/env python3
"""Build the recipe's pretraining and fine-tuning configs once before any work starts (CPU).

    python -m espnet_ils.bin.check_configs \\
        --it1_config conf/tuning/train_ssl_hubert_base_it1.yaml --it1_n_clusters 100 \\
        --it2_config conf/tuning/train_ssl_ils_base_it2.yaml --it2_n_clusters 500 \\
        --asr_config conf/tuning/train_asr_ctc_base_10h.yaml

Exits 1 with the config's own error, naming the recipe option, when a config cannot be used.
Without ``--it1_config`` (a run whose targets come from ``ils.sh --label_model``) only the
iteration-2 and fine-tuning configs are built.
"""

import argparse
import logging
import sys
from pathlib import Path
from typing import List, Optional

from espnet_ils.config_check import ConfigError, check_pipeline_configs


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--it1_config",
        type=Path,
        default=None,
        help="iteration 1's config; left out when its targets come from another model",
    )
    parser.add_argument("--it1_n_clusters", type=int, default=100)
    parser.add_argument("--it2_config", type=Path, required=True)
    parser.add_argument("--it2_n_clusters", type=int, required=True)
    parser.add_argument("--asr_config", type=Path, required=True)
    return parser


def main(cmd: Optional[List[str]] = None) -> None:
    args = get_parser().parse_args(cmd)
    logging.basicConfig(
        level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s"
    )
    try:
        check_pipeline_configs(
            args.it1_config,
            args.it1_n_clusters,
            args.it2_config,
            args.it2_n_clusters,
            args.asr_config,
        )
    except ConfigError as error:
        print(f"Error: {error}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()

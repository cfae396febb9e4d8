#!/usr/bin/env python3
"""Build the recipe's pretraining and fine-tuning configs once before any work starts (CPU).

    python -m espnet_ils.bin.check_configs \\
        --it1_config conf/tuning/train_ssl_hubert_base_it1.yaml --it1_n_clusters 100 \\
        --it2_config conf/tuning/train_ssl_ils_base_it2.yaml --it2_n_clusters 500 \\
        --asr_config conf/tuning/train_asr_ctc_base_10h.yaml

Exits 1 with the config's own error, naming the recipe option, when a config cannot be used.
Without ``--it1_config`` (a run whose targets come from ``ils.sh --label_model``) only the
iteration-2 and fine-tuning configs are built. With ``--transformers_export true`` (``ils.sh
--hf_repo`` with ``--hf_transformers true``) the fine-tuned model must also be one that stage 12 can
export to transformers' WavLMForCTC.

With ``--marker`` a check that passed before with the same options and config contents is skipped
before ESPnet is imported (10 of the 15 s it takes on 2 cores). The marker is written after a
passing check only into a folder that exists: ils.sh keeps it in ``--expdir``, which a run stopped
by a bad option must not leave behind, so a fresh expdir's first run checks without writing it.
"""

import argparse
import logging
import sys
from pathlib import Path
from typing import List, Optional

from espnet_ils.data.markers import file_checksum, step_identity, up_to_date, write_marker


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
    parser.add_argument(
        "--transformers_export",
        choices=["true", "false"],
        default="false",
        help="stage 12 exports the fine-tuned models to transformers: check that it can",
    )
    parser.add_argument(
        "--marker", type=Path, default=None, help="skip when it holds these options and configs"
    )
    return parser


def check_identity(args: argparse.Namespace) -> dict:
    """The options and the checksums of the configs a check is made from."""
    configs = {"it1": args.it1_config, "it2": args.it2_config, "asr": args.asr_config}
    return step_identity(
        {
            "it1_n_clusters": args.it1_n_clusters,
            "it2_n_clusters": args.it2_n_clusters,
            "transformers_export": args.transformers_export,
        },
        {name: file_checksum(path) for name, path in configs.items() if path is not None},
    )


def main(cmd: Optional[List[str]] = None) -> None:
    args = get_parser().parse_args(cmd)
    logging.basicConfig(
        level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s"
    )
    identity = check_identity(args) if args.marker is not None else None
    if identity is not None and up_to_date(args.marker, identity, "the configs' check"):
        return
    from espnet_ils.recipe.config_check import ConfigError, check_pipeline_configs  # ESPnet: 10 s

    try:
        check_pipeline_configs(
            args.it1_config,
            args.it1_n_clusters,
            args.it2_config,
            args.it2_n_clusters,
            args.asr_config,
            transformers_export=args.transformers_export == "true",
        )
    except ConfigError as error:
        print(f"Error: {error}", file=sys.stderr)
        sys.exit(1)
    if identity is not None and args.marker.parent.is_dir():
        write_marker(args.marker, identity)


if __name__ == "__main__":
    main()

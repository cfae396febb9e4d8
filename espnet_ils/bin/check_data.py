#!/usr/bin/env python3
"""Check that the formatted sets hold what the recipe's later stages need, naming every shortfall.

    python -m espnet_ils.bin.check_data --raw_dir dump/raw --stage 3 --stop_stage 12 \\
        --train_set train_960 --valid_set dev_clean --finetune_set finetune_10h \\
        --test_sets "test_clean test_other" --transcribed_set train_960 --probe_tasks "pr sid" ...

ils.sh runs it at the end of stage 2 and before a run that starts after stage 2, with its own
options (``espnet_ils.recipe.data_requirements`` lists the needs). Exit status 1, one error line per
unmet need (the set, what it holds, the stage and option that need more), when any is unmet.
"""

import argparse
import logging
import sys
from pathlib import Path
from typing import List, Optional

from espnet_ils.bin import add_run_arguments, optional_path, setup_logging, words
from espnet_ils.recipe.data_requirements import DataOptions, check_data

logger = logging.getLogger("espnet_ils.check_data")


def true_or_false(value: str) -> bool:
    if value not in ("true", "false"):
        raise argparse.ArgumentTypeError(f"'{value}': true or false")
    return value == "true"


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    add = parser.add_argument
    add("--raw_dir", type=Path, required=True, help="the formatted sets (<dumpdir>/raw)")
    add("--stage", type=int, required=True, help="first stage whose needs are checked")
    add("--stop_stage", type=int, required=True, help="last stage whose needs are checked")
    add("--transcribed_set", required=True, help="the set the LMs learn by default")
    add("--seed", type=int, default=0)
    add("--it1_n_clusters", type=int, default=100)
    add("--it2_n_clusters", type=int, default=500)
    add("--it2_layer_auto", type=true_or_false, default=False, help="--it2_layer auto")
    add("--it2_encoder", default="ils_transformer", help="the encoder of --it2_config")
    add("--quality_sets", type=words, default=[])
    add("--quality_fit_hours", type=float, default=1.0)
    add("--quality_n_clusters", type=int, default=500)
    add("--phone_alignments", type=optional_path, default=None)
    add("--probe_pr_train_set", default="")
    add("--probe_sid_set", default="")
    add("--ngram_text", type=optional_path, default=None)
    add("--lm_train_text", type=words, default=[])
    add_run_arguments(parser)
    return parser


def main(cmd: Optional[List[str]] = None) -> None:
    args = get_parser().parse_args(cmd)
    setup_logging(args)
    options = vars(args).copy()
    raw_dir, stage, stop_stage = (options.pop(name) for name in ("raw_dir", "stage", "stop_stage"))
    problems = check_data(DataOptions(**options), raw_dir, stage, stop_stage)
    for problem in problems:
        logger.error("%s", problem)
    if problems:
        sys.exit(1)
    logger.info("%s: the needs of stages %d-%d are met", raw_dir, stage, stop_stage)


if __name__ == "__main__":
    main()

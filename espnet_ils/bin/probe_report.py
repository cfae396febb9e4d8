#!/usr/bin/env python3
"""Score the frozen probes of every run and plot the layer weights they learned, per arm.

Reads the run manifest (``exp/runs.tsv``), each run's probe experiments (decodings and
checkpoint) and the references where ``espnet_ils.analysis.probes.ProbeLayout`` puts them under the
recipe's roots; writes ``probes.tsv`` (PER and accuracy per run), ``layer_weights.tsv`` and
``layer_weights.png`` into the probes' experiments folder:

    python -m espnet_ils.bin.probe_report --runs exp/runs.tsv --dumpdir dump --expdir exp \
        --it2_tag it2_L6_km500 --probe_tasks "pr sid" --test_sets "test_clean test_other"

The phone probe is scored on ``--test_sets``, the speaker probe on its held-out utterances.
"""

import argparse
import logging
from pathlib import Path
from typing import List, Optional

from espnet_ils.analysis.comparison import read_runs
from espnet_ils.analysis.probes import (
    plot_layer_weights,
    probe_test_sets,
    score_probes,
    write_layer_weights,
    write_probe_results,
)
from espnet_ils.bin import setup_logging
from espnet_ils.bin.probe_layout import (
    add_layout_arguments,
    add_task_arguments,
    check_tasks,
    layout_of,
)

logger = logging.getLogger("espnet_ils.probe_report")


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=Path, required=True, help="Run manifest (exp/runs.tsv)")
    add_layout_arguments(parser)
    add_task_arguments(parser)
    parser.add_argument("--checkpoint", default="valid.loss.best.pth", help="Probe checkpoint")
    return parser


def main(cmd: Optional[List[str]] = None) -> None:
    parser = get_parser()
    args = parser.parse_args(cmd)
    check_tasks(parser, args)
    setup_logging(args)
    layout = layout_of(args)
    test_sets = {task: probe_test_sets(task, args.test_sets) for task in args.probe_tasks}
    rows, weights = score_probes(read_runs(args.runs), layout, test_sets, args.checkpoint)
    write_probe_results(rows, layout.results)
    write_layer_weights(weights, layout.weights_table)
    plot_layer_weights(weights, layout.weights_plot)
    for row in rows:
        logger.info("%s %s: %.2f", row["model"], row["metric"], row["value"])
    logger.info("wrote %s, %s, %s", layout.results, layout.weights_table, layout.weights_plot)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Score the frozen probes of every run and plot the layer weights they learned, per arm.

Reads the run manifest (``exp/runs.tsv``), each run's probe experiments
``<probe_dir>/<task>_<run>`` (decodings and checkpoint, see ``espnet_ils.analysis.probes``) and the
references; writes ``<probe_dir>/probes.tsv`` (PER and accuracy per run), ``layer_weights.tsv``
and ``layer_weights.png``:

    python -m espnet_ils.bin.probe_report --runs exp/runs.tsv --probe_dir exp/probes_it2_L6_km500 \
        --reference pr test_clean dump/probe/pr/test_clean/text \
        --reference sid test dump/probe/sid/test/text
"""

import argparse
import logging
from pathlib import Path
from typing import Dict, List, Optional

from espnet_ils.analysis.comparison import read_runs
from espnet_ils.analysis.probes import (
    PROBE_TASKS,
    plot_layer_weights,
    score_probes,
    write_layer_weights,
    write_probe_results,
)
from espnet_ils.bin import setup_logging

logger = logging.getLogger("espnet_ils.probe_report")


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=Path, required=True, help="Run manifest (exp/runs.tsv)")
    parser.add_argument("--probe_dir", type=Path, required=True, help="The probes' experiments")
    parser.add_argument(
        "--reference",
        nargs=3,
        action="append",
        required=True,
        metavar=("TASK", "SET", "TEXT"),
        help=f"A probe task ({', '.join(PROBE_TASKS)}), a test set, its reference text",
    )
    parser.add_argument("--checkpoint", default="valid.loss.best.pth", help="Probe checkpoint")
    return parser


def main(cmd: Optional[List[str]] = None) -> None:
    args = get_parser().parse_args(cmd)
    setup_logging(args)
    references: Dict[str, Dict[str, Path]] = {}
    for task, dset, text in args.reference:
        references.setdefault(task, {})[dset] = Path(text)
    rows, weights = score_probes(read_runs(args.runs), args.probe_dir, references, args.checkpoint)
    write_probe_results(rows, args.probe_dir / "probes.tsv")
    write_layer_weights(weights, args.probe_dir / "layer_weights.tsv")
    plot_layer_weights(weights, args.probe_dir / "layer_weights.png")
    for row in rows:
        logger.info("%s %s: %.2f", row["model"], row["metric"], row["value"])
    logger.info("wrote %s/{probes.tsv,layer_weights.tsv,layer_weights.png}", args.probe_dir)


if __name__ == "__main__":
    main()

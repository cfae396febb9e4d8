#!/usr/bin/env python3
"""Compare the arms of an experiment over seeds: error rates per decode mode, PNMI per layer, probes.

Reads the run manifest the recipe writes (``exp/runs.tsv``), each run's scored decodings
(``<asr_exp>/decode_<mode>/<test_set>/score_{cer,wer}/result.txt``) and, when given, stage 7's
cluster-quality and probe TSVs; writes the markdown table (see ``espnet_ils.analysis.comparison``) and prints it:

    python -m espnet_ils.bin.compare_runs --runs exp/runs.tsv --test_set test \
        --decode_modes greedy ngram --cluster_quality exp/cluster_quality_it2_L6_km500/cluster_quality.tsv \
        --output exp/comparison_test.md
"""

import argparse
import logging
from pathlib import Path
from typing import List, Optional

from espnet_ils.analysis.comparison import collect, comparison_table, read_runs
from espnet_ils.bin import setup_logging
from espnet_ils.data.kaldi_files import write_text_atomic

logger = logging.getLogger("espnet_ils.compare_runs")


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=Path, required=True, help="Run manifest (exp/runs.tsv)")
    parser.add_argument("--test_set", required=True)
    parser.add_argument("--decode_modes", nargs="+", default=["greedy"], help="rows per mode")
    parser.add_argument("--cluster_quality", type=Path, help="cluster_quality.tsv of stage 7")
    parser.add_argument("--probes", type=Path, help="probes.tsv of stage 7 (PER, SID accuracy)")
    parser.add_argument("--output", type=Path, required=True, help="Markdown table to write")
    return parser


def main(cmd: Optional[List[str]] = None) -> None:
    args = get_parser().parse_args(cmd)
    setup_logging(args)
    runs = read_runs(args.runs)
    values = collect(runs, args.decode_modes, args.test_set, args.cluster_quality, args.probes)
    lines = comparison_table(values, list(dict.fromkeys(run.arm for run in runs)))
    write_text_atomic(args.output, lines)
    print("\n".join(lines))
    logger.info("wrote %s", args.output)


if __name__ == "__main__":
    main()

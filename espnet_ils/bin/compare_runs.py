#!/usr/bin/env python3
"""Summarise an ILS vs HuBERT comparison: error rates and per-layer PNMI, with the seed spread.

Reads what the pipeline wrote for runs ``<arm>_seed<seed>``: ``score_{cer,wer}/result.txt`` of each
fine-tuned run's decoding directory and the cluster-quality TSV of stage 7. For every metric it prints
each arm's mean over seeds with the spread (max - min over seeds), and the ILS - HuBERT difference
next to the larger of the two spreads, so that a difference within the seed-to-seed spread reads as
what it is. With one seed per arm there is no spread, and the table says so.
"""

import argparse
import csv
import logging
import re
from pathlib import Path
from typing import Dict, List, Optional

from espnet_ils.bin import setup_logging
from espnet_ils.kaldi_files import write_text_atomic

logger = logging.getLogger("espnet_ils.demo_report")
RUN = re.compile(r"^(?P<arm>[a-z]+)_seed(?P<seed>\d+)$")


def error_rate(result: Path) -> float:
    """The Err column of a score result.txt (percent)."""
    row = result.read_text().strip().splitlines()[-1].strip("|").split("|")
    return float(row[7])


def collect(
    asr_exps: Dict[str, Path], decodes: List[str], test_set: str, quality: Optional[Path]
) -> Dict[str, Dict[str, Dict[int, float]]]:
    """``{metric: {arm: {seed: value}}}`` for CER and WER of each decode mode, PNMI per layer."""
    values: Dict[str, Dict[str, Dict[int, float]]] = {}

    def put(metric: str, run: str, value: float) -> None:
        match = RUN.match(run)
        if not match:
            raise ValueError(f"run name {run!r} is not <arm>_seed<seed>")
        values.setdefault(metric, {}).setdefault(match["arm"], {})[int(match["seed"])] = value

    for decode in decodes:
        for metric in ("cer", "wer"):
            for run, exp in asr_exps.items():
                result = exp / f"decode_{decode}" / test_set / f"score_{metric}" / "result.txt"
                if not result.is_file():
                    raise FileNotFoundError(f"{result}: run the scoring stage first")
                put(f"{metric.upper()} {decode} (%)", run, error_rate(result))
    if quality is not None and quality.is_file():
        with quality.open() as f:
            for row in csv.DictReader(f, delimiter="\t"):
                if row["model"] in asr_exps:
                    put(f"PNMI layer {row['layer']}", row["model"], float(row["pnmi"]))
    return values


def table(values: Dict[str, Dict[str, Dict[int, float]]], arms: List[str]) -> List[str]:
    seeds = sorted(
        {seed for per_arm in values.values() for runs in per_arm.values() for seed in runs}
    )
    header = ["metric", *[f"{arm} (mean, spread)" for arm in arms]]
    if len(arms) == 2:
        header += [f"{arms[0]} - {arms[1]}", "vs. seed spread"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for metric, per_arm in values.items():
        cells, means, spreads = [metric], [], []
        for arm in arms:
            runs = per_arm.get(arm, {})
            if not runs:
                cells.append("-")
                continue
            mean = sum(runs.values()) / len(runs)
            spread = max(runs.values()) - min(runs.values())
            means.append(mean)
            spreads.append(spread)
            cells.append(
                f"{mean:.3f} ({spread:.3f})" if len(runs) > 1 else f"{mean:.3f} (one seed)"
            )
        if len(arms) == 2 and len(means) == 2:
            difference = means[0] - means[1]
            cells.append(f"{difference:+.3f}")
            if len(seeds) < 2:
                cells.append("no spread measured (one seed)")
            else:
                spread = max(spreads)
                cells.append(
                    f"{'beyond' if abs(difference) > spread else 'within'} spread {spread:.3f}"
                )
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--run",
        nargs=2,
        action="append",
        metavar=("NAME", "ASR_EXP"),
        required=True,
        help="<arm>_seed<seed> and its fine-tuning experiment (repeatable)",
    )
    parser.add_argument("--test_set", required=True)
    parser.add_argument("--decode_modes", nargs="+", default=["greedy"], help="rows per mode")
    parser.add_argument("--cluster_quality", type=Path, help="cluster_quality.tsv of stage 7")
    parser.add_argument("--output", type=Path, help="Also write the table here (markdown)")
    return parser


def main(cmd: Optional[List[str]] = None) -> None:
    args = get_parser().parse_args(cmd)
    setup_logging(args)
    asr_exps = {name: Path(exp) for name, exp in args.run}
    arms = list(dict.fromkeys(RUN.match(name)["arm"] for name in asr_exps if RUN.match(name)))
    values = collect(asr_exps, args.decode_modes, args.test_set, args.cluster_quality)
    lines = table(values, arms)
    if args.output:
        write_text_atomic(args.output, lines)
    print("\n".join(lines))


if __name__ == "__main__":
    main()

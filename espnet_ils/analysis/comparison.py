"""Compare the arms of an experiment (ILS vs the HuBERT baseline) over seeds, as a markdown table.

The runs come from the manifest the recipe writes (``exp/runs.tsv``: one row per run with its arm,
seed and experiment directories), not from directory names. For each metric, the table gives each
arm's mean over seeds with the spread (max - min over seeds) and, for two arms, their difference
next to the larger of the two spreads, so that a difference within the seed-to-seed spread reads as
what it is. With one seed per arm there is no spread, and the table says so.
"""

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

RUN_COLUMNS = ("run", "arm", "seed", "iteration", "ssl_exp", "asr_exp")
# {metric: {arm: {seed: value}}}
Values = Dict[str, Dict[str, Dict[int, float]]]


@dataclass(frozen=True)
class Run:
    """One pretraining + fine-tuning run of the manifest."""

    name: str  # e.g. ils_seed0; the model name in the cluster-quality table
    arm: str  # ils or hubert
    seed: int
    asr_exp: Path


def read_runs(manifest: Path) -> List[Run]:
    """The runs of a manifest (TSV with a header naming at least ``RUN_COLUMNS``)."""
    if not Path(manifest).is_file():
        raise FileNotFoundError(
            f"{manifest}: no run manifest; the recipe writes it from stage 6 on"
        )
    with open(manifest, encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f, delimiter="\t")
        missing = [c for c in RUN_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"{manifest}: missing columns {missing}; expected {RUN_COLUMNS}")
        runs = []
        for number, row in enumerate(reader, start=2):
            if not row["seed"].isdigit():
                raise ValueError(f"{manifest}:{number}: seed {row['seed']!r} is not an integer")
            runs.append(Run(row["run"], row["arm"], int(row["seed"]), Path(row["asr_exp"])))
    if not runs:
        raise ValueError(f"{manifest}: no runs")
    return runs


def error_rate(result: Path) -> float:
    """The Err column (percent) of the last row of an ESPnet/sclite ``result.txt``."""
    row = result.read_text().strip().splitlines()[-1].strip("|").split("|")
    return float(row[7])


def collect(
    runs: Sequence[Run],
    decode_modes: Sequence[str],
    test_set: str,
    quality: Optional[Path],
    probes: Optional[Path] = None,
) -> Values:
    """CER and WER of each decode mode on ``test_set``, PNMI per layer from the cluster-quality
    TSV, and the probes' PER and speaker-identification accuracy from the probe TSV of
    ``espnet_ils.analysis.probes`` (in both, rows whose model is a run's name), for every run."""
    values: Values = {}

    def put(metric: str, run: Run, value: float) -> None:
        values.setdefault(metric, {}).setdefault(run.arm, {})[run.seed] = value

    for mode in decode_modes:
        for metric in ("cer", "wer"):
            for run in runs:
                result = (
                    run.asr_exp / f"decode_{mode}" / test_set / f"score_{metric}" / "result.txt"
                )
                if not result.is_file():
                    raise FileNotFoundError(f"{result}: run the scoring stage first")
                put(f"{metric.upper()} {mode} (%)", run, error_rate(result))
    by_name = {run.name: run for run in runs}

    def rows_of_runs(table: Optional[Path]) -> Iterator[Tuple[Run, Dict[str, str]]]:
        """The rows of a stage-7 TSV whose ``model`` is one of the runs (none without the TSV)."""
        if table is None or not table.is_file():
            return
        with table.open(encoding="utf-8", newline="") as f:
            for row in csv.DictReader(f, delimiter="\t"):
                if row["model"] in by_name:
                    yield by_name[row["model"]], row

    for run, row in rows_of_runs(quality):
        put(f"PNMI layer {row['layer']}", run, float(row["pnmi"]))
    for run, row in rows_of_runs(probes):
        put(row["metric"], run, float(row["value"]))
    return values


def comparison_table(values: Values, arms: Sequence[str]) -> List[str]:
    """Markdown lines: one row per metric, each arm's mean (spread), and for two arms the first
    minus the second against the larger spread."""
    seeds = {seed for per_arm in values.values() for runs in per_arm.values() for seed in runs}
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
            means.append(sum(runs.values()) / len(runs))
            spreads.append(max(runs.values()) - min(runs.values()))
            cells.append(
                f"{means[-1]:.3f} ({spreads[-1]:.3f})"
                if len(runs) > 1
                else f"{means[-1]:.3f} (one seed)"
            )
        if len(arms) == 2 and len(means) == 2:
            difference = means[0] - means[1]
            cells.append(f"{difference:+.3f}")
            if len(seeds) < 2:
                cells.append("no spread measured (one seed)")
            else:
                verdict = "beyond" if abs(difference) > max(spreads) else "within"
                cells.append(f"{verdict} spread {max(spreads):.3f}")
        lines.append("| " + " | ".join(cells) + " |")
    return lines

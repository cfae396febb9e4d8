#!/usr/bin/env python3
"""Print where stage 7 keeps the probes' data and experiments (``espnet_ils.analysis.probes.ProbeLayout``).

    python -m espnet_ils.bin.probe_layout --dumpdir dump --expdir exp --it2_tag it2_L6_km500 \\
        --probe_tasks "pr sid" --runs "ils_seed0 hubert_seed0" --pr_train_set train_10h \\
        --valid_set dev_clean --test_sets "test_clean test_other"

One ``key<TAB>value`` line per path, for ils.sh to read into an associative array (the one entry
point whose stdout carries data: the paths are what it is asked for). Per task (``pr``, ``sid``):

    <task>/data, <task>/tokens, <task>/done   the data folder, its token list and marker
    <task>/sets                               its set names, space-separated (train, valid, tests)
    <task>/train, <task>/valid                the data folders it learns from and validates on
    <task>/tests                              the names of the sets it is scored on
    <task>/set/<set>                          the data folder of each of its sets
    <task>/exp/<run>                          one run's probe experiment
    <task>/decode/<run>/<set>                 where it decodes a test set (marker: <that>.done)

and ``exp``, the probes' experiments folder, and ``results``, its ``probes.tsv``. It imports
neither torch nor ESPnet.
"""

import argparse
from pathlib import Path
from typing import Dict, List, Optional

from espnet_ils.analysis.probes import PROBE_TASKS, ProbeLayout, probe_sets


def add_layout_arguments(parser: argparse.ArgumentParser) -> None:
    """The recipe's roots the layout derives from (``ProbeLayout.of_recipe``)."""
    parser.add_argument("--dumpdir", type=Path, required=True, help="ils.sh's --dumpdir")
    parser.add_argument("--expdir", type=Path, required=True, help="ils.sh's --expdir")
    parser.add_argument("--it2_tag", required=True, help="iteration 2's tag, e.g. it2_L6_km500")


def add_task_arguments(parser: argparse.ArgumentParser) -> None:
    """``--probe_tasks`` and ``--test_sets``, space-separated as ils.sh's options are."""
    parser.add_argument(
        "--probe_tasks", type=str.split, default=[], help=f"some of {', '.join(PROBE_TASKS)}"
    )
    parser.add_argument("--test_sets", type=str.split, default=[], help="the phone probe's")


def check_tasks(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Stop on an unknown task, or on the phone probe without the test sets it is scored on."""
    unknown = [task for task in args.probe_tasks if task not in PROBE_TASKS]
    if unknown:
        parser.error(f"--probe_tasks {' '.join(args.probe_tasks)}: {unknown} not in {PROBE_TASKS}")
    if "pr" in args.probe_tasks and not args.test_sets:
        parser.error("--probe_tasks pr: give the --test_sets it is scored on")


def layout_of(args: argparse.Namespace) -> ProbeLayout:
    return ProbeLayout.of_recipe(args.dumpdir, args.expdir, args.it2_tag)


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_layout_arguments(parser)
    add_task_arguments(parser)
    parser.add_argument("--runs", type=str.split, default=[], help="the runs' names")
    parser.add_argument("--pr_train_set", default="", help="the phone probe's training set")
    parser.add_argument("--valid_set", default="", help="the phone probe's valid set")
    return parser


def layout_paths(
    layout: ProbeLayout,
    tasks: List[str],
    runs: List[str],
    pr_train_set: str,
    valid_set: str,
    test_sets: List[str],
) -> Dict[str, str]:
    """``{key: path or names}`` as the module's docstring lists them."""
    paths = {"exp": str(layout.exp), "results": str(layout.results)}
    for task in tasks:
        sets = probe_sets(task, pr_train_set, valid_set, test_sets)
        names = list(dict.fromkeys(sets["train"] + sets["valid"] + sets["test"]))
        paths.update(
            {
                f"{task}/data": str(layout.task_dir(task)),
                f"{task}/tokens": str(layout.token_list(task)),
                f"{task}/done": str(layout.data_marker(task)),
                f"{task}/sets": " ".join(names),
                f"{task}/train": str(layout.set_dir(task, sets["train"][0])),
                f"{task}/valid": str(layout.set_dir(task, sets["valid"][0])),
                f"{task}/tests": " ".join(sets["test"]),
            }
        )
        paths.update({f"{task}/set/{name}": str(layout.set_dir(task, name)) for name in names})
        for run in runs:
            paths[f"{task}/exp/{run}"] = str(layout.probe_exp(task, run))
            for dset in sets["test"]:
                paths[f"{task}/decode/{run}/{dset}"] = str(layout.decode_dir(task, run, dset))
    return paths


def main(cmd: Optional[List[str]] = None) -> None:
    parser = get_parser()
    args = parser.parse_args(cmd)
    check_tasks(parser, args)
    if "pr" in args.probe_tasks and not (args.pr_train_set and args.valid_set):
        parser.error("--probe_tasks pr: give the --pr_train_set and --valid_set it learns from")
    paths = layout_paths(
        layout_of(args),
        args.probe_tasks,
        args.runs,
        args.pr_train_set,
        args.valid_set,
        args.test_sets,
    )
    for key, value in paths.items():
        print(f"{key}\t{value}")


if __name__ == "__main__":
    main()

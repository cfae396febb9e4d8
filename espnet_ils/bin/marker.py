#!/usr/bin/env python3
"""Completion markers for the recipe's shell stages (see ``espnet_ils.data.markers``).

    python -m espnet_ils.bin.marker check exp/RESULTS.md.done --what "Stage 10: scoring" \
        --option decode_modes="greedy beam" --input ref_test=dump/raw/test/text ...
    (exit 0: up to date, skip the step; exit 1: run it, then)
    python -m espnet_ils.bin.marker write exp/RESULTS.md.done

``check`` compares the marker with the options and the checksums of the inputs; it logs the skip
with its reason, or what changed. When the step has to run it removes the stale marker and keeps
the identity it computed in ``<marker>.next``; ``write`` puts that in place, so the marker records
the inputs as they were when the step started. An ``--input`` name given several times makes one
input of several files. Other errors (a missing input) exit 2.

``--resumable true`` is for a step that continues its own earlier, unfinished work (training with
``--resume true``): a step done or started (``<marker>.next``) with other options or inputs is then an
error (exit 2, naming what changed), since continuing it would mix both; the caller says what to
remove.
"""

import argparse
import logging
import sys
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from espnet_ils.bin import setup_logging
from espnet_ils.data.markers import (
    changes,
    file_checksum,
    files_checksum,
    read_marker,
    step_identity,
    up_to_date,
    write_marker,
)

logger = logging.getLogger("espnet_ils.marker")


def pending_path(marker: Path) -> Path:
    return marker.with_name(marker.name + ".next")


def name_value(text: str) -> Tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"{text!r}: expected NAME=VALUE")
    return name, value


def check(
    marker: Path,
    what: str,
    options: List[Tuple[str, str]],
    inputs: List[Tuple[str, str]],
    resumable: bool = False,
) -> bool:
    """True when ``marker`` is up to date; otherwise the new identity waits in ``<marker>.next``.

    Raises:
        ValueError: ``resumable`` and the step was done or started with another identity.
    """
    files: Dict[str, List[str]] = {}
    for name, path in inputs:
        files.setdefault(name, []).append(path)
    checksums = {
        name: file_checksum(paths[0]) if len(paths) == 1 else files_checksum(paths)
        for name, paths in files.items()
    }
    wanted = step_identity(dict(options), checksums)
    if resumable:
        for earlier in (marker, pending_path(marker)):
            stored = read_marker(earlier)
            if stored is not None and stored != wanted:
                raise ValueError(
                    f"{what}: {earlier} was made with other options or inputs ("
                    + "; ".join(changes(stored, wanted))
                    + "); remove what it made to start again"
                )
    if up_to_date(marker, wanted, what):
        return True
    write_marker(pending_path(marker), wanted)
    return False


def write(marker: Path) -> None:
    """Put the identity ``check`` computed in place (the step's outputs are complete)."""
    pending = pending_path(marker)
    identity = read_marker(pending)
    if identity is None:
        raise FileNotFoundError(
            f"{pending}: no pending identity; run 'marker check' before the step"
        )
    write_marker(marker, identity)
    pending.unlink()


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    checker = commands.add_parser("check", help="exit 0 when the step is up to date, 1 otherwise")
    checker.add_argument("marker", type=Path, help="Marker file of the step")
    checker.add_argument("--what", required=True, help="The step, for the log")
    checker.add_argument(
        "--option", type=name_value, action="append", default=[], help="NAME=VALUE (repeatable)"
    )
    checker.add_argument(
        "--input", type=name_value, action="append", default=[], help="NAME=FILE (repeatable)"
    )
    checker.add_argument(
        "--resumable",
        choices=["true", "false"],
        default="false",
        help="true: work done or started with another identity is an error, not redone",
    )
    writer = commands.add_parser("write", help="mark the step complete (after its outputs)")
    writer.add_argument("marker", type=Path, help="Marker file of the step")
    return parser


def main(cmd: Optional[List[str]] = None) -> None:
    args = get_parser().parse_args(cmd)
    setup_logging(args)
    try:
        if args.command == "write":
            write(args.marker)
        elif not check(args.marker, args.what, args.option, args.input, args.resumable == "true"):
            sys.exit(1)
    except (FileNotFoundError, ValueError) as error:
        logger.error("%s", error)
        sys.exit(2)


if __name__ == "__main__":
    main()

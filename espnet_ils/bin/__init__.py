"""Entry points (``python -m espnet_ils.bin.<name>``): argument parsing, logging, then a library call."""

import argparse
import logging
import sys


def setup_logging(args: argparse.Namespace, level: str = "INFO") -> None:
    """Log to stderr in ESPnet's format and record the arguments first (stdout carries no data)."""
    logging.basicConfig(
        level=level,
        stream=sys.stderr,
        format="%(asctime)s (%(module)s:%(lineno)d) %(levelname)s: %(message)s",
    )
    logging.getLogger(sys.argv[0]).info("arguments: %s", vars(args))


def add_shard_arguments(parser: argparse.ArgumentParser) -> None:
    """``--nj`` and ``--job``: this process handles shard JOB (1-based) of NJ, as cmd.sh passes it."""
    parser.add_argument("--nj", type=int, default=1, help="Number of shards")
    parser.add_argument("--job", type=int, default=1, help="This shard, 1..nj (cmd.sh's JOB)")

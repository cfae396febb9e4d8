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

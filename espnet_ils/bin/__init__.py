"""Entry points (``python -m espnet_ils.bin.<name>``): argument parsing, logging, then a library call."""

import argparse
import ctypes
import logging
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, List, Optional


def setup_logging(args: argparse.Namespace, level: str = "INFO") -> None:
    """Log to stderr in ESPnet's format and record the arguments first (stdout carries no data)."""
    logging.basicConfig(
        level=level,
        stream=sys.stderr,
        format="%(asctime)s (%(module)s:%(lineno)d) %(levelname)s: %(message)s",
    )
    logging.getLogger(sys.argv[0]).info("arguments: %s", vars(args))


@contextmanager
def errors_exit(program: str) -> Iterator[None]:
    """Turn a ``ValueError`` of the library (bad input, which it names) into ``<program>: error:
    <message>`` on stderr and exit status 1, as argparse reports a bad option."""
    try:
        yield
    except ValueError as error:
        raise SystemExit(f"{program}: error: {error}") from error


def add_shard_arguments(parser: argparse.ArgumentParser) -> None:
    """``--nj`` and ``--job``: this process handles shard JOB (1-based) of NJ, as cmd.sh passes it."""
    parser.add_argument("--nj", type=int, default=1, help="Number of shards")
    parser.add_argument("--job", type=int, default=1, help="This shard, 1..nj (cmd.sh's JOB)")


def words(value: str) -> List[str]:
    """A space-separated option of ils.sh (``"test_clean test_other"``), as a list."""
    return value.split()


def optional_path(value: str) -> Optional[Path]:
    """An optional path option of ils.sh: empty is None."""
    return Path(value) if value else None


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of an ils.sh run that its checks before the stages read (``disk_plan``,
    ``check_data``), as ils.sh passes them (its array ``run_args``): the sets, and what decides the
    work of the later stages."""
    add = parser.add_argument
    add("--train_set", required=True)
    add("--valid_set", required=True)
    add("--finetune_set", required=True)
    add("--test_sets", type=words, required=True)
    add("--label_model", type=optional_path, default=None, help="targets from it: no iteration 1")
    add("--label_kmeans", type=optional_path, default=None, help="a given k-means model")
    add("--kmeans_portion", type=float, default=0.1, help="share of the train set's utterances")
    add("--kmeans_max_hours", type=float, default=0.0, help="most hours k-means sees (0: no cap)")
    add("--num_splits_ssl", type=int, default=1)
    add("--num_splits_asr", type=int, default=1)
    add("--decode_modes", type=words, default=[])
    add("--probe_tasks", type=words, default=[])
    add("--lm_exp", type=optional_path, default=None, help="an existing LM: none trained")
    add("--ngram_arpa", type=optional_path, default=None)


M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter


def bound_heap_growth(threshold: int = 128 * 1024) -> None:
    """Serve every allocation above ``threshold`` bytes with its own mmap, returned on free.

    glibc raises its mmap threshold to the largest block freed so far, after which the buffers
    of batches of varying length come from the heap, which fragments and keeps growing: a label
    job over BASE's block 6 measured 1.8 GB of peak RSS for 10 utterances and 3.9 GB for 80
    (bench/README.md). A fixed threshold keeps the peak to what one batch needs. No-op where the C
    library is not glibc.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return
    libc.mallopt(M_MMAP_THRESHOLD, threshold)

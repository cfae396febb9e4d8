"""Fixtures every test file can take, and a closing line naming the test files skipped because the
shared test data is absent.

The builders and data the tests share are in ``helpers/`` (its ``__init__`` lists them).
"""

import os
import re
import sys
from collections import defaultdict
from pathlib import Path
from typing import Dict, Iterator, List

import pytest
import torch
from helpers.lm import make_lm_root, train_lm
from helpers.shared_data import SHARED_DATA
from helpers.stand_in_wget import STAND_IN_WGET, StandInWget

import espnet_ils  # noqa: F401  (registration, before any ESPnet task is used)


@pytest.fixture(autouse=True)
def _seeded() -> Iterator[None]:
    torch.manual_seed(0)
    yield


@pytest.fixture(scope="module")
def ssl_dir(tmp_path_factory) -> Path:
    """The corpus and a tiny SSL model as ssl_train writes it (``helpers.ssl_model.write_ssl_dir``):
    ``config.yaml`` and ``model.pth``."""
    from helpers.ssl_model import write_ssl_dir  # ESPnet's tasks take seconds: only where used

    return write_ssl_dir(tmp_path_factory.mktemp("ssl"))


@pytest.fixture
def stand_in(tmp_path, monkeypatch) -> StandInWget:
    """A ``wget`` on PATH that serves files from a local folder (``--continue`` resumes a partial
    file like an HTTP range request, ``--spider`` only checks) or, with ``WGET_OFFLINE=1``, fails
    like an unreachable host; every call is logged. Used by the recipe's download tests."""
    bin_dir, served = tmp_path / "bin", tmp_path / "served"
    bin_dir.mkdir()
    served.mkdir()
    wget = bin_dir / "wget"
    wget.write_text(STAND_IN_WGET)
    wget.chmod(0o755)
    # The recipe's scripts run "python", as under path.sh: this interpreter.
    path = os.pathsep.join([str(bin_dir), str(Path(sys.executable).parent), os.environ["PATH"]])
    monkeypatch.setenv("PATH", path)
    monkeypatch.setenv("WGET_CALLS", str(tmp_path / "wget_calls"))
    monkeypatch.setenv("WGET_SERVES", str(served))
    return StandInWget(served=served, call_log=tmp_path / "wget_calls")


@pytest.fixture(scope="session")
def lm_root(tmp_path_factory) -> Path:
    """The grammar texts and LM text of the LM tests (``helpers.lm.make_lm_root``)."""
    return make_lm_root(tmp_path_factory.mktemp("lm"))


@pytest.fixture(scope="session")
def lm_exp(lm_root) -> Path:
    """The letter Transformer LM (``helpers.lm.train_lm``), trained once per session for the LM
    tests and the decoding benchmark's test."""
    return train_lm(lm_root)


# The modules that take minutes (each runs the recipe), first: make test's pytest-xdist workers
# (--dist loadfile) then start them at once, instead of after the short ones, and finish together.
LONG_MODULES = ("test_recipe_ci.py", "test_alignments.py", "test_recipe_large.py")


def pytest_collection_modifyitems(items: List[pytest.Item]) -> None:
    items.sort(key=lambda item: item.path.name not in LONG_MODULES)  # stable: the rest in order


def pytest_terminal_summary(terminalreporter) -> None:
    """After the run, one line naming the files whose tests skipped for missing shared data."""
    shared_path = re.compile(re.escape(str(SHARED_DATA)) + r"/[^/\s)]+")
    files_of: Dict[str, Dict[str, int]] = defaultdict(lambda: defaultdict(int))  # data -> file -> n
    for report in terminalreporter.stats.get("skipped", []):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else ""
        found = shared_path.search(reason)
        if found:
            files_of[found.group(0)][report.nodeid.split("::")[0]] += 1
    if not files_of:
        return
    total = sum(sum(files.values()) for files in files_of.values())
    needs = "; ".join(
        ", ".join(f"{name} ({count})" for name, count in sorted(files.items())) + f" need {data}"
        for data, files in sorted(files_of.items())
    )
    terminalreporter.write_line(
        f"{total} tests skipped for missing shared test data: {needs} "
        f"(put the data in {SHARED_DATA} to run them)",
        yellow=True,
        bold=True,
    )

"""Shared tiny builders; every test builds its own modules from them.

Also: a closing line naming the test files skipped because the shared test data is absent.
"""

import os
import re
import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterator, List, Optional

import pytest
import torch

import espnet_ils  # noqa: F401  (registration, before any ESPnet task is used)
from espnet_ils.encoder import ILSTransformerEncoder

# Test data kept outside the repository, in ../shared/data beside it (converter parity fixtures in
# ils_reference/, LibriSpeech files in librispeech_sample/). Tests that need it skip when it is
# absent, with a reason that names the missing directory under this path.
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def tiny_encoder(input_size: Optional[int] = None, **overrides) -> ILSTransformerEncoder:
    """A 4-block, width-32 encoder without dropout (deterministic in train mode)."""
    conf = dict(
        output_size=32,
        attention_heads=4,
        linear_units=64,
        num_blocks=4,
        dropout_rate=0.0,
        attention_dropout_rate=0.0,
        conv_pos_kernel=8,
        conv_pos_groups=4,
    )
    conf.update(overrides)
    return ILSTransformerEncoder(input_size or conf["output_size"], **conf)


@pytest.fixture(autouse=True)
def _seeded() -> Iterator[None]:
    torch.manual_seed(0)
    yield


STAND_IN_WGET = r"""#!/usr/bin/env bash
echo "$*" >> "${WGET_CALLS}"
[ "${WGET_OFFLINE:-0}" = 1 ] && exit 4  # wget's "network failure"
prefix=. continue=0 spider=0 url=
while [ $# -gt 0 ]; do
    case $1 in
        --directory-prefix) prefix=$2; shift 2 ;;
        --continue) continue=1; shift ;;
        --spider) spider=1; shift ;;
        --*) shift ;;
        *) url=$1; shift ;;
    esac
done
source=${WGET_SERVES}/${url##*/}
[ -f "${source}" ] || exit 8  # the server's 404
[ "${spider}" = 1 ] && exit 0
out=${prefix}/${url##*/}
have=0
if [ "${continue}" = 1 ] && [ -f "${out}" ]; then have=$(stat -c %s "${out}"); else : > "${out}"; fi
tail -c +$((have + 1)) "${source}" >> "${out}"
"""


@dataclass
class StandInWget:
    """The ``stand_in`` fixture's ``wget``: what it serves and what it was asked."""

    served: Path  # the files it serves, found by the basename of the URL asked for
    call_log: Path  # one line of arguments per call

    def calls(self) -> List[str]:
        """Its calls so far, each as the line of its arguments."""
        return self.call_log.read_text().splitlines() if self.call_log.exists() else []


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
    """The grammar texts and LM text of tests/test_transformer_lm.py (``make_lm_root``)."""
    from test_transformer_lm import make_lm_root  # ESPnet's LM task: only where it is used

    return make_lm_root(tmp_path_factory.mktemp("lm"))


@pytest.fixture(scope="session")
def lm_exp(lm_root) -> Path:
    """The letter Transformer LM of tests/test_transformer_lm.py (``train_lm``), trained once per
    session for the LM tests and the decoding benchmark's test."""
    from test_transformer_lm import train_lm

    return train_lm(lm_root)


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

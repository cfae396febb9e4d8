"""Shared tiny builders; every test builds its own modules from them.

Also: a closing line naming the test files skipped because the shared test data is absent.
"""

import re
from collections import defaultdict
from pathlib import Path
from typing import Dict, Iterator, Optional

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

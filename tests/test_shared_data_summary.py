"""A run without ../shared/data ends by naming the skipped test files and the data they need.

The tests that need the shared data run here from a copy of ``tests/`` in a directory that has no
``../shared/data`` beside it, so they skip as they would on a machine without it.
"""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
NEEDS_SHARED_DATA = {  # the test files that skip without it -> the directory each needs
    "test_alignments.py": "librispeech_sample",
    "test_convert_unispeech.py": "ils_reference",
    "test_layer_features.py": "ils_reference",
    "test_recipe_tools.py": "librispeech_sample",
}
SUMMARY = "tests skipped for missing shared test data:"


def repo_with_conftest(tmp_path: Path) -> Path:
    """A repository ``tmp_path/repo`` whose ``tests/`` holds conftest.py and the helpers."""
    repo = tmp_path / "repo"
    shutil.copytree(TESTS / "helpers", repo / "tests" / "helpers")
    shutil.copy(TESTS / "conftest.py", repo / "tests" / "conftest.py")
    return repo


def run_pytest(repo: Path, *args: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args, "tests"],
        cwd=repo,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


@pytest.mark.slow
def test_skips_for_missing_shared_data_are_named_with_the_data_they_need(tmp_path):
    repo = repo_with_conftest(tmp_path)
    for name in NEEDS_SHARED_DATA:
        shutil.copy(TESTS / name, repo / "tests" / name)
    # Only the tests with a skip condition (the shared-data ones and a cores check, deselected).
    out = run_pytest(repo, "-m", "skipif", "-k", "not every_core")

    lines = [line for line in out.splitlines() if SUMMARY in line]
    assert len(lines) == 1, out
    line = lines[0]
    skipped = int(re.search(r"(\d+) skipped", out.splitlines()[-1]).group(1))
    assert line.startswith(f"{skipped} {SUMMARY}"), line
    shared = tmp_path / "shared" / "data"
    for name, data in NEEDS_SHARED_DATA.items():
        assert re.search(rf"tests/{name} \(\d+\)[^;]* need {re.escape(str(shared / data))}", line)
    assert f"put the data in {shared}" in line


def test_no_summary_line_when_nothing_skipped_for_shared_data(tmp_path):
    repo = repo_with_conftest(tmp_path)
    (repo / "tests" / "test_other.py").write_text(
        "import pytest\n\n\n"
        "def test_runs():\n    pass\n\n\n"
        '@pytest.mark.skip(reason="needs 2 cores")\n'
        "def test_skips_for_another_reason():\n    pass\n"
    )
    out = run_pytest(repo)
    assert "1 passed, 1 skipped" in out
    assert SUMMARY not in out

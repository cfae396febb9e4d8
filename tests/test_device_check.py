"""The GPU device check (bench/device_check.sh) dry-runs on a CPU and reports every part.

One dry run (``--device cpu --tiny``, about a minute on 2 cores) feeds the tests: the files that
come back from the GPU machine exist, and every figure a CPU can compute is there and finite:
parity of the math backend and of FlexAttention's forward, step times, the feature rate and the
ssl_train losses. What needs CUDA is reported as excluded or skipped, with its reason.
"""

import importlib.metadata
import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, Tuple

import pytest
from helpers.scripts import load_module

from espnet_ils.data.audio import SAMPLE_RATE, num_frames

pytestmark = pytest.mark.slow  # trains, or runs the recipe or a device check: full suite only

REPO = Path(__file__).resolve().parents[1]
bench_pretrain_step = load_module(REPO / "bench" / "bench_pretrain_step.py")

OUTPUT_FILES = {
    "summary.md",
    "device_check.json",
    "parity.json",
    "parity.md",
    "device_check.log",
    "ssl_train.log",
}


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory) -> Tuple[Path, str]:
    out = tmp_path_factory.mktemp("device_check")
    result = subprocess.run(
        ["bash", str(REPO / "bench/device_check.sh"), "--device", "cpu", "--tiny", "--out", out],
        env=dict(os.environ, PYTHON=sys.executable),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return out, result.stdout


@pytest.fixture(scope="module")
def parts(dry_run) -> Dict[str, Dict[str, Any]]:
    out, _ = dry_run
    return json.loads((out / "device_check.json").read_text())["parts"]


def finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def test_writes_at_most_eight_flat_files_and_prints_the_summary(dry_run):
    out, stdout = dry_run
    names = {path.name for path in out.iterdir()}
    assert names == OUTPUT_FILES and all((out / name).is_file() for name in names)
    summary = (out / "summary.md").read_text()
    assert stdout == summary
    for title in ("a. Attention", "b. One pretraining step", "c. Iteration-2", "d. ssl_train"):
        assert f"## {title}" in summary


def test_every_part_runs(parts):
    assert sorted(parts) == ["a", "b", "c", "d"]
    assert {name: part["status"] for name, part in parts.items()} == dict.fromkeys(parts, "ok")


def test_parity_math_and_flex_forward_agree_and_cuda_backends_are_excluded(parts, dry_run):
    rows = parts["a"]["result"]["rows"]
    by_backend = {}
    for row in rows:
        by_backend.setdefault(row["backend"], []).append(row)
    assert set(by_backend) == {
        "sdpa FLASH_ATTENTION",
        "sdpa EFFICIENT_ATTENTION",
        "sdpa CUDNN_ATTENTION",
        "sdpa MATH",
        "flex",
        "encoder sdpa",
    }
    for row in by_backend["sdpa MATH"] + by_backend["encoder sdpa"]:
        for stage, tensors in (("forward", ["out"]), ("backward", ["dq", "dk", "dv"])):
            assert row[stage]["status"] == "ok", row
            for name in tensors + (["dbias_table"] if stage == "backward" else []):
                assert finite(row[stage][name]["rel"]) and row[stage][name]["rel"] < 0.05
    for row in by_backend["flex"]:
        assert row["forward"]["status"] == "ok" and row["forward"]["out"]["rel"] < 0.05
        assert row["backward"]["status"] == "excluded"
        assert "backward on CPU" in row["backward"]["reason"]
    for name in ("sdpa EFFICIENT_ATTENTION", "sdpa CUDNN_ATTENTION"):
        assert all(row["forward"]["status"] == "excluded" for row in by_backend[name])
    assert parts["a"]["result"]["encoder_path"]["picked"] == ["MATH"]
    out, _ = dry_run
    assert json.loads((out / "parity.json").read_text())["rows"] == rows
    assert "| T | bias | backend |" in (out / "parity.md").read_text()


def test_step_times_every_model_a_cpu_can_train_and_counts_flops(parts):
    result = parts["b"]["result"]
    flops = result["flops"]
    assert flops["step"] == pytest.approx(3 * flops["forward"] - flops["conv_1"])
    models = result["models"]
    for name in ("ils", "ils_attdrop0", "espnet_hubert", "torchaudio_hubert"):
        row = models[name]
        assert row["status"] == "ok", row
        assert finite(row["median_s"]) and row["median_s"] > 0
        assert finite(row["audio_s_per_s"]) and finite(row["tflops"]) and row["mfu"] is None
    assert models["ils_flex"]["status"] == "excluded"
    assert "backward on CPU" in models["ils_flex"]["reason"]
    assert models["ils"]["host_syncs"].startswith("skipped")


def test_feature_extraction_rate_is_measured(parts):
    result = parts["c"]["result"]
    assert result["setup"]["layer"] == bench_pretrain_step.TINY.num_blocks  # block 6 of BASE
    assert finite(result["audio_hours_per_minute"]) and result["audio_hours_per_minute"] > 0
    assert result["frames"] > 0


def test_ssl_train_runs_and_logs_finite_losses(parts, dry_run):
    result = parts["d"]["result"]
    assert result["returncode"] == 0 and result["checkpoint"]
    assert result["finite"] and len(result["windows"]) >= 2
    assert result["use_amp"] is False and result["amp_bf16"] is False  # CPU: no AMP
    out, _ = dry_run
    assert "epoch:train:" in (out / "ssl_train.log").read_text()


def test_the_bench_frame_grid_is_espnet_ils_own():
    """bench_pretrain_step repeats espnet_ils.data.audio's geometry (its importer runs without
    espnet_ils); the two must agree."""
    assert bench_pretrain_step.SAMPLE_RATE == SAMPLE_RATE
    for samples in (400, 719, 720, 16000, 200_000):
        assert bench_pretrain_step.num_frames(samples) == num_frames(samples)


def test_base_step_flops_match_the_design_estimate():
    """Within reach of the estimate made before the count, ~43 GFLOP per audio second for BASE
    (bench/README.md, "FLOP count"); the count adds the positional convolution."""
    samples = int(12.5 * bench_pretrain_step.SAMPLE_RATE)
    base = bench_pretrain_step.ils_size(
        bench_pretrain_step.yaml.safe_load(bench_pretrain_step.ILS_CONFIG.read_text())
    )
    flops = bench_pretrain_step.step_flops(base, samples, 7, 500)
    per_audio_second = flops["step"] / 87.5
    assert 43e9 < per_audio_second < 47e9
    assert flops["conv_front"] / 87.5 == pytest.approx(4.9e9, rel=0.01)  # ~15 GFLOP x 3


def test_device_wheels_pin_the_venv_versions():
    script = (REPO / "bench/fetch_device_wheels.sh").read_text()
    pins = re.findall(r"^\s+([A-Za-z0-9_.-]+)==(\S+)$", script, flags=re.MULTILINE)
    assert len(pins) == 17
    for name, version in pins:
        assert importlib.metadata.version(name) == version, name

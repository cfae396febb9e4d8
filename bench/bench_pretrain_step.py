#!/usr/bin/env python3
"""Time one pretraining step of ILS BASE against ESPnet's and torchaudio's HuBERT BASE.

A step is ``zero_grad`` + forward + backward on one fixed batch (default: 2 utterances of 8 s of
random audio at 16 kHz with random k-means labels at 50 Hz). The three models are:

* ``ils``: ILS-SSL BASE built from ``train_ssl_ils_base_it2.yaml`` through ``ILSSSLTask``.
* ``espnet_hubert``: HuBERT BASE from ESPnet's own ``SSLTask`` classes (``wav2vec_cnn`` frontend,
  ``linear`` preencoder, ``transformer`` encoder with conv positions, ``hubert`` loss, ``mask``).
* ``torchaudio_hubert``: ``torchaudio.models.hubert_pretrain_base`` with the loss of torchaudio's
  HuBERT recipe (masked cross-entropy summed over masked frames + 10 x feature penalty).

Every model runs in its own subprocess (this script re-invoked with ``--only NAME``), so its peak
memory is its own: on CPU the increase of the process's peak RSS over the RSS before the model is
built, on CUDA the allocator's peak over what was allocated before the model is built. Layerdrop is
set to ``--layerdrop`` (default 0) for all three models so that every step does the same work.

This is a benchmark, not a test: it prints a report (log on stderr, table on stdout).

Example::

    .venv/bin/python bench/bench_pretrain_step.py --steps 5 --warmup 2
"""

import argparse
import json
import logging
import os
import platform
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import types
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, ContextManager, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import yaml
from torch import nn
from torch.nn import functional as F

REPO_ROOT = Path(__file__).resolve().parents[1]
ILS_CONFIG = REPO_ROOT / "egs2/librispeech_ils/ssl1/conf/tuning/train_ssl_ils_base_it2.yaml"
SAMPLE_RATE = 16000
MODELS = ("ils", "espnet_hubert", "torchaudio_hubert")
LABELS = {
    "ils": "ILS BASE (espnet_ils)",
    "espnet_hubert": "HuBERT BASE (ESPnet SSLTask)",
    "torchaudio_hubert": "HuBERT BASE (torchaudio)",
}
RESULT_PREFIX = "BENCH_RESULT "
TARGET_VS_ESPNET = 1.05
TARGET_VS_TORCHAUDIO = 1.00

log = logging.getLogger("bench_pretrain_step")


@dataclass
class Batch:
    """One pretraining batch: waveforms, their lengths, frame labels and their lengths."""

    speech: torch.Tensor  # (B, N) float
    speech_lengths: torch.Tensor  # (B,) long
    labels: torch.Tensor  # (B, T) long, k-means ids at 50 Hz
    label_lengths: torch.Tensor  # (B,) long


@dataclass
class Result:
    """What one model's subprocess reports back."""

    name: str
    params_m: float
    step_times_s: List[float]
    peak_mib: float
    peak_kind: str

    @property
    def median_s(self) -> float:
        return statistics.median(self.step_times_s)

    @property
    def min_s(self) -> float:
        return min(self.step_times_s)


StepLoss = Callable[[Batch], torch.Tensor]


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    parser.add_argument(
        "--dtype",
        choices=("fp32", "bf16"),
        default="fp32",
        help="fp32, or bf16 autocast around the forward pass (default: fp32)",
    )
    parser.add_argument("--batch-size", type=int, default=2, help="utterances per batch (2)")
    parser.add_argument("--seconds", type=float, default=8.0, help="seconds per utterance (8)")
    parser.add_argument("--steps", type=int, default=5, help="timed steps (5)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed warm-up steps (2)")
    parser.add_argument(
        "--threads",
        type=int,
        default=len(os.sched_getaffinity(0)),
        help="torch.set_num_threads (default: all cores available to this process)",
    )
    parser.add_argument("--num-classes", type=int, default=500, help="k-means clusters (500)")
    parser.add_argument(
        "--layerdrop",
        type=float,
        default=0.0,
        help="layerdrop of all three encoders (default 0: every step runs all 12 blocks)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--ils-config", type=Path, default=ILS_CONFIG, help="ILS SSL config")
    parser.add_argument(
        "--models",
        nargs="+",
        choices=MODELS,
        default=list(MODELS),
        help="models to run, in this order (default: all three)",
    )
    parser.add_argument(
        "--profile",
        type=int,
        default=0,
        metavar="ROWS",
        help="after timing, profile one more step with torch.profiler and log the top ROWS ops",
    )
    parser.add_argument("--only", choices=MODELS, help=argparse.SUPPRESS)  # subprocess mode
    args = parser.parse_args(argv)
    if args.steps < 1 or args.warmup < 0 or args.batch_size < 1 or args.threads < 1:
        parser.error("--steps, --batch-size and --threads must be >= 1, --warmup >= 0")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        parser.error("--device cuda given but CUDA is not available")
    return args


# --------------------------------------------------------------------------- batch and machine


def num_frames(num_samples: int) -> int:
    """Frames of the wav2vec 2.0 conv stack (receptive field 400, stride 320)."""
    return (num_samples - 400) // 320 + 1


def make_batch(
    batch_size: int, seconds: float, num_classes: int, seed: int, device: torch.device
) -> Batch:
    """Random audio and random labels, identical for every model (own generator, own seed)."""
    generator = torch.Generator().manual_seed(seed)
    samples = int(seconds * SAMPLE_RATE)
    frames = num_frames(samples)
    speech = torch.randn(batch_size, samples, generator=generator)
    labels = torch.randint(0, num_classes, (batch_size, frames), generator=generator)
    return Batch(
        speech=speech.to(device),
        speech_lengths=torch.full((batch_size,), samples, dtype=torch.long, device=device),
        labels=labels.to(device),
        label_lengths=torch.full((batch_size,), frames, dtype=torch.long, device=device),
    )


def cpu_model_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_info(args: argparse.Namespace) -> Dict[str, str]:
    """What the figures depend on: CPU, cores, library versions, device."""
    import espnet
    import torchaudio

    info = {
        "cpu": cpu_model_name(),
        "cores": f"{len(os.sched_getaffinity(0))} available ({os.cpu_count()} online)",
        "threads": str(args.threads),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchaudio": torchaudio.__version__,
        "espnet": espnet.__version__,
        "device": args.device,
        "dtype": args.dtype,
    }
    if args.device.startswith("cuda"):
        info["gpu"] = torch.cuda.get_device_name(torch.device(args.device))
    return info


def skip_g2p_en() -> None:
    """Give ESPnet an empty ``g2p_en`` module: importing the real one (``espnet2.tasks.*`` does)
    tries to download NLTK data and prints errors offline; the benchmark tokenises no text."""
    sys.modules.setdefault("g2p_en", types.ModuleType("g2p_en"))


def seed_everything(seed: int) -> None:
    """Seed torch, numpy (ESPnet's and torchaudio's mask sampling) and random."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


# --------------------------------------------------------------------------- the three models


def build_ils(args: argparse.Namespace) -> Tuple[nn.Module, StepLoss]:
    """ILS BASE from its config through ``ILSSSLTask``, with layerdrop set to ``--layerdrop``."""
    import espnet_ils  # noqa: F401  (registers ils_cnn, feature_projection, ils_transformer, ils)
    from espnet_ils.tasks import ILSSSLTask

    task_args = ILSSSLTask.get_parser().parse_args(["--config", str(args.ils_config)])
    config_classes = task_args.loss[0]["conf"]["num_classes"]
    if config_classes != args.num_classes:
        raise ValueError(
            f"{args.ils_config} has num_classes={config_classes}, --num-classes is "
            f"{args.num_classes}: give the same number so all models predict the same classes"
        )
    log.info(
        "ils: layer_drop_rate %s (config) -> %s",
        task_args.encoder_conf.get("layer_drop_rate"),
        args.layerdrop,
    )
    task_args.encoder_conf["layer_drop_rate"] = args.layerdrop
    task_args.token_list = [str(i) for i in range(args.num_classes)] + ["<unk>"]
    model = ILSSSLTask.build_model(task_args)
    return model, _espnet_ssl_loss(model)


def espnet_hubert_config(args: argparse.Namespace) -> Dict:
    """HuBERT BASE from ESPnet's own SSLTask classes (ESPnet's ``train_hubert.yaml`` layout).

    ESPnet's encoder is post-LN with ``input_layer: wav2vec`` (conv positional embedding); its
    feed-forward uses ReLU and one dropout rate for everything, which is 0.1 here as in ILS.
    """
    return {
        "frontend": "wav2vec_cnn",
        "frontend_conf": {"norm_mode": "group_norm", "conv_mode": "standard", "bias": False},
        "normalize": None,
        "specaug": None,
        "preencoder": "linear",
        "preencoder_conf": {"output_size": 768, "dropout": 0.1},
        "encoder": "transformer",
        "encoder_conf": {
            "output_size": 768,
            "attention_heads": 12,
            "linear_units": 3072,
            "num_blocks": 12,
            "dropout_rate": 0.1,
            "positional_dropout_rate": 0.1,
            "attention_dropout_rate": 0.1,
            "input_layer": "wav2vec",
            "normalize_before": False,
            "pos_enc_layer_type": "conv",
            "layer_drop_rate": args.layerdrop,
        },
        "loss": [
            {
                "name": "hubert",
                "conf": {"num_classes": args.num_classes, "final_dim": 256, "layers": [-1]},
            }
        ],
        "util": [
            {
                "name": "mask",
                "conf": {"mask_prob": 0.8, "mask_length": 10, "mask_selection": "static"},
            }
        ],
    }


def build_espnet_hubert(args: argparse.Namespace) -> Tuple[nn.Module, StepLoss]:
    """ESPnet's native HuBERT BASE through ``espnet2.tasks.ssl.SSLTask`` (no espnet_ils import)."""
    from espnet2.tasks.ssl import SSLTask

    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as config_file:
        yaml.safe_dump(espnet_hubert_config(args), config_file)
    try:
        task_args = SSLTask.get_parser().parse_args(["--config", config_file.name])
    finally:
        os.unlink(config_file.name)
    task_args.token_list = [str(i) for i in range(args.num_classes)] + ["<unk>"]
    model = SSLTask.build_model(task_args)
    return model, _espnet_ssl_loss(model)


def _espnet_ssl_loss(model: nn.Module) -> StepLoss:
    """Loss of an ``ESPnetSSLModel``: ``model(speech, speech_lengths, text, text_lengths)[0]``."""

    def loss(batch: Batch) -> torch.Tensor:
        total, _stats, _weight = model(
            batch.speech, batch.speech_lengths, batch.labels, batch.label_lengths
        )
        return total

    return loss


def build_torchaudio_hubert(args: argparse.Namespace) -> Tuple[nn.Module, StepLoss]:
    """torchaudio's HuBERT BASE pretraining model (random init) with its recipe's loss.

    ``HuBERTPretrainModel`` returns logits over ``[positive, all classes]`` (the target is column
    0) for masked and unmasked frames, and the mean squared conv feature. The recipe's loss, with
    its default weights (masked 1, unmasked 0, feature 10, sum reduction), is
    ``sum_masked CE(logit_m, 0) + 10 * feature_penalty * num_masked``.
    """
    from torchaudio.models import hubert_pretrain_base

    model = hubert_pretrain_base(
        encoder_projection_dropout=0.1,
        encoder_attention_dropout=0.1,
        encoder_ff_interm_dropout=0.0,
        encoder_dropout=0.1,
        encoder_layer_drop=args.layerdrop,
        num_classes=args.num_classes,
    )

    def loss(batch: Batch) -> torch.Tensor:
        logit_m, _logit_u, feature_penalty = model(batch.speech, batch.labels, batch.speech_lengths)
        targets = logit_m.new_zeros(logit_m.size(0), dtype=torch.long)
        masked_ce = F.cross_entropy(logit_m.float(), targets, reduction="sum")
        return masked_ce + 10.0 * feature_penalty * logit_m.size(0)

    return model, loss


BUILDERS: Dict[str, Callable[[argparse.Namespace], Tuple[nn.Module, StepLoss]]] = {
    "ils": build_ils,
    "espnet_hubert": build_espnet_hubert,
    "torchaudio_hubert": build_torchaudio_hubert,
}


# --------------------------------------------------------------------------- one model, measured


def current_rss_bytes() -> int:
    """Resident set size of this process now."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE")


def peak_rss_bytes() -> int:
    """Peak resident set size of this process so far (``ru_maxrss`` is in KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def autocast(device: torch.device, dtype: str) -> ContextManager:
    if dtype == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return nullcontext()


def train_step(
    model: nn.Module, step_loss: StepLoss, batch: Batch, device: torch.device, dtype: str
) -> float:
    """One timed ``zero_grad`` + forward + backward; returns seconds."""
    synchronize(device)
    start = time.perf_counter()
    model.zero_grad(set_to_none=True)
    with autocast(device, dtype):
        loss = step_loss(batch)
    loss.backward()
    synchronize(device)
    return time.perf_counter() - start


def profile_step(
    model: nn.Module,
    step_loss: StepLoss,
    batch: Batch,
    device: torch.device,
    dtype: str,
    rows: int,
) -> None:
    """Log the ``rows`` most expensive ops (self time, forward and backward) of one step."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU]
    sort_by = "self_cpu_time_total"
    if device.type == "cuda":
        activities.append(ProfilerActivity.CUDA)
        sort_by = "self_cuda_time_total"
    with profile(activities=activities, record_shapes=True) as prof:
        train_step(model, step_loss, batch, device, dtype)
    table = prof.key_averages(group_by_input_shape=True).table(sort_by=sort_by, row_limit=rows)
    log.info("profile of one step:\n%s", table)


def measure(name: str, args: argparse.Namespace) -> Result:
    """Build ``name``, warm it up and time ``args.steps`` steps; in a process of its own."""
    skip_g2p_en()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    batch = make_batch(args.batch_size, args.seconds, args.num_classes, args.seed, device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        memory_before = torch.cuda.memory_allocated(device)
    else:
        memory_before = current_rss_bytes()

    seed_everything(args.seed)
    model, step_loss = BUILDERS[name](args)
    model.to(device).train()
    params = sum(p.numel() for p in model.parameters())
    log.info(
        "%s: %.2f M parameters, %d warm-up + %d timed steps",
        name,
        params / 1e6,
        args.warmup,
        args.steps,
    )

    for _ in range(args.warmup):
        train_step(model, step_loss, batch, device, args.dtype)
    times = []
    for index in range(args.steps):
        times.append(train_step(model, step_loss, batch, device, args.dtype))
        log.info("%s: step %d/%d %.3f s", name, index + 1, args.steps, times[-1])

    if device.type == "cuda":
        peak, kind = torch.cuda.max_memory_allocated(device) - memory_before, "CUDA allocator peak"
    else:
        peak, kind = peak_rss_bytes() - memory_before, "peak RSS increase"
    if args.profile:
        profile_step(model, step_loss, batch, device, args.dtype, args.profile)
    return Result(name, params / 1e6, times, peak / 2**20, kind)


def run_in_subprocess(name: str, argv: Sequence[str]) -> Result:
    """Re-invoke this script with ``--only name``; its stderr (the log) passes through."""
    command = [sys.executable, str(Path(__file__).resolve()), *argv, "--only", name]
    completed = subprocess.run(command, stdout=subprocess.PIPE, text=True, check=False)
    if completed.returncode != 0:
        raise RuntimeError(f"{name}: benchmark subprocess failed with code {completed.returncode}")
    for line in reversed(completed.stdout.splitlines()):
        if line.startswith(RESULT_PREFIX):
            return Result(**json.loads(line[len(RESULT_PREFIX) :]))
    raise RuntimeError(f"{name}: benchmark subprocess printed no result")


# --------------------------------------------------------------------------- report


def ratio(result: Result, reference: Optional[Result]) -> str:
    return f"{result.median_s / reference.median_s:.3f}" if reference else "-"


def format_table(results: List[Result]) -> str:
    """Markdown table: one row per model, step-time ratios against the two HuBERTs."""
    by_name = {r.name: r for r in results}
    espnet, torchaudio = by_name.get("espnet_hubert"), by_name.get("torchaudio_hubert")
    header = (
        "| model | params (M) | median step (s) | min step (s) | / ESPnet-HuBERT | "
        "/ torchaudio | peak mem (MiB) |"
    )
    lines = [header, "|---|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        lines.append(
            f"| {LABELS[r.name]} | {r.params_m:.2f} | {r.median_s:.3f} | {r.min_s:.3f} | "
            f"{ratio(r, espnet)} | {ratio(r, torchaudio)} | {r.peak_mib:.0f} |"
        )
    return "\n".join(lines)


def format_targets(results: List[Result]) -> List[str]:
    """The project's speed targets for ILS, each with its measured ratio and verdict."""
    by_name = {r.name: r for r in results}
    ils = by_name.get("ils")
    lines = []
    for reference, target in (
        ("espnet_hubert", TARGET_VS_ESPNET),
        ("torchaudio_hubert", TARGET_VS_TORCHAUDIO),
    ):
        if ils is None or reference not in by_name:
            continue
        value = ils.median_s / by_name[reference].median_s
        verdict = "met" if value <= target else "NOT met"
        lines.append(f"ILS / {LABELS[reference]} = {value:.3f} (target <= {target:.2f}): {verdict}")
    return lines


def report(args: argparse.Namespace, results: List[Result], info: Dict[str, str]) -> None:
    samples = int(args.seconds * SAMPLE_RATE)
    print("Pretraining step (zero_grad + forward + backward), same batch for every model")
    for key, value in info.items():
        print(f"  {key}: {value}")
    print(
        f"  batch: {args.batch_size} x {args.seconds:g} s random audio ({samples} samples), "
        f"{num_frames(samples)} label frames, {args.num_classes} classes; layerdrop "
        f"{args.layerdrop:g} for all; {args.warmup} warm-up + {args.steps} timed steps; "
        f"memory: {results[0].peak_kind if results else '-'}"
    )
    print()
    print(format_table(results))
    print()
    for line in format_targets(results):
        print(line)


def forwarded_argv(argv: Sequence[str]) -> List[str]:
    """The command line minus ``--models`` (the child runs exactly one model)."""
    out: List[str] = []
    skipping = False
    for token in argv:
        if token == "--models":
            skipping = True
            continue
        if skipping and not token.startswith("--"):
            continue
        skipping = False
        out.append(token)
    return out


def main(argv: Optional[Sequence[str]] = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(name)s %(message)s", stream=sys.stderr
    )
    if args.only:
        result = measure(args.only, args)
        print(RESULT_PREFIX + json.dumps(asdict(result)), flush=True)
        return
    info = machine_info(args)
    results = [run_in_subprocess(name, forwarded_argv(argv)) for name in args.models]
    report(args, results, info)


if __name__ == "__main__":
    main()

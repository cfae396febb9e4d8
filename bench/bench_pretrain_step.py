#!/usr/bin/env python3
"""Time one pretraining step of ILS BASE against ESPnet's and torchaudio's HuBERT BASE.

A step is ``zero_grad`` + forward + backward on one fixed batch (default: 2 utterances of 8 s of
random audio at 16 kHz with random k-means labels at 50 Hz). The three models are:

* ``ils``: ILS-SSL BASE built from ``train_ssl_ils_base_it2.yaml`` through ``ILSSSLTask``.
* ``espnet_hubert``: HuBERT BASE from ESPnet's own ``SSLTask`` classes (``wav2vec_cnn`` frontend,
  ``linear`` preencoder, ``transformer`` encoder with conv positions, ``hubert`` loss, ``mask``).
* ``torchaudio_hubert``: ``torchaudio.models.hubert_pretrain_base`` with the loss of torchaudio's
  HuBERT recipe (masked cross-entropy summed over masked frames + 10 x feature penalty).

Layerdrop is ``--layerdrop`` (default 0) for all three, so every step does the same work.

Two phases:

1. Memory. Each model is built in a subprocess of its own (this script re-invoked with
   ``--only NAME``) that runs one step: on CPU its peak is the rise of the process's peak RSS
   (``ru_maxrss``) over the RSS before the model was built, on CUDA the allocator's peak over
   what was allocated before.
2. Time. All models are built in one process and stepped in turn (``--warmup`` untimed rounds,
   then ``--steps`` timed rounds, the order rotating every round), so load from other jobs on the
   machine falls on all models alike instead of on whichever ran at the wrong moment.

This is a benchmark, not a test: it prints a report (log on stderr, table on stdout).

Example::

    .venv/bin/python bench/bench_pretrain_step.py --steps 5 --warmup 2
"""

import argparse
import ctypes
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
from contextlib import nullcontext, redirect_stdout
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
RESULT_PREFIX = "BENCH_MEMORY "
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
class Memory:
    """What a model's memory subprocess reports: size and peak memory of one step."""

    name: str
    params_m: float
    peak_mib: float
    peak_kind: str


@dataclass
class Timing:
    """Wall and process CPU seconds of a model's timed steps."""

    wall_s: List[float]
    cpu_s: List[float]


@dataclass
class Result:
    """One row of the report."""

    name: str
    params_m: float
    peak_mib: float
    timing: Timing

    @property
    def median_s(self) -> float:
        return statistics.median(self.timing.wall_s)

    @property
    def min_s(self) -> float:
        return min(self.timing.wall_s)

    @property
    def median_cpu_s(self) -> float:
        return statistics.median(self.timing.cpu_s)


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
    parser.add_argument("--steps", type=int, default=5, help="timed steps per model (5)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps per model (2)")
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
    parser.add_argument(
        "--malloc",
        choices=("keep", "default"),
        default="keep",
        help="CPU timing only: make glibc keep freed memory for reuse (keep, the default) or "
        "leave glibc as it is; see keep_freed_memory",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--ils-config", type=Path, default=ILS_CONFIG, help="ILS SSL config")
    parser.add_argument(
        "--models",
        nargs="+",
        choices=MODELS,
        default=list(MODELS),
        help="models to run (default: all three)",
    )
    parser.add_argument(
        "--skip-memory", action="store_true", help="time only, without the memory subprocesses"
    )
    parser.add_argument(
        "--profile",
        type=int,
        default=0,
        metavar="ROWS",
        help="after timing, profile one more step of each model and log its top ROWS ops",
    )
    parser.add_argument("--only", choices=MODELS, help=argparse.SUPPRESS)  # memory subprocess
    args = parser.parse_args(argv)
    if min(args.steps, args.batch_size, args.threads) < 1 or args.warmup < 0:
        parser.error("--steps, --batch-size and --threads must be >= 1, --warmup >= 0")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        parser.error("--device cuda given but CUDA is not available")
    return args


# --------------------------------------------------------------------------- batch and machine


def num_frames(num_samples: int) -> int:
    """Frames of the wav2vec 2.0 conv stack (receptive field 400, stride 320)."""
    return (num_samples - 400) // 320 + 1


def make_batch(args: argparse.Namespace, device: torch.device) -> Batch:
    """Random audio and labels from ``args.seed``, the same for every model and process."""
    generator = torch.Generator().manual_seed(args.seed)
    samples = int(args.seconds * SAMPLE_RATE)
    frames = num_frames(samples)
    speech = torch.randn(args.batch_size, samples, generator=generator)
    labels = torch.randint(0, args.num_classes, (args.batch_size, frames), generator=generator)
    return Batch(
        speech=speech.to(device),
        speech_lengths=torch.full((args.batch_size,), samples, dtype=torch.long, device=device),
        labels=labels.to(device),
        label_lengths=torch.full((args.batch_size,), frames, dtype=torch.long, device=device),
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
    """ESPnet's native HuBERT BASE through ``espnet2.tasks.ssl.SSLTask`` and ESPnet's classes."""
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


BUILDERS: Dict[str, Callable[[argparse.Namespace], Tuple[nn.Module, StepLoss]]] = {
    "ils": build_ils,
    "espnet_hubert": build_espnet_hubert,
    "torchaudio_hubert": build_torchaudio_hubert,
}


def import_model_code() -> None:
    """Import what the builders import, so that memory baselines exclude the code itself."""
    import espnet2.tasks.ssl  # noqa: F401
    import torchaudio.models  # noqa: F401

    import espnet_ils.tasks  # noqa: F401


def build(name: str, args: argparse.Namespace, device: torch.device) -> Tuple[nn.Module, StepLoss]:
    """Build model ``name`` from seed ``args.seed``, on ``device``, in training mode.

    ESPnet prints to stdout while building (e.g. that flash_attn is missing): that goes to
    stderr, stdout is the report.
    """
    seed_everything(args.seed)
    with redirect_stdout(sys.stderr):
        model, step_loss = BUILDERS[name](args)
    return model.to(device).train(), step_loss


def count_params_m(model: nn.Module) -> float:
    return sum(p.numel() for p in model.parameters()) / 1e6


# --------------------------------------------------------------------------- steps and memory


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def autocast(device: torch.device, dtype: str) -> ContextManager:
    if dtype == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return nullcontext()


def train_step(
    model: nn.Module, step_loss: StepLoss, batch: Batch, device: torch.device, dtype: str
) -> Tuple[float, float]:
    """One ``zero_grad`` + forward + backward; returns its wall and process CPU seconds.

    The CPU time (all threads, user + system) helps when other jobs share the cores: with
    ``--threads 1`` it hardly depends on them, the wall time does.
    """
    synchronize(device)
    start, start_cpu = time.perf_counter(), time.process_time()
    model.zero_grad(set_to_none=True)
    with autocast(device, dtype):
        loss = step_loss(batch)
    loss.backward()
    synchronize(device)
    return time.perf_counter() - start, time.process_time() - start_cpu


def current_rss_bytes() -> int:
    """Resident set size of this process now."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE")


def peak_rss_bytes() -> int:
    """Peak resident set size of this process so far (``ru_maxrss`` is in KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def measure_memory(name: str, args: argparse.Namespace) -> Memory:
    """Peak memory of building ``name`` and running one step; needs a process of its own."""
    device = torch.device(args.device)
    import_model_code()
    batch = make_batch(args, device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        baseline = torch.cuda.memory_allocated(device)
    else:
        baseline = current_rss_bytes()
    model, step_loss = build(name, args, device)
    wall, _ = train_step(model, step_loss, batch, device, args.dtype)
    if device.type == "cuda":
        peak, kind = torch.cuda.max_memory_allocated(device) - baseline, "CUDA allocator peak"
    else:
        peak, kind = peak_rss_bytes() - baseline, "peak RSS increase"
    log.info("%s: one step (%.1f s) peaked at %.0f MiB (%s)", name, wall, peak / 2**20, kind)
    return Memory(name, count_params_m(model), peak / 2**20, kind)


def memory_in_subprocess(name: str, argv: Sequence[str]) -> Memory:
    """Re-invoke this script with ``--only name``; its stderr (the log) passes through."""
    command = [sys.executable, str(Path(__file__).resolve()), *argv, "--only", name]
    completed = subprocess.run(command, stdout=subprocess.PIPE, text=True, check=False)
    if completed.returncode != 0:
        raise RuntimeError(f"{name}: memory subprocess failed with code {completed.returncode}")
    for line in reversed(completed.stdout.splitlines()):
        if line.startswith(RESULT_PREFIX):
            return Memory(**json.loads(line[len(RESULT_PREFIX) :]))
    raise RuntimeError(f"{name}: memory subprocess printed no result")


# --------------------------------------------------------------------------- timing


def keep_freed_memory() -> bool:
    """Make glibc malloc keep freed memory instead of handing it back to the OS.

    By default glibc serves every block above 32 MiB with its own ``mmap`` and ``munmap``s it on
    free, so each training step page-faults its GiBs of activations in afresh. On a small VM
    that kernel work took a third of a step and made step times vary several-fold; with big
    blocks served from the heap (``M_MMAP_MAX = 0``) and the heap never trimmed
    (``M_TRIM_THRESHOLD = -1``) the next step reuses the memory. Returns False where ``mallopt``
    is unavailable (not glibc).
    """
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    m_trim_threshold, m_mmap_max = -1, -4
    return bool(mallopt(m_mmap_max, 0)) and bool(mallopt(m_trim_threshold, -1))


def rotated(names: Sequence[str], shift: int) -> List[str]:
    shift %= len(names)
    return list(names[shift:]) + list(names[:shift])


def time_models(args: argparse.Namespace) -> Tuple[Dict[str, Timing], Dict[str, float]]:
    """Build all models in this process and step them in turn; returns timings and sizes."""
    device = torch.device(args.device)
    if device.type == "cpu" and args.malloc == "keep" and not keep_freed_memory():
        log.warning("mallopt unavailable: timing with the default allocator")
    batch = make_batch(args, device)
    models = {name: build(name, args, device) for name in args.models}
    sizes = {name: count_params_m(model) for name, (model, _) in models.items()}
    timings = {name: Timing([], []) for name in args.models}
    for index in range(args.warmup + args.steps):
        timed = index >= args.warmup
        for name in rotated(args.models, index):
            model, step_loss = models[name]
            wall, cpu = train_step(model, step_loss, batch, device, args.dtype)
            model.zero_grad(set_to_none=True)  # free the gradients before the next model
            if timed:
                timings[name].wall_s.append(wall)
                timings[name].cpu_s.append(cpu)
            log.info(
                "%s %s %d: %.3f s (CPU %.3f s)",
                name,
                "step" if timed else "warm-up",
                index - args.warmup + 1 if timed else index + 1,
                wall,
                cpu,
            )
    if args.profile:
        for name, (model, step_loss) in models.items():
            profile_step(name, model, step_loss, batch, device, args.dtype, args.profile)
    return timings, sizes


def profile_step(
    name: str,
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
        sort_by = "self_device_time_total"
    with profile(activities=activities, record_shapes=True) as prof:
        train_step(model, step_loss, batch, device, dtype)
    model.zero_grad(set_to_none=True)
    table = prof.key_averages(group_by_input_shape=True).table(sort_by=sort_by, row_limit=rows)
    log.info("%s: profile of one step\n%s", name, table)


# --------------------------------------------------------------------------- report


def ratio(result: Result, reference: Optional[Result]) -> str:
    return f"{result.median_s / reference.median_s:.3f}" if reference else "-"


def format_table(results: List[Result]) -> str:
    """Markdown table: one row per model, median step-time ratios against the two HuBERTs."""
    by_name = {r.name: r for r in results}
    espnet, torchaudio = by_name.get("espnet_hubert"), by_name.get("torchaudio_hubert")
    header = (
        "| model | params (M) | median step (s) | min step (s) | / ESPnet-HuBERT | "
        "/ torchaudio | peak mem (MiB) | median CPU (s) |"
    )
    lines = [header, "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        peak = f"{r.peak_mib:.0f}" if r.peak_mib >= 0 else "-"
        lines.append(
            f"| {LABELS[r.name]} | {r.params_m:.2f} | {r.median_s:.3f} | {r.min_s:.3f} | "
            f"{ratio(r, espnet)} | {ratio(r, torchaudio)} | {peak} | {r.median_cpu_s:.3f} |"
        )
    return "\n".join(lines)


def paired_ratio(result: Result, reference: Result) -> float:
    """Median over rounds of ``result``'s step time over ``reference``'s in the same round.

    The models are stepped in turn, so the two steps of a round ran seconds apart, under much
    the same load from other jobs; this ratio is the one to trust on a shared machine.
    """
    pairs = zip(result.timing.wall_s, reference.timing.wall_s)
    return statistics.median(mine / theirs for mine, theirs in pairs)


def format_targets(results: List[Result]) -> List[str]:
    """The project's speed targets for ILS, each with its measured ratios and verdict."""
    by_name = {r.name: r for r in results}
    ils = by_name.get("ils")
    lines = []
    for reference, target in (
        ("espnet_hubert", TARGET_VS_ESPNET),
        ("torchaudio_hubert", TARGET_VS_TORCHAUDIO),
    ):
        if ils is None or reference not in by_name:
            continue
        other = by_name[reference]
        value = ils.median_s / other.median_s
        paired = paired_ratio(ils, other)
        lines.append(
            f"ILS / {LABELS[reference]} (target <= {target:.2f}): median step {value:.3f} "
            f"({'met' if value <= target else 'NOT met'}); paired per round {paired:.3f} "
            f"({'met' if paired <= target else 'NOT met'}); min step "
            f"{ils.min_s / other.min_s:.3f}; median CPU {ils.median_cpu_s / other.median_cpu_s:.3f}"
        )
    return lines


def report(
    args: argparse.Namespace, results: List[Result], info: Dict[str, str], peak_kind: str
) -> None:
    samples = int(args.seconds * SAMPLE_RATE)
    print("Pretraining step (zero_grad + forward + backward), same batch for every model")
    for key, value in info.items():
        print(f"  {key}: {value}")
    print(
        f"  batch: {args.batch_size} x {args.seconds:g} s random audio ({samples} samples), "
        f"{num_frames(samples)} label frames, {args.num_classes} classes; layerdrop "
        f"{args.layerdrop:g} for all"
    )
    print(
        f"  timing: {args.warmup} warm-up + {args.steps} timed steps per model, models in "
        f"turn; malloc {args.malloc if args.device == 'cpu' else '-'}; memory: {peak_kind}"
    )
    print()
    print(format_table(results))
    print()
    for line in format_targets(results):
        print(line)


def memory_argv(argv: Sequence[str]) -> List[str]:
    """The command line minus ``--models`` (the memory subprocess builds one model)."""
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
    skip_g2p_en()
    torch.set_num_threads(args.threads)
    if args.only:
        memory = measure_memory(args.only, args)
        print(RESULT_PREFIX + json.dumps(asdict(memory)), flush=True)
        return

    info = machine_info(args)
    memory: Dict[str, Memory] = {}
    if not args.skip_memory:
        for name in args.models:
            memory[name] = memory_in_subprocess(name, memory_argv(argv))
    timings, sizes = time_models(args)
    results = [
        Result(
            name=name,
            params_m=sizes[name],
            peak_mib=memory[name].peak_mib if name in memory else -1.0,
            timing=timings[name],
        )
        for name in args.models
    ]
    peak_kind = next(iter(memory.values())).peak_kind if memory else "not measured"
    report(args, results, info, peak_kind)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""GPU device check of ILS-SSL in one command: attention parity, step speed, features, ssl_train.

Four parts (``--parts``), each in a subprocess of its own with its own time budget, so that a part
that raises, hangs or breaks the CUDA context is reported and the others still run:

a. ``parity``: every SDPA backend on its own (flash, memory-efficient, cuDNN, math) and
   FlexAttention (compiled on CUDA) with the ILS bias and key padding in bf16, against an fp32
   math reference computed from the same bf16-rounded inputs: output, dq, dk, dv and the
   gradient of the bias table. T in {704, 781, 800} frames (704 % 128 == 64 is the case of the
   cuDNN bug pytorch/pytorch#196678). Also the encoder's own path (``SDPAAttentionKernel`` under
   ``sdpa_backends``), with the backend it picks read off the profiler.
b. ``step``: one BASE pretraining step in bf16 at the paper's 87.5 s of audio per GPU (7 x 12.5
   s) for ILS (sdpa, config as is), ILS sdpa and ILS flex with attention dropout 0, ESPnet's and
   torchaudio's HuBERT (``bench_pretrain_step``): step time, audio seconds per second, model
   TFLOP/s (``step_flops``) and MFU, peak memory; and the host syncs of one ILS step.
c. ``features``: block-6 features of a random BASE model, batched, bf16, through
   ``LayerFeatureExtractor`` (iteration 2's labels): audio hours per minute.
d. ``train``: 100 steps of ``espnet_ils.bin.ssl_train`` with the BASE config and AMP on generated
   tones with k-means-like labels (500 classes at 50 Hz): loss finite and falling, wall time.

Everything lands in ``--out`` (default ``$OUT``): ``summary.md`` (also printed on stdout),
``device_check.json`` (all results), ``parity.json`` and ``parity.md``, ``device_check.log``
(the parts' logs) and ``ssl_train.log``. ``--device cpu --tiny`` dry-runs all parts on a CPU in
about a minute: CUDA-only backends and FlexAttention's backward are then reported as excluded.

Example (on the GPU machine, with the wheels of ``bench/fetch_device_wheels.sh`` installed)::

    bash bench/device_check.sh
"""

import argparse
import importlib.metadata
import json
import linecache
import logging
import math
import os
import platform
import re
import signal
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import bench_pretrain_step as bench
import numpy as np
import torch
import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
PEAK_BF16_TFLOPS = 790.0  # H200 dense bf16, measured on the lent machine (bench/README.md)
PARITY_BATCH = 2
PARITY_HEADS = 12
PARITY_HEAD_DIM = 64
PARITY_PADDING = 37  # frames of padding on the second utterance
BIAS_STD = 5.0  # bias table ~ N(0, 5^2): logits well beyond the N(0, 1) of q.k / sqrt(64)
# name -> offset added to the whole bias table: softmax ignores it, kernels with a finite
# running-max start or a "row is all -inf" test do not.
BIAS_CASES = {"large": 0.0, "very negative": -1.0e4}
MISMATCH_REL = 0.05  # relative error (norm of difference / norm of reference) flagged
GRAD_NAMES = ("dq", "dk", "dv", "dbias_table")  # gradients of q, k, v and the bias table
STEP_MODELS = ("ils", "ils_attdrop0", "espnet_hubert", "torchaudio_hubert", "ils_flex")
FEATURE_LAYER = 6  # block 6 of BASE: the features of iteration 2's k-means (paper section 4)
NUM_CLASSES = 500
SEGMENT_FRAMES = 5  # labels of the generated corpus change every 100 ms
PART_NAMES = {"a": "parity", "b": "step", "c": "features", "d": "train"}
LOG_TAIL_BYTES = 2 * 2**20  # of each log copied to --out (a file that comes back: <= 16 MiB)

log = logging.getLogger("device_check")


@dataclass(frozen=True)
class CheckSizes:
    """Sizes of one mode of the check (full on the GPU, ``--tiny`` for dry runs)."""

    budgets_s: Dict[str, float]  # wall-clock limit of each part, subprocess start included
    parity_frames: Tuple[int, ...]  # T of the attention parity, frames at 50 Hz
    model_size: str  # bench_pretrain_step --size
    step_batch: int  # utterances per step
    step_seconds: float  # seconds per utterance
    step_warmup: int
    step_steps: int
    feature_batches: int  # timed batches (one more untimed first)
    feature_batch_size: int
    feature_seconds: Tuple[float, float]  # utterance lengths, uniform
    train_utterances: int
    train_seconds: Tuple[float, float]
    train_batch_bins: int  # samples per batch (batch_type numel)
    train_iters_per_epoch: int
    train_epochs: int
    train_log_interval: int  # steps per logged mean of ESPnet's reporter


FULL = CheckSizes(
    budgets_s={"a": 75, "b": 160, "c": 45, "d": 120},
    parity_frames=(704, 781, 800),
    model_size="base",
    step_batch=7,
    step_seconds=12.5,
    step_warmup=3,
    step_steps=10,
    feature_batches=48,
    feature_batch_size=16,
    feature_seconds=(5.0, 15.0),
    train_utterances=64,
    train_seconds=(3.0, 6.0),
    train_batch_bins=800000,
    train_iters_per_epoch=50,
    train_epochs=2,
    train_log_interval=10,
)
TINY = CheckSizes(
    budgets_s={"a": 120, "b": 180, "c": 120, "d": 180},  # generous: CPUs may be shared
    parity_frames=(192,),
    model_size="tiny",
    step_batch=2,
    step_seconds=1.0,
    step_warmup=1,
    step_steps=2,
    feature_batches=2,
    feature_batch_size=2,
    feature_seconds=(1.0, 2.0),
    train_utterances=12,
    train_seconds=(1.0, 2.0),
    train_batch_bins=64000,
    train_iters_per_epoch=4,
    train_epochs=2,
    train_log_interval=2,
)

Save = Callable[[Dict[str, Any]], None]


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda", help="(cuda)")
    parser.add_argument(
        "--tiny", action="store_true", help="tiny models, short audio, few steps (dry runs)"
    )
    parser.add_argument(
        "--parts", default="a,b,c,d", help="comma-separated parts to run, of a,b,c,d (all)"
    )
    parser.add_argument("--out", type=Path, default=None, help="output directory (default: $OUT)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--run-part", choices=sorted(PART_NAMES), help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)  # with --run-part
    parser.add_argument("--deadline", type=float, help=argparse.SUPPRESS)  # time.time() limit
    args = parser.parse_args(argv)
    args.parts = [part.strip() for part in args.parts.split(",") if part.strip()]
    unknown = sorted(set(args.parts) - set(PART_NAMES))
    if unknown or not args.parts:
        parser.error(f"--parts {','.join(args.parts)}: choose from a,b,c,d (got {unknown})")
    if args.out is None and not args.run_part:
        if "OUT" not in os.environ:
            parser.error("give --out DIR or set OUT")
        args.out = Path(os.environ["OUT"])
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda given but CUDA is not available (use --device cpu --tiny)")
    return args


# --------------------------------------------------------------------------- shared helpers


def describe(error: BaseException) -> str:
    """``Type: first lines of the message``, short enough for a table."""
    text = " | ".join(line.strip() for line in str(error).strip().splitlines()[:3])
    return f"{type(error).__name__}: {text[:300]}"


def free_device_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()


def short_path(filename: str) -> str:
    """A source path without its installation prefix (site-packages, wheel dir, repository)."""
    for marker in ("site-packages/", "dist-packages/", "/tmp/site/"):
        if marker in filename:
            return filename.split(marker, 1)[1]
    root = str(REPO_ROOT) + os.sep
    return filename[len(root) :] if filename.startswith(root) else filename


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to a temporary name, then rename it into place."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def bench_args(sizes: CheckSizes, device: torch.device) -> argparse.Namespace:
    """``bench_pretrain_step``'s options for this mode: bf16, the step's batch, layerdrop 0."""
    return bench.parse_args(
        [
            "--device",
            device.type,
            "--dtype",
            "bf16",
            "--size",
            sizes.model_size,
            "--batch-size",
            str(sizes.step_batch),
            "--seconds",
            str(sizes.step_seconds),
            "--warmup",
            str(sizes.step_warmup),
            "--steps",
            str(sizes.step_steps),
            "--threads",
            str(torch.get_num_threads()),
            "--num-classes",
            str(NUM_CLASSES),
        ]
    )


# --------------------------------------------------------------------------- a. parity


@dataclass
class ParityInputs:
    """One parity case: float32 tensors holding bf16-representable values, on the device."""

    query: torch.Tensor  # (B, H, T, D/H)
    key: torch.Tensor  # (B, H, T, D/H)
    value: torch.Tensor  # (B, H, T, D/H)
    table: torch.Tensor  # (num_buckets, H): the bias table's weight
    pad_mask: torch.Tensor  # (B, T) bool, True on padded frames
    grad_out: torch.Tensor  # (B, H, T, D/H): the gradient fed to the output


def parity_inputs(frames: int, bias_offset: float, device: torch.device, seed: int) -> ParityInputs:
    """Random inputs for ``frames`` frames, the second utterance padded by ``PARITY_PADDING``."""
    from espnet_ils.model.relative_bias import BucketRelativePositionBias

    generator = torch.Generator().manual_seed(seed + frames)
    num_buckets = BucketRelativePositionBias(PARITY_HEADS).num_buckets

    def bf16_values(*shape: int, scale: float = 1.0, offset: float = 0.0) -> torch.Tensor:
        values = torch.randn(*shape, generator=generator) * scale + offset
        return values.bfloat16().float().to(device)

    shape = (PARITY_BATCH, PARITY_HEADS, frames, PARITY_HEAD_DIM)
    pad_mask = torch.zeros(PARITY_BATCH, frames, dtype=torch.bool)
    pad_mask[1, frames - PARITY_PADDING :] = True
    return ParityInputs(
        query=bf16_values(*shape),
        key=bf16_values(*shape),
        value=bf16_values(*shape),
        table=bf16_values(num_buckets, PARITY_HEADS, scale=BIAS_STD, offset=bias_offset),
        pad_mask=pad_mask.to(device),
        grad_out=bf16_values(*shape),
    )


Attend = Callable[..., torch.Tensor]  # (q, k, v, relative_bias, pad_mask) -> (B, H, T, D/H)


def sdpa_backend_attend(backend: Any) -> Attend:
    """The encoder's dense bias and padding mask through SDPA restricted to ``backend``."""
    from torch.nn.attention import sdpa_kernel
    from torch.nn.functional import scaled_dot_product_attention

    from espnet_ils.model.attention import SDPAAttentionKernel

    def attend(query, key, value, relative_bias, pad_mask):
        mask = SDPAAttentionKernel().prepare(relative_bias, pad_mask, query.dtype)
        with sdpa_kernel([backend]):
            return scaled_dot_product_attention(query, key, value, attn_mask=mask)

    return attend


def kernel_attend(kernel: Any) -> Attend:
    """An ``espnet_ils.model.attention`` kernel as the encoder runs it (``prepare`` then ``attend``)."""

    def attend(query, key, value, relative_bias, pad_mask):
        shared = kernel.prepare(relative_bias, pad_mask, query.dtype)
        return kernel.attend(query, key, value, shared, 0.0)

    return attend


@dataclass
class Evaluation:
    """What one attention candidate produced: output, gradients, and why a stage failed."""

    out: Optional[torch.Tensor]
    grads: Dict[str, torch.Tensor]
    forward_error: Optional[str]
    backward_error: Optional[str]


def evaluate(attend: Attend, inputs: ParityInputs, dtype: torch.dtype) -> Evaluation:
    """Forward and backward of ``attend`` in ``dtype``; the bias table stays float32 (as in AMP).

    A forward that fails with gradients enabled (flash refuses masks; FlexAttention has no CPU
    backward) is retried without them, so the output is compared wherever it can be computed.
    """
    from espnet_ils.model.relative_bias import BucketRelativePositionBias

    device = inputs.query.device
    relative_bias = BucketRelativePositionBias(PARITY_HEADS).to(device)
    with torch.no_grad():
        relative_bias.embedding.weight.copy_(inputs.table)
    qkv = [t.detach().to(dtype).requires_grad_() for t in (inputs.query, inputs.key, inputs.value)]
    try:
        out = attend(*qkv, relative_bias, inputs.pad_mask)
        bench.synchronize(device)
    except Exception as error:  # reported, never raised: every backend must be tried
        grad_error = describe(error)
        try:
            with torch.no_grad():
                out = attend(*(t.detach() for t in qkv), relative_bias, inputs.pad_mask)
            bench.synchronize(device)
        except Exception as no_grad_error:  # reported as the forward's reason
            return Evaluation(None, {}, describe(no_grad_error), grad_error)
        return Evaluation(out.detach(), {}, None, grad_error)
    try:
        out.backward(inputs.grad_out.to(dtype))
        bench.synchronize(device)
    except Exception as error:  # reported as the backward's reason
        return Evaluation(out.detach(), {}, None, describe(error))
    leaves = (*qkv, relative_bias.embedding.weight)
    return Evaluation(out.detach(), {n: t.grad for n, t in zip(GRAD_NAMES, leaves)}, None, None)


def tensor_error(value: torch.Tensor, reference: torch.Tensor) -> Dict[str, float]:
    """Max absolute error, relative error ``|value - ref| / |ref|`` (2-norms), non-finite count."""
    value, reference = value.float(), reference.float()
    nonfinite = int((~torch.isfinite(value)).sum())
    diff = value - reference
    return {
        "max_abs": float(diff.abs().max()),
        "rel": float(diff.norm() / reference.norm().clamp(min=1e-30)),
        "nonfinite": nonfinite,
    }


def stage_result(
    error: Optional[str], values: Dict[str, torch.Tensor], reference: Dict[str, torch.Tensor]
) -> Dict[str, Any]:
    """Status (ok / mismatch / excluded) and per-tensor errors of one stage of a candidate."""
    if error is not None:
        return {"status": "excluded", "reason": error}
    errors = {name: tensor_error(values[name], reference[name]) for name in reference}
    bad = [name for name, e in errors.items() if e["nonfinite"]]
    if bad:
        return {"status": "excluded", "reason": f"NaN/inf in {', '.join(bad)}", **errors}
    worst = max(e["rel"] for e in errors.values())
    return {"status": "ok" if worst <= MISMATCH_REL else "mismatch", **errors}


SDPA_OPS = {  # aten op of each SDPA backend, as the profiler names it
    "_scaled_dot_product_flash_attention": "FLASH_ATTENTION",
    "_scaled_dot_product_efficient_attention": "EFFICIENT_ATTENTION",
    "_scaled_dot_product_cudnn_attention": "CUDNN_ATTENTION",
    "_scaled_dot_product_attention_math": "MATH",
    "_scaled_dot_product_fused_attention_overrideable": "OVERRIDEABLE",
}


def profiled_backends(attend: Attend, inputs: ParityInputs) -> Dict[str, Any]:
    """Which SDPA backend ``attend`` runs in bf16 training (forward + backward), by profiler."""
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU]
    if inputs.query.is_cuda:
        activities.append(ProfilerActivity.CUDA)
    with profile(activities=activities) as prof:
        evaluate(attend, inputs, torch.bfloat16)
    events = prof.key_averages()
    picked = {backend for op, backend in SDPA_OPS.items() for e in events if op in e.key}
    kernels = [
        event.key
        for event in events
        if event.device_type == DeviceType.CUDA
        and re.search(r"fmha|attention|flash|cudnn|softmax", event.key, re.IGNORECASE)
    ]
    return {"picked": sorted(picked), "kernels": kernels[:8]}


def parity_candidates() -> Dict[str, Attend]:
    """Every SDPA backend alone, FlexAttention, and the encoder's own SDPA path."""
    from torch.nn.attention import SDPBackend

    from espnet_ils.model.attention import FlexAttentionKernel, SDPAAttentionKernel

    backends = ("FLASH_ATTENTION", "EFFICIENT_ATTENTION", "CUDNN_ATTENTION", "MATH")
    candidates = {
        f"sdpa {name}": sdpa_backend_attend(getattr(SDPBackend, name)) for name in backends
    }
    candidates["flex"] = kernel_attend(FlexAttentionKernel())
    candidates["encoder sdpa"] = kernel_attend(SDPAAttentionKernel())
    return candidates


def dynamo_stats() -> Dict[str, int]:
    """torch.compile's counters so far in this process: graphs compiled, recompilations."""
    from torch._dynamo.utils import counters

    stats = {key: int(count) for key, count in counters["stats"].items()}
    stats["recompiles"] = sum(int(count) for count in counters["recompiles"].values())
    return stats


def run_parity(
    sizes: CheckSizes, device: torch.device, args: argparse.Namespace, save: Save
) -> None:
    """Part a: each candidate against the fp32 math reference, per T and bias case."""
    from torch.nn.attention import SDPBackend

    torch.set_float32_matmul_precision("highest")  # no TF32 in the reference's products
    reference_attend = sdpa_backend_attend(SDPBackend.MATH)
    candidates = parity_candidates()
    result: Dict[str, Any] = {
        "setup": {
            "batch": PARITY_BATCH,
            "heads": PARITY_HEADS,
            "head_dim": PARITY_HEAD_DIM,
            "padding": f"utterance 2 has its last {PARITY_PADDING} frames padded (-inf keys)",
            "bias": f"bucket table ~ N(0, {BIAS_STD:g}^2) + offset (case), 320 buckets",
            "dtype": "bf16 inputs, float32 bias table; reference: MATH in float32 from the "
            "same bf16-rounded values",
            "mismatch_rel": MISMATCH_REL,
        },
        "rows": [],
    }
    for frames in sizes.parity_frames:
        for case, offset in BIAS_CASES.items():
            inputs = parity_inputs(frames, offset, device, args.seed)
            reference = evaluate(reference_attend, inputs, torch.float32)
            if reference.forward_error or reference.backward_error:
                raise RuntimeError(
                    f"fp32 math reference failed at T={frames}: "
                    f"{reference.forward_error or reference.backward_error}"
                )
            for name, attend in candidates.items():
                started = time.perf_counter()
                run = evaluate(attend, inputs, torch.bfloat16)
                row = {
                    "frames": frames,
                    "bias": case,
                    "backend": name,
                    "forward": stage_result(
                        run.forward_error, {"out": run.out}, {"out": reference.out}
                    ),
                    "backward": stage_result(run.backward_error, run.grads, reference.grads),
                    "seconds": round(time.perf_counter() - started, 3),
                }
                log.info(
                    "T=%d %s %s: forward %s, backward %s (%.1f s)",
                    frames,
                    case,
                    name,
                    row["forward"]["status"],
                    row["backward"]["status"],
                    row["seconds"],
                )
                result["rows"].append(row)
                save(result)
    inputs = parity_inputs(sizes.parity_frames[0], 0.0, device, args.seed)
    result["encoder_path"] = profiled_backends(candidates["encoder sdpa"], inputs)
    result["dynamo"] = dynamo_stats()
    save(result)


# --------------------------------------------------------------------------- b. step


def host_syncs(
    model: torch.nn.Module, step_loss: bench.StepLoss, batch: bench.Batch, dtype: str
) -> List[Dict[str, Any]]:
    """Where one training step waits for the GPU: its synchronising CUDA calls, by source line.

    ``torch.cuda.set_sync_debug_mode("warn")`` makes every synchronising call warn; each warning
    is attributed to the innermost stack frame outside torch (the code that asked for it).
    """
    torch_dir = str(Path(torch.__file__).parent) + os.sep
    found: Dict[Tuple[str, str], int] = {}

    def record(message, category, filename, lineno, file=None, line=None):
        if "synchroniz" not in str(message):
            return
        frames = [
            f for f in traceback.extract_stack()[:-1] if not f.filename.endswith("warnings.py")
        ]
        origin = next(
            (f for f in reversed(frames) if not f.filename.startswith(torch_dir)),
            traceback.FrameSummary(filename, lineno, "?"),
        )
        where = f"{short_path(origin.filename)}:{origin.lineno}"
        code = linecache.getline(origin.filename, origin.lineno).strip()
        found[(where, code)] = found.get((where, code), 0) + 1

    bench.synchronize(batch.speech.device)
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.showwarning = record
        torch.cuda.set_sync_debug_mode("warn")
        try:
            bench.forward_backward(model, step_loss, batch, dtype)
        finally:
            torch.cuda.set_sync_debug_mode("default")
    bench.synchronize(batch.speech.device)
    return [
        {"where": where, "code": code, "count": count}
        for (where, code), count in sorted(found.items())
    ]


def run_step(sizes: CheckSizes, device: torch.device, args: argparse.Namespace, save: Save) -> None:
    """Part b: each model alone (``bench.measure_alone``), then the host syncs of ILS."""
    options = bench_args(sizes, device)
    samples = int(options.seconds * bench.SAMPLE_RATE)
    flops = bench.step_flops(bench.model_size(options), samples, options.batch_size, NUM_CLASSES)
    audio_s = options.batch_size * samples / bench.SAMPLE_RATE
    result: Dict[str, Any] = {
        "setup": {
            "batch": f"{options.batch_size} x {options.seconds:g} s random audio "
            f"({audio_s:g} s per step), {bench.num_frames(samples)} frames, {NUM_CLASSES} classes",
            "size": options.size,
            "dtype": "bf16 autocast",
            "warmup": options.warmup,
            "steps": options.steps,
            "layerdrop": options.layerdrop,
            "note": "ils_flex and ils_attdrop0 have attention_dropout_rate forced to 0 "
            "(FlexAttention has no attention dropout); ils is the config as is (0.1)",
        },
        "flops": flops,
        "audio_seconds": audio_s,
        "peak_tflops": PEAK_BF16_TFLOPS,
        "models": {},
    }
    bench.import_model_code()
    batch = bench.make_batch(options, device)
    for name in STEP_MODELS:
        try:
            measured, model, step_loss = bench.measure_alone(name, options, batch)
            median = measured.median_s
            row = {
                "status": "ok",
                "label": bench.LABELS[name],
                "params_m": measured.params_m,
                "median_s": median,
                "min_s": measured.min_s,
                "audio_s_per_s": audio_s / median,
                "tflops": flops["step"] / median / 1e12,
                "mfu": flops["step"] / median / 1e12 / PEAK_BF16_TFLOPS
                if device.type == "cuda"
                else None,
                "peak_mib": measured.peak_mib if measured.peak_mib >= 0 else None,
            }
            if name == "ils":
                row["host_syncs"] = (
                    host_syncs(model, step_loss, batch, options.dtype)
                    if device.type == "cuda"
                    else "skipped: sync debug mode needs CUDA"
                )
            del model, step_loss
        except Exception as error:  # reported, the other models still run
            log.exception("%s failed", name)
            row = {"status": "excluded", "label": bench.LABELS[name], "reason": describe(error)}
        free_device_memory(device)
        result["models"][name] = row
        save(result)


# --------------------------------------------------------------------------- c. features


def run_features(
    sizes: CheckSizes, device: torch.device, args: argparse.Namespace, save: Save
) -> None:
    """Part c: block-6 features of a random model, batched as ``extract_layer_features`` does."""
    from espnet_ils.targets.layer_features import LayerFeatureExtractor, length_sorted_batches

    options = bench_args(sizes, device)
    bench.import_model_code()
    model, _ = bench.build("ils", options, device)
    extractor = LayerFeatureExtractor(
        model.frontend, model.preencoder, model.encoder, model.normalize, device=str(device)
    )
    layer = min(FEATURE_LAYER, extractor.num_layers)
    rng = np.random.default_rng(args.seed)
    count = (sizes.feature_batches + 1) * sizes.feature_batch_size
    low, high = sizes.feature_seconds
    lengths = {
        f"utt{index:05d}": int(rng.uniform(low, high) * bench.SAMPLE_RATE) for index in range(count)
    }
    generator = torch.Generator().manual_seed(args.seed)
    waves = {utt: 0.1 * torch.randn(n, generator=generator) for utt, n in lengths.items()}
    batches = length_sorted_batches(lengths, sizes.feature_batch_size)
    warmup, timed = batches[0], batches[1:]
    with bench.autocast(device, "bf16"):
        extractor.extract([waves[utt] for utt in warmup], layer)
        bench.synchronize(device)
        started = time.perf_counter()
        frames = 0
        for batch in timed:
            frames += sum(f.size(0) for f in extractor.extract([waves[u] for u in batch], layer))
        bench.synchronize(device)
    elapsed = time.perf_counter() - started
    audio_s = sum(lengths[utt] for batch in timed for utt in batch) / bench.SAMPLE_RATE
    save(
        {
            "setup": {
                "model": f"random ILS ({options.size}) from the BASE config",
                "layer": layer,
                "batches": f"{len(timed)} timed (+1 warm-up) of {sizes.feature_batch_size} "
                f"utterances, {low:g}-{high:g} s, length-sorted",
                "dtype": "bf16 autocast",
                "path": "LayerFeatureExtractor.extract (host waveforms in, float32 CPU "
                "features out); writing the ark is not timed",
            },
            "audio_hours": audio_s / 3600,
            "frames": frames,
            "seconds": elapsed,
            "audio_hours_per_minute": audio_s / 3600 / (elapsed / 60),
            "real_time_factor": elapsed / audio_s,
        }
    )


# --------------------------------------------------------------------------- d. train


def write_corpus(root: Path, sizes: CheckSizes, seed: int) -> Dict[str, Path]:
    """Tones with k-means-like labels: each 100 ms segment's pitch encodes its label.

    Label ``c`` of ``NUM_CLASSES`` sounds at ``100 * 2^(c / 100)`` Hz (100 Hz to 3.2 kHz), one
    label per encoder frame (``floor((N - 400) / 320) + 1`` for N samples). Writes 16-bit wavs,
    ``wav.scp``, ``labels``, ``speech_shape`` for train (all utterances) and valid (the first
    quarter), and the token list (the cluster ids, then ``<unk>``).

    Returns:
        Paths by name: ``train``, ``valid`` (directories) and ``tokens``.
    """
    import soundfile

    from espnet_ils.data.labels import write_token_list

    rng = np.random.default_rng(seed)
    (root / "wav").mkdir(parents=True, exist_ok=True)
    rows: List[Tuple[str, str, str, str]] = []
    low, high = sizes.train_seconds
    for index in range(sizes.train_utterances):
        samples = int(rng.uniform(low, high) * bench.SAMPLE_RATE)
        frames = bench.num_frames(samples)
        segments = rng.integers(0, NUM_CLASSES, size=frames // SEGMENT_FRAMES + 1)
        labels = segments.repeat(SEGMENT_FRAMES)[:frames]
        pitch = 100.0 * 2.0 ** (labels.repeat(320) / 100.0)  # (frames * 320,) Hz
        pitch = np.pad(pitch, (0, samples - pitch.size), mode="edge")
        wave = 0.3 * np.sin(2 * np.pi * np.cumsum(pitch) / bench.SAMPLE_RATE)
        wave += 0.01 * rng.standard_normal(samples)
        utt = f"tone{index:04d}"
        path = root / "wav" / f"{utt}.wav"
        soundfile.write(path, wave.astype(np.float32), bench.SAMPLE_RATE, subtype="PCM_16")
        rows.append((utt, str(path), " ".join(map(str, labels)), str(samples)))
    paths = {"tokens": root / "tokens.txt"}
    write_token_list(paths["tokens"], NUM_CLASSES)
    for split, subset in (("train", rows), ("valid", rows[: max(2, len(rows) // 4)])):
        paths[split] = root / split
        paths[split].mkdir(exist_ok=True)
        for filename, column in (("wav.scp", 1), ("labels", 2), ("speech_shape", 3)):
            lines = [f"{row[0]} {row[column]}" for row in sorted(subset)]
            write_atomic(paths[split] / filename, "\n".join(lines) + "\n")
    return paths


def ssl_train_command(
    sizes: CheckSizes, device: torch.device, config: Path, exp: Path, data: Dict[str, Path]
) -> List[str]:
    """``espnet_ils.bin.ssl_train`` on the generated corpus; run control on the command line.

    The learning rate warms up in 10 steps instead of the config's 32000 (else 100 steps would
    not move the model).
    """
    command = [
        sys.executable,
        "-m",
        "espnet_ils.bin.ssl_train",
        "--config",
        str(config),
        "--output_dir",
        str(exp),
        "--ngpu",
        "1" if device.type == "cuda" else "0",
        "--use_amp",
        "true" if device.type == "cuda" else "false",
        "--token_list",
        str(data["tokens"]),
        "--token_type",
        "word",
        "--batch_type",
        "numel",
        "--batch_bins",
        str(sizes.train_batch_bins),
        "--num_iters_per_epoch",
        str(sizes.train_iters_per_epoch),
        "--max_epoch",
        str(sizes.train_epochs),
        "--log_interval",
        str(sizes.train_log_interval),
        "--num_workers",
        "2",
        "--keep_nbest_models",
        "1",
        "--scheduler_conf",
        "warmup_steps_list=[0, 10, 1000]",
        "--seed",
        "0",
    ]
    for split in ("train", "valid"):
        command += [
            f"--{split}_data_path_and_name_and_type",
            f"{data[split] / 'wav.scp'},speech,sound",
            f"--{split}_data_path_and_name_and_type",
            f"{data[split] / 'labels'},text,text",
            f"--{split}_shape_file",
            str(data[split] / "speech_shape"),
        ]
    return command


REPORT_LINE = re.compile(r"(\d+)epoch:train:(\d+)-(\d+)batch: (.*)")
# ESPnet's reporter sometimes glues two stats together ("forward_time=0.786ils_loss_m_1=...").
LOSS_STAT = re.compile(r"(?:^|[^A-Za-z_])loss=([-+0-9.eE]+|nan|inf)")


def logged_losses(log_text: str) -> List[Dict[str, Any]]:
    """ESPnet reporter's training lines: ``{epoch, first, last, loss}`` per logged window."""
    windows = []
    for match in REPORT_LINE.finditer(log_text):
        loss = LOSS_STAT.search(match.group(4))
        if loss:
            windows.append(
                {
                    "epoch": int(match.group(1)),
                    "first": int(match.group(2)),
                    "last": int(match.group(3)),
                    "loss": float(loss.group(1)),
                }
            )
    return windows


def run_train(
    sizes: CheckSizes, device: torch.device, args: argparse.Namespace, save: Save
) -> None:
    """Part d: ``ssl_train`` in a subprocess, stopped before this part's deadline."""
    root = args.work / "train"
    data = write_corpus(root / "data", sizes, args.seed)
    config = yaml.safe_load(bench.ILS_CONFIG.read_text(encoding="utf-8"))
    bench.apply_ils_size(config, bench.model_size(bench_args(sizes, device)))
    config_path = root / "ssl_config.yaml"
    write_atomic(config_path, yaml.safe_dump(config, sort_keys=False))
    exp = root / "exp"
    command = ssl_train_command(sizes, device, config_path, exp, data)
    train_log = args.work / "ssl_train.log"
    log.info("running %s", " ".join(command))
    started = time.perf_counter()
    with train_log.open("w", encoding="utf-8") as log_file:
        returncode = run_process_group(command, log_file, args.deadline - time.time() - 5, cwd=root)
    wall = time.perf_counter() - started
    windows = logged_losses(train_log.read_text(encoding="utf-8", errors="replace"))
    losses = [w["loss"] for w in windows]
    trained = (
        yaml.safe_load((exp / "config.yaml").read_text()) if (exp / "config.yaml").exists() else {}
    )
    steps = sizes.train_iters_per_epoch * sizes.train_epochs
    save(
        {
            "setup": {
                "config": f"{bench.ILS_CONFIG.relative_to(REPO_ROOT)} ({sizes.model_size} size)",
                "corpus": f"{sizes.train_utterances} utterances of {sizes.train_seconds[0]:g}-"
                f"{sizes.train_seconds[1]:g} s tones, labels of {NUM_CLASSES} classes at 50 Hz",
                "steps": f"{sizes.train_epochs} epochs x {sizes.train_iters_per_epoch} iterations"
                f" = {steps}, batch_bins {sizes.train_batch_bins}, lr warm-up 10 steps",
                "command": " ".join(command),
            },
            "returncode": returncode,
            "wall_s": wall,
            "windows": windows,
            "first_window_loss": losses[0] if losses else None,
            "last_window_loss": losses[-1] if losses else None,
            "finite": bool(losses) and all(math.isfinite(x) for x in losses),
            "falling": len(losses) > 1 and losses[-1] < losses[0],
            "use_amp": trained.get("use_amp"),
            "bf16_supported": device.type == "cuda" and torch.cuda.is_bf16_supported(),
            "amp_bf16": bool(trained.get("use_amp"))
            and device.type == "cuda"
            and torch.cuda.is_bf16_supported(),
            "checkpoint": (exp / "checkpoint.pth").exists(),
        }
    )
    if returncode != 0:
        ended = (
            "was stopped at the part's deadline" if returncode is None else f"exited {returncode}"
        )
        raise RuntimeError(f"ssl_train {ended}: see ssl_train.log")


# --------------------------------------------------------------------------- parts as processes


PART_RUNNERS: Dict[str, Callable[[CheckSizes, torch.device, argparse.Namespace, Save], None]] = {
    "a": run_parity,
    "b": run_step,
    "c": run_features,
    "d": run_train,
}


def run_process_group(
    command: Sequence[str], log_file: Any, timeout_s: float, **kwargs: Any
) -> Optional[int]:
    """Run ``command`` in a process group of its own; kill the group after ``timeout_s``.

    The repository root goes first on its ``PYTHONPATH``, so that ``espnet_ils`` imports from the
    working tree (the GPU machine has no installed copy).

    Returns:
        The exit code, or None when it was killed at the timeout.
    """
    path = os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))
    process = subprocess.Popen(
        command,
        stdout=log_file,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        env=dict(os.environ, PYTHONPATH=path),
        **kwargs,
    )
    try:
        return process.wait(timeout=max(timeout_s, 1.0))
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        return None


def run_part_here(args: argparse.Namespace) -> None:
    """The body of one part's subprocess: results to ``<work>/part_<X>.json`` as they come."""
    sizes = TINY if args.tiny else FULL
    device = torch.device(args.device)
    result_path = args.work / f"part_{args.run_part}.json"

    def save(result: Dict[str, Any]) -> None:
        write_atomic(result_path, json.dumps(result, indent=1, default=str))

    from espnet_ils.train.offline import defer_g2p_en_import

    defer_g2p_en_import()  # before ESPnet's tasks: their g2p_en import reaches for NLTK data
    PART_RUNNERS[args.run_part](sizes, device, args, save)


def run_part(part: str, args: argparse.Namespace, budget_s: float) -> Dict[str, Any]:
    """Run part ``part`` in a subprocess with ``budget_s`` seconds; returns its report."""
    deadline = time.time() + budget_s
    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--run-part",
        part,
        "--work",
        str(args.work),
        "--deadline",
        str(deadline),
        "--device",
        args.device,
        "--seed",
        str(args.seed),
    ] + (["--tiny"] if args.tiny else [])
    log.info("part %s (%s): budget %.0f s", part, PART_NAMES[part], budget_s)
    started = time.perf_counter()
    with (args.work / f"part_{part}.log").open("w", encoding="utf-8") as log_file:
        returncode = run_process_group(command, log_file, budget_s)
    wall = time.perf_counter() - started
    result_path = args.work / f"part_{part}.json"
    result = json.loads(result_path.read_text()) if result_path.exists() else {}
    if returncode == 0:
        status = "ok"
    elif returncode is None:
        status = f"timed out after {budget_s:.0f} s" + (" (partial results)" if result else "")
    else:
        tail = (args.work / f"part_{part}.log").read_text(errors="replace").strip().splitlines()
        status = f"failed (exit {returncode}): {tail[-1][:300] if tail else 'no output'}"
    log.info("part %s: %s in %.1f s", part, status, wall)
    return {
        "name": PART_NAMES[part],
        "status": status,
        "wall_s": wall,
        "budget_s": budget_s,
        "result": result,
    }


def machine_info(device: str) -> Dict[str, str]:
    """Versions and hardware the figures depend on."""
    info = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpu cores": str(len(os.sched_getaffinity(0))),
    }
    for package in ("torchaudio", "espnet"):
        try:
            info[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            info[package] = "not installed"
    info["device"] = torch.cuda.get_device_name() if device == "cuda" else bench.cpu_model_name()
    return info


# --------------------------------------------------------------------------- report


def number(value: Optional[float], digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
        return str(value)
    return f"{value:.{digits}g}"


def format_parity(result: Dict[str, Any]) -> List[str]:
    """Markdown: one row per T, bias case and backend; errors against the fp32 reference."""
    lines = [f"- {key}: {value}" for key, value in result.get("setup", {}).items()]
    lines += [
        "",
        "| T | bias | backend | forward | out rel | out max | backward | dq rel | dk rel | "
        "dv rel | dbias rel | grads max abs |",
        "|---:|---|---|---|---:|---:|---|---:|---:|---:|---:|---:|",
    ]
    reasons: Dict[str, int] = {}  # footnotes: reason -> number

    def status(stage: Dict[str, Any]) -> str:
        if "reason" not in stage:
            return stage["status"]
        return f"{stage['status']} [{reasons.setdefault(stage['reason'], len(reasons) + 1)}]"

    def error(stage: Dict[str, Any], name: str, kind: str) -> str:
        return number(stage[name][kind]) if name in stage else "-"

    for row in result.get("rows", []):
        forward, backward = row["forward"], row["backward"]
        grads_max = [backward[name]["max_abs"] for name in GRAD_NAMES if name in backward]
        cells = [str(row["frames"]), row["bias"], row["backend"]]
        cells += [status(forward), error(forward, "out", "rel"), error(forward, "out", "max_abs")]
        cells += [status(backward)] + [error(backward, name, "rel") for name in GRAD_NAMES]
        cells.append(number(max(grads_max)) if grads_max else "-")
        lines.append("| " + " | ".join(cells) + " |")
    if reasons:
        lines.append("")
        lines += [f"[{index}] {reason}" for reason, index in reasons.items()]
    path = result.get("encoder_path")
    if path:
        lines += [
            "",
            f"Encoder path (`SDPAAttentionKernel` under `sdpa_backends`, bf16 forward + backward): "
            f"SDPA backend {', '.join(path['picked']) or 'none seen'}; kernels: "
            f"{', '.join(path['kernels']) or '-'}",
        ]
    if "dynamo" in result:
        lines.append(f"torch.compile counters after the flex runs: {result['dynamo']}")
    return lines


FLOP_TERMS = (
    ("conv_front", "conv front, sum_i 2 C_{i-1} C_i k_i T_i"),
    ("projection", "feature projection, 2 T C D"),
    ("pos_conv", "conv positions, 2 T D (D/G) K"),
    ("block_linears", "block linears, L x 2 T (4 D^2 + 2 D F)"),
    ("attention", "attention, L x 2 x 2 T^2 D"),
    ("heads", "heads, |K| x (2 T D P + 2 T P V)"),
)


def format_step(result: Dict[str, Any]) -> List[str]:
    """Markdown: the FLOP count, then one row per model."""
    lines = [f"- {key}: {value}" for key, value in result.get("setup", {}).items()]
    flops, audio_s = result.get("flops"), result.get("audio_seconds")
    if flops:
        lines += [
            "",
            "Model FLOPs per step (`bench_pretrain_step.step_flops`; 2 per multiply-add):",
            "",
        ]
        lines += [f"- {label}: {flops[key] / 1e9:.4g} GFLOP forward" for key, label in FLOP_TERMS]
        lines.append(
            f"- step = 3 x forward - conv_1 (no input gradient for the waveform) = "
            f"{flops['step'] / 1e9:.4g} GFLOP = {flops['step'] / audio_s / 1e9:.1f} GFLOP per "
            "audio second (estimated ~43 for BASE before this count, without the conv "
            "positions: bench/README.md)"
        )
    lines += [
        "",
        f"| model | status | params (M) | median step (s) | min step (s) | audio s/s | TFLOP/s | "
        f"MFU ({result.get('peak_tflops', PEAK_BF16_TFLOPS):g}) | peak mem (GiB) |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    syncs = None
    for row in result.get("models", {}).values():
        if row["status"] != "ok":
            lines.append(f"| {row['label']} | excluded: {row['reason']} | | | | | | | |")
            continue
        peak = row["peak_mib"] / 1024 if row["peak_mib"] is not None else None
        mfu = f"{100 * row['mfu']:.1f}%" if row["mfu"] is not None else "-"
        lines.append(
            f"| {row['label']} | ok | {row['params_m']:.2f} | {row['median_s']:.4f} | "
            f"{row['min_s']:.4f} | {row['audio_s_per_s']:.0f} | {row['tflops']:.1f} | {mfu} | "
            f"{number(peak)} |"
        )
        syncs = row.get("host_syncs", syncs)
    if isinstance(syncs, list):
        lines += ["", "Host syncs of one ILS step (`torch.cuda.set_sync_debug_mode('warn')`):", ""]
        lines += [f"- {s['count']} x `{s['where']}`: `{s['code']}`" for s in syncs] or ["- none"]
    elif syncs:
        lines += ["", f"Host syncs of one ILS step: {syncs}"]
    return lines


def format_features(result: Dict[str, Any]) -> List[str]:
    lines = [f"- {key}: {value}" for key, value in result.get("setup", {}).items()]
    if "audio_hours_per_minute" in result:
        lines.append(
            f"- {result['audio_hours']:.3f} h of audio in {result['seconds']:.2f} s: "
            f"**{result['audio_hours_per_minute']:.2f} audio hours per minute** "
            f"(real-time factor {result['real_time_factor']:.2e})"
        )
    return lines


def format_train(result: Dict[str, Any]) -> List[str]:
    lines = [
        f"- {key}: {value}" for key, value in result.get("setup", {}).items() if key != "command"
    ]
    if "returncode" in result:
        windows = ", ".join(
            f"e{w['epoch']} {w['first']}-{w['last']}: {w['loss']:.3f}" for w in result["windows"]
        )
        lines += [
            f"- exit code {result['returncode']} after {result['wall_s']:.1f} s; checkpoint "
            f"written: {result['checkpoint']}",
            f"- loss per logged window: {windows or 'none logged'}",
            f"- first window {number(result['first_window_loss'], 4)} -> last window "
            f"{number(result['last_window_loss'], 4)}: finite {result['finite']}, falling "
            f"{result['falling']}",
            f"- use_amp {result['use_amp']}, bf16 supported {result['bf16_supported']}: ESPnet's "
            f"trainer autocasts to bf16: {result['amp_bf16']} (espnet2/train/trainer.py "
            "picks bf16 when CUDA supports it)",
        ]
    return lines


FORMATTERS = {"a": format_parity, "b": format_step, "c": format_features, "d": format_train}
TITLES = {
    "a": "a. Attention backend parity (bf16 against an fp32 math reference)",
    "b": "b. One pretraining step in bf16",
    "c": "c. Iteration-2 feature extraction (block 6)",
    "d": "d. ssl_train with the BASE config (AMP on CUDA)",
}


def format_summary(report: Dict[str, Any]) -> str:
    lines = ["# ILS-SSL device check", ""]
    lines += [f"- {key}: {value}" for key, value in report["machine"].items()]
    lines += [
        f"- mode: {'tiny (dry run)' if report['tiny'] else 'full'}; total wall "
        f"{report['wall_s']:.0f} s",
        "",
        "| part | status | wall (s) | budget (s) |",
        "|---|---|---:|---:|",
    ]
    for part, entry in report["parts"].items():
        lines.append(
            f"| {part}. {entry['name']} | {entry['status']} | {entry['wall_s']:.1f} | "
            f"{entry['budget_s']:.0f} |"
        )
    for part, entry in report["parts"].items():
        lines += ["", f"## {TITLES[part]}", ""]
        lines += FORMATTERS[part](entry["result"]) if entry["result"] else ["(no results)"]
    return "\n".join(lines) + "\n"


def copy_log_tail(source: Path, target: Path, mode: str = "a") -> None:
    """Append (or write) the last ``LOG_TAIL_BYTES`` of ``source`` to ``target``."""
    if not source.exists():
        return
    data = source.read_bytes()[-LOG_TAIL_BYTES:]
    with target.open(mode + "b") as out:
        out.write(f"===== {source.name} =====\n".encode())
        out.write(data)


def main(argv: Optional[Sequence[str]] = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(name)s %(message)s", stream=sys.stderr
    )
    if args.run_part:
        run_part_here(args)
        return
    log.info("arguments: %s", vars(args))
    sizes = TINY if args.tiny else FULL
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="device_check_") as work:
        args.work = Path(work)
        parts = {part: run_part(part, args, sizes.budgets_s[part]) for part in args.parts}
        logs = args.out / "device_check.log"
        logs.write_bytes(b"")
        for part in args.parts:
            copy_log_tail(args.work / f"part_{part}.log", logs)
        if "d" in parts:
            copy_log_tail(args.work / "ssl_train.log", args.out / "ssl_train.log", mode="w")
    report = {
        "machine": machine_info(args.device),
        "tiny": args.tiny,
        "wall_s": time.perf_counter() - started,
        "parts": parts,
    }
    write_atomic(args.out / "device_check.json", json.dumps(report, indent=1, default=str))
    if "a" in parts and parts["a"]["result"]:
        write_atomic(args.out / "parity.json", json.dumps(parts["a"]["result"], indent=1))
        write_atomic(
            args.out / "parity.md",
            "\n".join([f"# {TITLES['a']}", ""] + format_parity(parts["a"]["result"])) + "\n",
        )
    summary = format_summary(report)
    write_atomic(args.out / "summary.md", summary)
    print(summary, end="")


if __name__ == "__main__":
    main()

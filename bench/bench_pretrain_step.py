#!/usr/bin/env python3
"""Time one pretraining step of ILS BASE against ESPnet's and torchaudio's HuBERT BASE.

A step is ``zero_grad`` + forward + backward on one fixed batch (default: 2 utterances of 8 s of
random audio at 16 kHz with random k-means labels at 50 Hz). The models (``--models``; the first
three are the default):

* ``ils``: ILS-SSL BASE built from ``train_ssl_ils_base_it2.yaml`` through ``ILSSSLTask``.
* ``espnet_hubert``: HuBERT BASE from ESPnet's own ``SSLTask`` classes (``wav2vec_cnn`` frontend,
  ``linear`` preencoder, ``transformer`` encoder with conv positions, ``hubert`` loss, ``mask``).
* ``torchaudio_hubert``: ``torchaudio.models.hubert_pretrain_model`` with ``hubert_pretrain_base``'s
  settings and the loss of torchaudio's HuBERT recipe (masked cross-entropy summed over masked
  frames + 10 x feature penalty).
* ``ils_attdrop0``: ``ils`` with ``attention_dropout_rate: 0`` (the fair partner of ``ils_flex``).
* ``ils_flex``: ``ils`` with ``attention_impl: flex`` and ``attention_dropout_rate: 0``
  (FlexAttention has no attention dropout; its backward needs CUDA).

Layerdrop is ``--layerdrop`` (default 0) for all, so every step does the same work. ``--size
tiny`` shrinks every model alike (``TINY``) for dry runs; ``base`` takes the dimensions of the
ILS config (``ils_size``).

On CPU, two phases:

1. Memory. Each model is built in a subprocess of its own (this script re-invoked with
   ``--only NAME``) that runs one step: its peak is the rise of the process's peak RSS
   (``ru_maxrss``) over the RSS before the model was built.
2. Time. All models are built in one process and stepped in turn (``--warmup`` untimed rounds,
   then ``--steps`` timed rounds, the order rotating every round), so load from other jobs on the
   machine falls on all models alike instead of on whichever ran at the wrong moment.

On CUDA no other job shares the device, so each model is measured alone, one after the other in
this process (``measure_alone``): its first step gives the allocator's peak over what was
allocated before the model was built, then come the warm-up and timed steps.

This is a benchmark, not a test: it prints a report (log on stderr, table on stdout).

Example::

    .venv/bin/python bench/bench_pretrain_step.py --steps 5 --warmup 2
"""

import argparse
import ctypes
import functools
import inspect
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
from contextlib import nullcontext, redirect_stdout
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, ContextManager, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import yaml
from torch import nn
from torch.nn import functional as F

REPO_ROOT = Path(__file__).resolve().parents[1]
ILS_CONFIG = REPO_ROOT / "egs2/librispeech_ils/ssl1/conf/tuning/train_ssl_ils_base_it2.yaml"
# espnet_ils.data.audio's SAMPLE_RATE and num_frames, repeated because device_check.py imports this
# module in a process without espnet_ils on its path (only its parts get the repository);
# tests/test_device_check.py checks that they agree.
SAMPLE_RATE = 16000
DEFAULT_MODELS = ("ils", "espnet_hubert", "torchaudio_hubert")
MODELS = DEFAULT_MODELS + ("ils_attdrop0", "ils_flex")
LABELS = {
    "ils": "ILS BASE (espnet_ils)",
    "espnet_hubert": "HuBERT BASE (ESPnet SSLTask)",
    "torchaudio_hubert": "HuBERT BASE (torchaudio)",
    "ils_attdrop0": "ILS BASE, attention dropout 0 (sdpa)",
    "ils_flex": "ILS BASE, attention dropout 0 (flex)",
}
# encoder_conf changes of the ILS variants; `ils` is the config as it is.
ILS_ENCODER_OVERRIDES: Dict[str, Dict[str, Any]] = {
    "ils": {},
    "ils_attdrop0": {"attention_dropout_rate": 0.0},
    "ils_flex": {"attention_impl": "flex", "attention_dropout_rate": 0.0},
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
    parser.add_argument(
        "--size",
        choices=("base", "tiny"),
        default="base",
        help="model dimensions: base (those of --ils-config) or tiny (TINY, for dry runs)",
    )
    parser.add_argument("--ils-config", type=Path, default=ILS_CONFIG, help="ILS SSL config")
    parser.add_argument(
        "--models",
        nargs="+",
        choices=MODELS,
        default=list(DEFAULT_MODELS),
        help=f"models to run (default: {' '.join(DEFAULT_MODELS)})",
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
    if "ils_flex" in args.models and not args.device.startswith("cuda"):
        parser.error("--models ils_flex needs --device cuda: FlexAttention has no CPU backward")
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


def seed_everything(seed: int) -> None:
    """Seed torch, numpy (ESPnet's and torchaudio's mask sampling) and random."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


# --------------------------------------------------------------------------- model sizes


@dataclass(frozen=True)
class ModelSize:
    """The dimensions all models share (``--size``).

    Attributes:
        conv_shapes: ``(channels, kernel, stride)`` of each conv block of the waveform front end
            (BASE: ``(512, 10, 5)``, 4 x ``(512, 3, 2)``, 2 x ``(512, 2, 2)``; stride 320 samples).
        output_size: Transformer width D (768).
        attention_heads: Heads H (12).
        linear_units: Feed-forward width F (3072).
        num_blocks: Transformer blocks L (12).
        conv_pos_kernel: Kernel K of the convolutional positional embedding, in frames (128).
        conv_pos_groups: Its groups G (16).
        final_dim: Width P of the prediction heads' projection (256).
        supervised_layers: ILS's supervised blocks, 1-based ((4, 12)).
    """

    conv_shapes: Tuple[Tuple[int, int, int], ...]
    output_size: int
    attention_heads: int
    linear_units: int
    num_blocks: int
    conv_pos_kernel: int
    conv_pos_groups: int
    final_dim: int
    supervised_layers: Tuple[int, ...]


# Dry runs: same strides (frames at 50 Hz), everything else small.
TINY = ModelSize(
    conv_shapes=((32, 10, 5),) + ((32, 3, 2),) * 4 + ((32, 2, 2),) * 2,
    output_size=64,
    attention_heads=4,
    linear_units=128,
    num_blocks=2,
    conv_pos_kernel=16,
    conv_pos_groups=4,
    final_dim=16,
    supervised_layers=(1, 2),
)


def _defaults(cls: type) -> Dict[str, Any]:
    """Keyword defaults of ``cls``'s constructor."""
    parameters = inspect.signature(cls).parameters.values()
    return {p.name: p.default for p in parameters if p.default is not inspect.Parameter.empty}


def _ils_loss_conf(config: Dict[str, Any]) -> Dict[str, Any]:
    """The ``conf`` of the ``ils`` entry of an SSL config's ``loss`` list."""
    for loss in config["loss"]:
        if loss["name"] == "ils":
            return loss["conf"]
    raise ValueError(
        f"the SSL config has no `ils` loss: {[loss['name'] for loss in config['loss']]}"
    )


def ils_size(config: Dict[str, Any]) -> ModelSize:
    """The dimensions of an ILS SSL config (keys it leaves out take the classes' defaults).

    Args:
        config: The SSL config as a dict (a loaded YAML file, or ``vars`` of the task's args).
    """
    from espnet_ils.model.encoder import ILSTransformerEncoder
    from espnet_ils.model.frontend import DEFAULT_CONV_SHAPES
    from espnet_ils.model.loss import ILSLoss

    encoder = {**_defaults(ILSTransformerEncoder), **config["encoder_conf"]}
    loss = {**_defaults(ILSLoss), **_ils_loss_conf(config)}
    shapes = config["frontend_conf"].get("shapes") or DEFAULT_CONV_SHAPES
    return ModelSize(
        conv_shapes=tuple(tuple(shape) for shape in shapes),
        output_size=encoder["output_size"],
        attention_heads=encoder["attention_heads"],
        linear_units=encoder["linear_units"],
        num_blocks=encoder["num_blocks"],
        conv_pos_kernel=encoder["conv_pos_kernel"],
        conv_pos_groups=encoder["conv_pos_groups"],
        final_dim=loss["final_dim"],
        supervised_layers=tuple(loss["layers"]),
    )


def apply_ils_size(config: Dict[str, Any], size: ModelSize) -> None:
    """Set the dimensions of an ILS SSL config (a dict, changed in place) to ``size``.

    With ``size == ils_size(config)`` nothing changes but that the conv shapes are written out.
    """
    config["frontend_conf"]["shapes"] = [list(shape) for shape in size.conv_shapes]
    config["preencoder_conf"]["output_size"] = size.output_size
    config["encoder_conf"].update(
        output_size=size.output_size,
        attention_heads=size.attention_heads,
        linear_units=size.linear_units,
        num_blocks=size.num_blocks,
        conv_pos_kernel=size.conv_pos_kernel,
        conv_pos_groups=size.conv_pos_groups,
    )
    _ils_loss_conf(config).update(layers=list(size.supervised_layers), final_dim=size.final_dim)


def model_size(args: argparse.Namespace) -> ModelSize:
    """``--size``: ``TINY``, or the dimensions of ``--ils-config``."""
    if args.size == "tiny":
        return TINY
    return ils_size(yaml.safe_load(args.ils_config.read_text(encoding="utf-8")))


def conv_frames(num_samples: int, conv_shapes: Sequence[Tuple[int, int, int]]) -> List[int]:
    """Output length of each conv block for a waveform of ``num_samples`` (no padding)."""
    frames, length = [], num_samples
    for _channels, kernel, stride in conv_shapes:
        length = (length - kernel) // stride + 1
        frames.append(length)
    return frames


def step_flops(
    size: ModelSize, num_samples: int, batch_size: int, num_classes: int
) -> Dict[str, float]:
    """Model FLOPs of one pretraining step (forward + backward) of ILS, counted analytically.

    Matrix products and convolutions only, 2 FLOPs per multiply-add; norms, activations,
    softmax, dropout, the relative bias's additions, masking and the optimizer are left out. For
    one utterance of N samples, with T = T_7 frames at 50 Hz and C = C_7 conv channels:

    * conv front, block i (C_{i-1} -> C_i channels, kernel k_i, stride s_i, C_0 = 1, T_0 = N,
      T_i = floor((T_{i-1} - k_i) / s_i) + 1): ``2 C_{i-1} C_i k_i T_i``;
    * feature projection C -> D: ``2 T C D``;
    * convolutional positional embedding (D -> D, G groups, kernel K): ``2 T D (D / G) K``;
    * each of the L blocks: linears ``2 T (4 D^2 + 2 D F)`` (query, key, value and output
      projections; the two feed-forward layers), attention ``2 * 2 T^2 D`` (Q K^T and A V over
      all heads);
    * each supervised layer's head: ``2 T D P + 2 T P V`` (projection to P = final_dim, cosine
      logits against the V classes).

    The backward pass costs twice the forward (input and weight gradients), except that the
    first conv block needs no input gradient (its input is the waveform):
    ``step = batch_size * (3 * forward - conv_1)``. The HuBERT models do the same work up to
    their single head (the heads are well under 1 % of the step), so the same count serves them.

    Args:
        size: Model dimensions.
        num_samples: Samples per utterance N at 16 kHz (every utterance equally long).
        batch_size: Utterances per step.
        num_classes: k-means classes V.

    Returns:
        Forward FLOPs of the step per term (``conv_front``, ``projection``, ``pos_conv``,
        ``block_linears``, ``attention``, ``heads``), their sum ``forward``, ``conv_1`` and the
        step's total ``step``.
    """
    frames = conv_frames(num_samples, size.conv_shapes)
    channels = [1] + [shape[0] for shape in size.conv_shapes]
    conv = [
        2 * c_in * c_out * kernel * t_out
        for c_in, c_out, (_, kernel, _), t_out in zip(
            channels[:-1], channels[1:], size.conv_shapes, frames
        )
    ]
    t, d, f, p = frames[-1], size.output_size, size.linear_units, size.final_dim
    per_utterance = {
        "conv_front": sum(conv),
        "projection": 2 * t * channels[-1] * d,
        "pos_conv": 2 * t * d * (d // size.conv_pos_groups) * size.conv_pos_kernel,
        "block_linears": size.num_blocks * 2 * t * (4 * d * d + 2 * d * f),
        "attention": size.num_blocks * 2 * 2 * t * t * d,
        "heads": len(size.supervised_layers) * (2 * t * d * p + 2 * t * p * num_classes),
    }
    flops = {name: float(batch_size * value) for name, value in per_utterance.items()}
    flops["forward"] = sum(flops.values())
    flops["conv_1"] = float(batch_size * conv[0])
    flops["step"] = 3 * flops["forward"] - flops["conv_1"]
    return flops


# --------------------------------------------------------------------------- the models


def build_ils(
    args: argparse.Namespace, encoder_overrides: Dict[str, Any]
) -> Tuple[nn.Module, StepLoss]:
    """ILS from its config through ``ILSSSLTask``: ``--size`` dimensions, layerdrop ``--layerdrop``.

    Args:
        args: The benchmark's options.
        encoder_overrides: ``encoder_conf`` entries to change (``ILS_ENCODER_OVERRIDES``).
    """
    import espnet_ils  # noqa: F401  (registers ils_cnn, feature_projection, ils_transformer, ils)
    from espnet_ils.data.labels import cluster_token_list
    from espnet_ils.train.tasks import ILSSSLTask

    task_args = ILSSSLTask.get_parser().parse_args(["--config", str(args.ils_config)])
    config_classes = _ils_loss_conf(vars(task_args))["num_classes"]
    if config_classes != args.num_classes:
        raise ValueError(
            f"{args.ils_config} has num_classes={config_classes}, --num-classes is "
            f"{args.num_classes}: give the same number so all models predict the same classes"
        )
    apply_ils_size(vars(task_args), model_size(args))
    changes = {"layer_drop_rate": args.layerdrop, **encoder_overrides}
    log.info(
        "ils: encoder_conf %s (config) -> %s",
        {key: task_args.encoder_conf.get(key) for key in changes},
        changes,
    )
    task_args.encoder_conf.update(changes)
    task_args.token_list = cluster_token_list(args.num_classes)
    model = ILSSSLTask.build_model(task_args)
    return model, _espnet_ssl_loss(model)


def espnet_hubert_config(args: argparse.Namespace) -> Dict:
    """HuBERT from ESPnet's own SSLTask classes (ESPnet's ``train_hubert.yaml`` layout).

    ESPnet's encoder is post-LN with ``input_layer: wav2vec`` (conv positional embedding, kernel
    128 and 16 groups, which ESPnet does not expose); its feed-forward uses ReLU and one dropout
    rate for everything, which is 0.1 here as in ILS.
    """
    size = model_size(args)
    return {
        "frontend": "wav2vec_cnn",
        "frontend_conf": {
            "norm_mode": "group_norm",
            "conv_mode": "standard",
            "bias": False,
            "shapes": [list(shape) for shape in size.conv_shapes],
        },
        "normalize": None,
        "specaug": None,
        "preencoder": "linear",
        "preencoder_conf": {"output_size": size.output_size, "dropout": 0.1},
        "encoder": "transformer",
        "encoder_conf": {
            "output_size": size.output_size,
            "attention_heads": size.attention_heads,
            "linear_units": size.linear_units,
            "num_blocks": size.num_blocks,
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
                "conf": {
                    "num_classes": args.num_classes,
                    "final_dim": size.final_dim,
                    "layers": [-1],
                },
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
    """ESPnet's native HuBERT through ``espnet2.tasks.ssl.SSLTask`` and ESPnet's classes."""
    from espnet2.tasks.ssl import SSLTask

    from espnet_ils.data.labels import cluster_token_list

    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as config_file:
        yaml.safe_dump(espnet_hubert_config(args), config_file)
    try:
        task_args = SSLTask.get_parser().parse_args(["--config", config_file.name])
    finally:
        os.unlink(config_file.name)
    task_args.token_list = cluster_token_list(args.num_classes)
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
    """torchaudio's HuBERT pretraining model (random init) with its recipe's loss.

    ``hubert_pretrain_model`` with ``hubert_pretrain_base``'s settings (masking 0.8 x 10, feature
    gradient 0.1, post-LN, no conv bias) and the ``--size`` dimensions. It returns logits over
    ``[positive, all classes]`` (the target is column 0) for masked and unmasked frames, and the
    mean squared conv feature. The recipe's loss, with its default weights (masked 1, unmasked 0,
    feature 10, sum reduction), is ``sum_masked CE(logit_m, 0) + 10 * feature_penalty *
    num_masked``.
    """
    from torchaudio.models import hubert_pretrain_model

    size = model_size(args)
    model = hubert_pretrain_model(
        extractor_mode="group_norm",
        extractor_conv_layer_config=list(size.conv_shapes),
        extractor_conv_bias=False,
        encoder_embed_dim=size.output_size,
        encoder_projection_dropout=0.1,
        encoder_pos_conv_kernel=size.conv_pos_kernel,
        encoder_pos_conv_groups=size.conv_pos_groups,
        encoder_num_layers=size.num_blocks,
        encoder_num_heads=size.attention_heads,
        encoder_attention_dropout=0.1,
        encoder_ff_interm_features=size.linear_units,
        encoder_ff_interm_dropout=0.0,
        encoder_dropout=0.1,
        encoder_layer_norm_first=False,
        encoder_layer_drop=args.layerdrop,
        mask_prob=0.8,
        mask_selection="static",
        mask_other=0.0,
        mask_length=10,
        no_mask_overlap=False,
        mask_min_space=1,
        mask_channel_prob=0.0,
        mask_channel_selection="static",
        mask_channel_other=0.0,
        mask_channel_length=10,
        no_mask_channel_overlap=False,
        mask_channel_min_space=1,
        skip_masked=False,
        skip_nomask=False,
        num_classes=args.num_classes,
        final_dim=size.final_dim,
        feature_grad_mult=0.1,
    )

    def loss(batch: Batch) -> torch.Tensor:
        logit_m, _logit_u, feature_penalty = model(batch.speech, batch.labels, batch.speech_lengths)
        targets = logit_m.new_zeros(logit_m.size(0), dtype=torch.long)
        masked_ce = F.cross_entropy(logit_m.float(), targets, reduction="sum")
        return masked_ce + 10.0 * feature_penalty * logit_m.size(0)

    return model, loss


BUILDERS: Dict[str, Callable[[argparse.Namespace], Tuple[nn.Module, StepLoss]]] = {
    **{
        name: functools.partial(build_ils, encoder_overrides=overrides)
        for name, overrides in ILS_ENCODER_OVERRIDES.items()
    },
    "espnet_hubert": build_espnet_hubert,
    "torchaudio_hubert": build_torchaudio_hubert,
}


def import_model_code() -> None:
    """Import what the builders import, so that memory baselines exclude the code itself."""
    import espnet2.tasks.ssl  # noqa: F401
    import torchaudio.models  # noqa: F401

    import espnet_ils.train.tasks  # noqa: F401


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
    forward_backward(model, step_loss, batch, dtype)
    synchronize(device)
    return time.perf_counter() - start, time.process_time() - start_cpu


def forward_backward(model: nn.Module, step_loss: StepLoss, batch: Batch, dtype: str) -> None:
    """``zero_grad`` + forward (under ``dtype`` autocast) + backward, without waiting for them."""
    model.zero_grad(set_to_none=True)
    with autocast(batch.speech.device, dtype):
        loss = step_loss(batch)
    loss.backward()


def current_rss_bytes() -> int:
    """Resident set size of this process now."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE")


def peak_rss_bytes() -> int:
    """Peak resident set size of this process so far (``ru_maxrss`` is in KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def memory_baseline(device: torch.device) -> int:
    """Bytes in use now, from which a step's peak is counted (CUDA: also resets the peak)."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        return torch.cuda.memory_allocated(device)
    return current_rss_bytes()


def memory_peak(device: torch.device, baseline: int) -> Tuple[float, str]:
    """Peak since ``memory_baseline`` above ``baseline``, in MiB, and what kind of peak it is."""
    if device.type == "cuda":
        return (torch.cuda.max_memory_allocated(device) - baseline) / 2**20, "CUDA allocator peak"
    return (peak_rss_bytes() - baseline) / 2**20, "peak RSS increase"


def measure_memory(name: str, args: argparse.Namespace) -> Memory:
    """Peak memory of building ``name`` and running one step; needs a process of its own."""
    device = torch.device(args.device)
    import_model_code()
    batch = make_batch(args, device)
    baseline = memory_baseline(device)
    model, step_loss = build(name, args, device)
    wall, _ = train_step(model, step_loss, batch, device, args.dtype)
    peak_mib, kind = memory_peak(device, baseline)
    log.info("%s: one step (%.1f s) peaked at %.0f MiB (%s)", name, wall, peak_mib, kind)
    return Memory(name, count_params_m(model), peak_mib, kind)


def measure_alone(
    name: str, args: argparse.Namespace, batch: Batch
) -> Tuple[Result, nn.Module, StepLoss]:
    """Build ``name`` and step it on its own: for a device no other job shares (a GPU).

    The first step is a warm-up step (``--warmup``, at least one) that also gives the memory: on
    CUDA the allocator's peak over what was allocated before the model was built; elsewhere the
    process's peak RSS is spoilt by what ran before, and the peak is -1 (not measured). Then come
    the other warm-up steps (torch.compile's first steps compile) and ``--steps`` timed ones.

    Returns:
        The result, and the model with its loss (for more measurements; drop them to free it).
    """
    device = torch.device(args.device)
    baseline = memory_baseline(device)
    model, step_loss = build(name, args, device)
    timing = Timing([], [])
    for index in range(max(args.warmup, 1) + args.steps):
        wall, cpu = train_step(model, step_loss, batch, device, args.dtype)
        if index == 0:
            peak_mib = memory_peak(device, baseline)[0] if device.type == "cuda" else -1.0
        if index >= max(args.warmup, 1):
            timing.wall_s.append(wall)
            timing.cpu_s.append(cpu)
        log.info("%s step %d: %.3f s (CPU %.3f s)", name, index + 1, wall, cpu)
    model.zero_grad(set_to_none=True)
    return Result(name, count_params_m(model), peak_mib, timing), model, step_loss


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
    args: argparse.Namespace,
    results: List[Result],
    info: Dict[str, str],
    schedule: str,
    peak_kind: str,
) -> None:
    samples = int(args.seconds * SAMPLE_RATE)
    flops = step_flops(model_size(args), samples, args.batch_size, args.num_classes)["step"]
    print("Pretraining step (zero_grad + forward + backward), same batch for every model")
    for key, value in info.items():
        print(f"  {key}: {value}")
    print(
        f"  batch: {args.batch_size} x {args.seconds:g} s random audio ({samples} samples), "
        f"{num_frames(samples)} label frames, {args.num_classes} classes; layerdrop "
        f"{args.layerdrop:g} for all; {args.size} size, {flops / 1e9:.4g} GFLOP per step "
        "(step_flops)"
    )
    print(
        f"  timing: {args.warmup} warm-up + {args.steps} timed steps per model, {schedule}; "
        f"malloc {args.malloc if args.device == 'cpu' else '-'}; memory: {peak_kind}"
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


def results_in_turn(args: argparse.Namespace, argv: Sequence[str]) -> Tuple[List[Result], str]:
    """CPU: each model's memory in a subprocess, then all models timed in turn (``time_models``).

    Returns:
        One result per model and what kind of memory peak they give.
    """
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
    return results, next(iter(memory.values())).peak_kind if memory else "not measured"


def results_alone(args: argparse.Namespace) -> Tuple[List[Result], str]:
    """CUDA: each model measured alone (``measure_alone``), one after the other, in this process.

    Returns:
        One result per model and what kind of memory peak they give.
    """
    device = torch.device(args.device)
    batch = make_batch(args, device)
    results = []
    for name in args.models:
        result, model, step_loss = measure_alone(name, args, batch)
        if args.profile:
            profile_step(name, model, step_loss, batch, device, args.dtype, args.profile)
        results.append(result)
        del model, step_loss
        torch.cuda.empty_cache()
    return results, "CUDA allocator peak"


def main(argv: Optional[Sequence[str]] = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(name)s %(message)s", stream=sys.stderr
    )
    from espnet_ils.train.offline import defer_g2p_en_import

    defer_g2p_en_import()  # before ESPnet's tasks: their g2p_en import reaches for NLTK data
    torch.set_num_threads(args.threads)
    if args.only:
        memory = measure_memory(args.only, args)
        print(RESULT_PREFIX + json.dumps(asdict(memory)), flush=True)
        return

    info = machine_info(args)
    if args.device.startswith("cuda"):
        results, peak_kind = results_alone(args)
        schedule = "each model alone"
    else:
        results, peak_kind = results_in_turn(args, argv)
        schedule = "models in turn"
    report(args, results, info, schedule, peak_kind)


if __name__ == "__main__":
    main()

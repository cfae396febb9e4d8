#!/usr/bin/env python3
"""Data-loader memory per training process at Libri-Light scale, without and with ESPnet's split
iterator (``ils.sh --num_splits_ssl``).

The manifest is of the real 60k-hour size without audio: Libri-Light unlab-60k cut into ~20 s
utterances (``cut_by_vad.py``'s target; durations uniform in 16-24 s), 60000 h -> 10.8M
utterances, each with a ``wav.scp`` line (a plausible Libri-Light path), a ``speech_shape`` line
(samples at 16 kHz) and a label ``text`` line of 50 k-means labels per second (values 0..499, as
stage 5 writes them). ESPnet's training task reads these the way a training does: the iterator is
built by ``ILSSSLTask.build_iter_factory`` (no split) or ``ILSSSLTask.build_multiple_iter_factory``
(split) from the arguments ``ils.sh`` passes, with the LARGE config (numel batches), in a fresh
process per measurement; the figure is that process's peak RSS (``ru_maxrss``) over its RSS just
before the build (after imports), i.e. what the data loader holds: the ``wav.scp`` and label dicts,
the shape dict of the batch sampler and the batches.

* (a) No split: the whole manifest in one process. At full size the label text alone is ~40 GB on
  disk and more in memory, beyond this machine, so it is measured at smaller sizes
  (``--fit_hours``) and extrapolated linearly to ``--hours`` (the output says which figures are
  extrapolated).
* (b) Split into ``--num_splits`` parts (0: the fewest whose predicted walk peak is within
  ``--target_gb``, from (a)'s fit): ESPnet's ``MultipleIterFactory`` builds one part at a time,
  but holds the previous part until the next one is built, so the peak per process is that of
  building part 2 with part 1 alive. Only parts 0 and 1 of the manifest of the real size are
  written (the parts of ``espnet_ils.data.splits``, by key hash, as the recipe's ``split_scps`` would
  cut the whole manifest); the other parts are links to part 0, never built, so that ESPnet's
  check that every part exists passes. The walk repeats what ``MultipleIterFactory.build_iter``
  does, without reading audio (there is none): each part's factory is built and its epoch iterator
  made.

Also printed: the seconds to build one part; ESPnet rebuilds every part once per epoch.

    .venv/bin/python bench/bench_manifest_memory.py                 # small: 1.5 min on 2 cores
    .venv/bin/python bench/bench_manifest_memory.py --mode full     # 60k h: 5 min, 3 GB of disk

This is a benchmark, not a test: it prints a report (log on stderr, figures on stdout).
"""

import argparse
import contextlib
import json
import logging
import math
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np

with contextlib.redirect_stdout(sys.stderr):  # ESPnet prints a notice on import; stdout: figures
    from espnet2.train.distributed_utils import DistributedOption

    from espnet_ils.data.splits import key_hash  # (importing espnet_ils registers our classes)
    from espnet_ils.train.tasks import ILSSSLTask

REPO = Path(__file__).resolve().parents[1]
RECIPE = REPO / "egs2/librispeech_ils/ssl1"
CONFIG = RECIPE / "conf/tuning/train_ssl_ils_large.yaml"

SAMPLE_RATE = 16000
WINDOW, HOP = 400, 320  # the encoder's 50 Hz frames (espnet_ils.data.audio.num_frames)
NUM_CLASSES = 500
SECONDS = (16.0, 24.0)  # per utterance, uniform: mean 20 s
UTTERANCE_SECONDS = sum(SECONDS) / 2
# Libri-Light's layout, large/<speaker>/<book>/<file>.flac, each file (a chapter, ~15 min) cut into
# 20 s pieces <file>_<segment>.flac.
SEGMENTS_PER_FILE = 45
FILES_PER_BOOK = 20
BOOKS_PER_SPEAKER = 5
CHUNK = 4096  # utterances per random draw (each chunk has its own seed: parts are reproducible)
FILES = ("wav.scp", "text", "speech_shape")

MODES = {
    "small": {"hours": 400.0, "fit_hours": [50.0, 100.0, 200.0], "num_splits": 4},
    "full": {"hours": 60000.0, "fit_hours": [250.0, 500.0, 1000.0, 2000.0], "num_splits": 0},
}

logger = logging.getLogger("bench_manifest_memory")


def utterance(index: int) -> tuple:
    """Key and audio path of utterance ``index`` (keys sort as the indices)."""
    file, segment = divmod(index, SEGMENTS_PER_FILE)
    book = file // FILES_PER_BOOK
    speaker = book // BOOKS_PER_SPEAKER
    book_dir = f"book{book:06d}_librivox_64kb_mp3"
    name = f"chapter{file:07d}_64kb_{segment:04d}"
    key = f"{speaker:05d}-{book_dir}-{name}"
    return key, f"/data/librilight/unlab-60k_cut20s/large/{speaker:05d}/{book_dir}/{name}.flac"


def num_utterances(hours: float) -> int:
    return max(1, round(hours * 3600 / UTTERANCE_SECONDS))


@dataclass
class Manifest:
    """What ``write_manifest`` wrote."""

    utterances: int  # of the whole manifest
    written: int  # lines per file (the parts' only, when parts are written)
    bytes: Dict[str, int] = field(default_factory=dict)  # per file name


def write_manifest(
    out_dir: Path,
    hours: float,
    seed: int = 0,
    num_splits: int = 1,
    parts: Sequence[int] = (),
) -> Manifest:
    """Write the manifest of ``hours`` of audio: ``out_dir/{wav.scp,text,speech_shape}``, or with
    ``num_splits`` > 1 only ``parts`` of it in ESPnet's split layout
    (``out_dir/<name>/split.<i>``, ``<name>/num_splits``; the parts not written are links to the
    first one written). An utterance's line is the same whichever parts are written.
    """
    out_dir = Path(out_dir)
    tokens = np.array([str(i).encode() for i in range(NUM_CLASSES)], dtype=object)
    total = num_utterances(hours)
    if num_splits > 1:
        if not parts or not set(parts) <= set(range(num_splits)):
            raise ValueError(f"parts {list(parts)} of num_splits={num_splits}")
        paths = {(n, p): out_dir / n / f"split.{p}" for n in FILES for p in parts}
    else:
        parts = [0]
        paths = {(n, 0): out_dir / n for n in FILES}
    for path in paths.values():
        path.parent.mkdir(parents=True, exist_ok=True)
    handles = {k: p.open("wb", buffering=1 << 20) for k, p in paths.items()}
    written = 0
    try:
        for start in range(0, total, CHUNK):
            count = min(CHUNK, total - start)
            rng = np.random.default_rng([seed, start // CHUNK])
            samples = (rng.uniform(*SECONDS, size=count) * SAMPLE_RATE).astype(np.int64)
            frames = (samples - WINDOW) // HOP + 1
            labels = rng.integers(0, NUM_CLASSES, size=int(frames.sum()), dtype=np.int16)
            ends = np.cumsum(frames)
            for i in range(count):
                key, path = utterance(start + i)
                part = key_hash(key.encode()) % num_splits if num_splits > 1 else 0
                if part not in parts:
                    continue
                ids = labels[ends[i] - frames[i] : ends[i]]
                k = key.encode()
                handles["wav.scp", part].write(k + b" " + path.encode() + b"\n")
                handles["speech_shape", part].write(k + b" %d\n" % samples[i])
                handles["text", part].write(k + b" " + b" ".join(tokens[ids].tolist()) + b"\n")
                written += 1
    finally:
        for handle in handles.values():
            handle.close()
    if num_splits > 1:
        for name in FILES:
            for p in range(num_splits):
                link = out_dir / name / f"split.{p}"
                if p not in parts:
                    link.unlink(missing_ok=True)
                    link.symlink_to(f"split.{parts[0]}")
            (out_dir / name / "num_splits").write_text(f"{num_splits}\n")
    sizes = {n: sum(paths[n, p].stat().st_size for p in parts) for n in FILES}
    return Manifest(utterances=total, written=written, bytes=sizes)


def rss_bytes() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


def measure(data: Path, token_list: Path, output_dir: Path, split: bool, walk: int) -> dict:
    """In this process: build the training iterator as ESPnet's task does; memory and times."""
    cmd = ["--config", str(CONFIG), "--token_list", str(token_list), "--token_type", "word"]
    cmd += ["--output_dir", str(output_dir), "--ngpu", "0", "--multiple_iterator", str(split)]
    for mode in ("train", "valid"):  # the valid set is not built here
        cmd += [f"--{mode}_data_path_and_name_and_type", f"{data}/wav.scp,speech,sound"]
        cmd += [f"--{mode}_data_path_and_name_and_type", f"{data}/text,text,text"]
        cmd += [f"--{mode}_shape_file", f"{data}/speech_shape"]
    args = ILSSSLTask.get_parser().parse_args(cmd)
    option = DistributedOption()  # one process, as ESPnet's main_worker without DDP
    before = rss_bytes()
    result = {"rss_before": before, "parts": []}
    start = time.perf_counter()
    if split:
        factory = ILSSSLTask.build_multiple_iter_factory(args, option, "train")
        iter_factory = None
        for build in factory.build_funcs[:walk]:
            part_start = time.perf_counter()
            # As MultipleIterFactory.build_iter: the previous part stays referenced until this
            # assignment, i.e. while the next one is built.
            iter_factory = build()
            batches = len(iter_factory.sampler)
            iter_factory.build_iter(1)
            result["parts"].append(
                {
                    "seconds": time.perf_counter() - part_start,
                    "batches": batches,
                    "peak": peak_rss_bytes() - before,
                    "rss": rss_bytes() - before,
                }
            )
    else:
        iter_factory = ILSSSLTask.build_iter_factory(args, option, "train")
        result["batches"] = len(iter_factory.sampler)
        iter_factory.build_iter(1)
    result["seconds"] = time.perf_counter() - start
    result["peak"] = peak_rss_bytes() - before
    result["peak_total"] = peak_rss_bytes()
    return result


def measure_in_child(data: Path, token_list: Path, workdir: Path, split: bool, walk: int) -> dict:
    """``measure`` in a fresh process (this script with ``--measure``)."""
    out = workdir / "measure.json"
    cmd = [sys.executable, __file__, "--measure", str(data), "--token_list", str(token_list)]
    cmd += ["--workdir", str(workdir), "--walk", str(walk)] + (["--split"] if split else [])
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return json.loads(out.read_text())


def gib(n: float) -> str:
    return f"{n / 2**30:.2f}"


def fit_line(x: List[float], y: List[float]) -> tuple:
    """Least-squares slope and intercept."""
    slope, intercept = np.polyfit(np.asarray(x), np.asarray(y), 1)
    return float(slope), float(intercept)


def check_disk(workdir: Path, need: float, what: str) -> None:
    free = shutil.disk_usage(workdir).free
    if need > 0.9 * free:
        raise SystemExit(
            f"{what} needs about {gib(need)} GiB of disk, {workdir} has {gib(free)} GiB free: "
            "use a --workdir on a larger disk or fewer --hours"
        )


def text_bytes(hours: float) -> float:
    """About the label text's size: 50 labels/s of ~3.8 bytes each (up to 3 digits and a space)."""
    return hours * 3600 * 50 * 3.8


def run(args: argparse.Namespace, workdir: Path) -> None:
    token_list = workdir / "tokens.txt"
    token_list.write_text("".join(f"{i}\n" for i in range(NUM_CLASSES)) + "<unk>\n")
    cpu = next(
        (line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if "model name" in line),
        "?",
    )
    ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    print(
        f"machine: {cpu}, {os.cpu_count()} cores, {gib(ram)} GiB RAM; config {CONFIG.name}; "
        f"utterances of {SECONDS[0]:g}-{SECONDS[1]:g} s, 50 labels/s"
    )

    # (a) no split, at the fit sizes
    print("\n(a) no split: data-loader memory of one training process")
    print("| hours | utterances | text (GiB on disk) | batches | build (s) | data loader (GiB) |")
    print("|---:|---:|---:|---:|---:|---:|")
    fit_x, fit_y = [], []
    for hours in args.fit_hours:
        check_disk(workdir, text_bytes(hours) * 1.3, f"the {hours:g} h manifest")
        data = workdir / f"unsplit_{hours:g}h"
        manifest = write_manifest(data, hours, args.seed)
        result = measure_in_child(data, token_list, workdir, split=False, walk=0)
        shutil.rmtree(data)
        fit_x.append(hours)
        fit_y.append(result["peak"])
        print(
            f"| {hours:g} | {manifest.utterances} | {gib(manifest.bytes['text'])} | "
            f"{result['batches']} | {result['seconds']:.1f} | {gib(result['peak'])} |"
        )
    slope, intercept = fit_line(fit_x, fit_y)
    full = slope * args.hours + intercept
    print(
        f"linear fit: {gib(slope * 1000)} GiB per 1000 h {intercept / 2**30:+.2f} GiB; "
        f"at {args.hours:g} h ({num_utterances(args.hours)} utterances, label text "
        f"~{gib(text_bytes(args.hours))} GiB on disk): {gib(full)} GiB per process "
        f"(extrapolated, not measured)"
    )

    # (b) split, at the real size: parts 0 and 1
    num_splits = args.num_splits
    if num_splits == 0:  # the walk holds two parts: 2 * slope * hours / N + intercept <= target
        room = 0.9 * args.target_gb * 1e9 - intercept
        num_splits = max(2, math.ceil(2 * slope * args.hours / room))
        print(
            f"num_splits chosen: {num_splits} (the fewest whose predicted walk peak, two parts, "
            f"is within 90% of {args.target_gb:g} GB)"
        )
    check_disk(workdir, text_bytes(args.hours) * 2 / num_splits * 1.3, "parts 0 and 1")
    data = workdir / f"split{num_splits}"
    start = time.perf_counter()
    manifest = write_manifest(data, args.hours, args.seed, num_splits, parts=(0, 1))
    written = time.perf_counter() - start
    result = measure_in_child(data, token_list, workdir, split=True, walk=2)
    shutil.rmtree(data)
    print(
        f"\n(b) split into {num_splits} parts, {args.hours:g} h ({manifest.utterances} utterances; "
        f"parts 0 and 1 written: {manifest.written} utterances, "
        f"{gib(manifest.bytes['text'])} GiB of text, in {written:.0f} s): measured"
    )
    print("| part | batches | build (s) | data loader after it (GiB) | peak so far (GiB) |")
    print("|---:|---:|---:|---:|---:|")
    for i, part in enumerate(result["parts"]):
        print(
            f"| {i} | {part['batches']} | {part['seconds']:.1f} | {gib(part['rss'])} | "
            f"{gib(part['peak'])} |"
        )
    met = "met" if result["peak"] <= args.target_gb * 1e9 else "NOT met"
    print(
        f"peak data-loader memory per training process with {num_splits} parts: "
        f"{gib(result['peak'])} GiB (process peak {gib(result['peak_total'])} GiB), target "
        f"<= {args.target_gb:g} GB ({gib(args.target_gb * 1e9)} GiB): {met}; without split: "
        f"{gib(full)} GiB (extrapolated)"
    )
    print(
        f"rebuild cost: ESPnet rebuilds every part once per epoch: {num_splits} x "
        f"{result['parts'][-1]['seconds']:.1f} s = "
        f"{num_splits * result['parts'][-1]['seconds'] / 60:.1f} min of reading per epoch "
        "and process"
    )


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mode", choices=sorted(MODES), default="small")
    parser.add_argument("--hours", type=float, help="Manifest size of (b) and of the forecast")
    parser.add_argument("--fit_hours", type=float, nargs="+", help="Sizes measured in (a)")
    parser.add_argument("--num_splits", type=int, help="Parts in (b); 0: choose from (a)")
    parser.add_argument(
        "--target_gb", type=float, default=4.0, help="Per-process target (GB, 10^9 bytes)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--workdir",
        type=Path,
        help="Scratch folder, deleted at the end (default: a new one in /tmp)",
    )
    parser.add_argument("--measure", type=Path, help=argparse.SUPPRESS)  # the child's data dir
    parser.add_argument("--token_list", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--split", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--walk", type=int, default=2, help=argparse.SUPPRESS)
    return parser


def main(cmd: Optional[List[str]] = None) -> None:
    args = get_parser().parse_args(cmd)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    if args.measure:
        result = measure(args.measure, args.token_list, args.workdir / "exp", args.split, args.walk)
        (args.workdir / "measure.json").write_text(json.dumps(result))
        return
    for name, value in MODES[args.mode].items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    if args.num_splits < 0 or args.num_splits == 1:
        raise SystemExit(f"--num_splits {args.num_splits}: >= 2, or 0 to choose from (a)")
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="bench_manifest_"))
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        run(args, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()

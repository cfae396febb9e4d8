#!/usr/bin/env python3
"""Benchmark of the label pipeline on the embedded mini corpus: MFCC, k-means fit, label assignment.

    python bench/bench_labels.py --data egs2/librispeech_ils/ssl1/data_mini/train --n_clusters 100

Prints, in one run: MFCC extraction speed (audio seconds per second, one core), and for the
HuBERT reference k-means settings and the faster settings on offer (fewer k-means++ restarts), the
fit time, the label assignment time and the final inertia per frame, with the inertia relative to
the reference. A faster setting may become the default only where its inertia is within 1%.
"""

import argparse
import logging
import time
from pathlib import Path
from typing import Dict, List

import numpy as np
import torch

from espnet_ils.data.audio import SAMPLE_RATE, load_waveform
from espnet_ils.data.kaldi_files import read_key_file
from espnet_ils.targets.kmeans import REFERENCE_SETTINGS, fit_kmeans
from espnet_ils.targets.mfcc import compute_mfcc
from espnet_ils.targets.selection import choose_utterances

logger = logging.getLogger("bench_labels")


def mfcc_of(data: Path, max_utts: int) -> Dict[str, np.ndarray]:
    """MFCC of the first ``max_utts`` utterances; logs audio seconds per second."""
    wav_scp = list(read_key_file(data / "wav.scp").items())[:max_utts]
    audio_seconds, elapsed, features = 0.0, 0.0, {}
    for utt, path in wav_scp:
        wave = load_waveform(path, utt)
        start = time.perf_counter()
        features[utt] = compute_mfcc(wave)
        elapsed += time.perf_counter() - start
        audio_seconds += len(wave) / SAMPLE_RATE
    print(
        f"MFCC: {audio_seconds / 60:.1f} min of audio in {elapsed:.1f} s = {audio_seconds / elapsed:.0f} x real time (1 thread)"
    )
    return features


def bench_kmeans(
    features: Dict[str, np.ndarray], n_clusters: int, portion: float, n_inits: List[int], seed: int
) -> None:
    fit_utts = choose_utterances(sorted(features), portion, seed)
    fit_frames = np.concatenate([features[u] for u in fit_utts])
    all_frames = np.concatenate(list(features.values()))
    print(
        f"k-means {n_clusters}: fit on {len(fit_frames)} frames ({len(fit_utts)} utterances), assign {len(all_frames)} frames"
    )
    print("| n_init | fit (s) | assign (s) | inertia/frame (all frames) | vs reference |")
    print("|---|---|---|---|---|")
    reference = None
    for n_init in n_inits:
        start = time.perf_counter()
        model = fit_kmeans(fit_frames, n_clusters, seed, {"n_init": n_init})
        fit_time = time.perf_counter() - start
        start = time.perf_counter()
        model.predict(all_frames)
        assign_time = time.perf_counter() - start
        inertia = -model.score(all_frames) / len(all_frames)
        reference = inertia if reference is None else reference
        tag = " (reference)" if n_init == REFERENCE_SETTINGS["n_init"] else ""
        print(
            f"| {n_init}{tag} | {fit_time:.1f} | {assign_time:.2f} | {inertia:.2f} | {100 * (inertia / reference - 1):+.2f}% |"
        )


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="Data directory with wav.scp")
    parser.add_argument("--max_utts", type=int, default=100000)
    parser.add_argument("--n_clusters", type=int, default=100)
    parser.add_argument("--portion", type=float, default=0.1, help="Share of utterances to fit on")
    parser.add_argument(
        "--n_init",
        type=int,
        nargs="+",
        default=[REFERENCE_SETTINGS["n_init"], 5, 3, 1],
        help="first = reference",
    )
    parser.add_argument("--seed", type=int, default=0)
    return parser


def main() -> None:
    args = get_parser().parse_args()
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(1)
    print(
        f"machine: {Path('/proc/cpuinfo').read_text().split('model name')[1].split(':')[1].splitlines()[0].strip()}, torch {torch.__version__}"
    )
    features = mfcc_of(args.data, args.max_utts)
    bench_kmeans(features, args.n_clusters, args.portion, args.n_init, args.seed)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Stage 5 (iteration-2 targets): bytes written, label throughput and a label job's peak memory,
today's streaming path against dumping every utterance's block features first.

    python bench/bench_stage5.py --config egs2/librispeech_ils/ssl1/conf/tuning/train_ssl_hubert_base_it1.yaml

A random-weight model of ``--config`` (the BASE iteration-1 model: 768 wide, as in the paper's
iteration 2) and ``--utts`` utterances of ``--seconds`` s of noise; every step runs as the recipe
runs it, as its own process (``python -m espnet_ils.bin.*``), timed, with its peak RSS read by GNU
time. Prints:

- bytes written per audio hour of the training set: dumped (features of every utterance, float32,
  and their labels) against streamed (features of the k-means portion, float32 and two_byte, and the
  labels), with the target of issue 20 (streamed <= 1/8 of dumped);
- label throughput in audio hours per minute: extracting and labelling every utterance from dumped
  features, against labelling from audio (plus the portion's features, whose labels are read from
  them when stored in float32, as ``ils.sh`` does);
- the peak RSS of one label job at two shard sizes (``--nj 4`` job 1 and ``--nj 1``): it must not
  grow with the shard;
- k-means fitted on two-byte compressed against float32 features: inertia and the labels' agreement.
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np
import soundfile
import torch
from espnet2.utils.yaml_no_alias_safe_dump import yaml_no_alias_safe_dump

import espnet_ils  # noqa: F401  (registers our classes)
from espnet_ils.data.audio import SAMPLE_RATE
from espnet_ils.data.kaldi_files import read_key_file, write_key_file
from espnet_ils.data.labels import cluster_token_list
from espnet_ils.train.tasks import ILSSSLTask

MB = 1e6


def run(args: List[str], threads: int) -> Tuple[float, float]:
    """Run ``python -m <args>``; returns (seconds, peak RSS in MB)."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    command = ["/usr/bin/time", "-f", "%M", sys.executable, "-m", *args]
    start = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, env=env)
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(args[:1])} failed:\n{result.stderr[-3000:]}")
    return elapsed, int(result.stderr.strip().splitlines()[-1]) * 1024 / MB


def random_model(config: Path, n_clusters: int, outdir: Path) -> Path:
    """The config's model with random weights, saved as ESPnet's training saves it."""
    args = ILSSSLTask.get_parser().parse_args(["--config", str(config)])
    args.token_list = cluster_token_list(n_clusters)
    model = ILSSSLTask.build_model(args)
    outdir.mkdir(parents=True)
    with (outdir / "config.yaml").open("w") as f:
        yaml_no_alias_safe_dump(vars(args), f)
    torch.save(model.state_dict(), outdir / "model.pth")
    return outdir / "model.pth"


def noise_corpus(root: Path, utts: int, seconds: float) -> Path:
    root.mkdir(parents=True)
    rng = np.random.default_rng(0)
    wavs, lengths = {}, {}
    for index in range(utts):
        num_samples = int(seconds * SAMPLE_RATE * rng.uniform(0.8, 1.2))
        path = root / f"utt{index:04d}.flac"
        soundfile.write(path, 0.1 * rng.standard_normal(num_samples), SAMPLE_RATE)
        wavs[path.stem], lengths[path.stem] = str(path), str(num_samples)
    write_key_file(root / "wav.scp", wavs)
    write_key_file(root / "utt2num_samples", lengths)
    return root


def size(paths) -> int:
    return sum(Path(p).stat().st_size for p in paths)


def agreement(a: Path, b: Path) -> float:
    first, second = read_key_file(a), read_key_file(b)
    pairs = [(x, y) for u in first for x, y in zip(first[u].split(), second[u].split())]
    return sum(x == y for x, y in pairs) / len(pairs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", type=Path, required=True, help="SSL config of the label model")
    parser.add_argument("--it1_n_clusters", type=int, default=100, help="its token list size")
    parser.add_argument("--layer", type=int, default=6, help="block to cluster (paper: 6)")
    parser.add_argument("--n_clusters", type=int, default=100, help="k-means clusters")
    parser.add_argument("--utts", type=int, default=40, help="utterances in the training set")
    parser.add_argument("--seconds", type=float, default=10.0, help="mean utterance length")
    parser.add_argument("--portion", type=float, default=0.1, help="k-means portion")
    parser.add_argument("--threads", type=int, default=2, help="threads per job")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench_stage5.") as tmp:
        root = Path(tmp)
        model = random_model(args.config, args.it1_n_clusters, root / "model")
        data = noise_corpus(root / "data", args.utts, args.seconds)
        hours = (
            sum(int(n) for n in read_key_file(data / "utt2num_samples").values())
            / SAMPLE_RATE
            / 3600
        )
        print(
            f"{args.utts} utterances, {hours * 60:.1f} min of audio; model {args.config.name}, layer {args.layer}, k {args.n_clusters}, {args.threads} threads"
        )
        common = ["--model_file", str(model), "--layer", str(args.layer)]
        times: Dict[str, float] = {}

        def label_job(km_model: str, outdir: str, *extra: str) -> Tuple[float, float]:
            """One ``model_labels`` job over ``data``; returns (seconds, peak RSS in MB)."""
            return run(
                ["espnet_ils.bin.model_labels", *common, "--km_model", str(km_model),
                 "--n_clusters", str(args.n_clusters), "--data_dir", str(data),
                 "--outdir", str(outdir), *extra],
                args.threads,
            )  # fmt: skip

        # Dumped: every utterance's features, k-means on a portion of them, labels from them.
        dumped = root / "dumped"
        times["dumped: features"], _ = run(
            [
                "espnet_ils.bin.extract_layer_features",
                *common,
                "--wav_scp",
                str(data / "wav.scp"),
                "--out_dir",
                str(dumped / "feats"),
            ],
            args.threads,
        )
        run(
            [
                "espnet_ils.bin.fit_kmeans",
                "--feats_dir",
                str(dumped / "feats"),
                "--n_clusters",
                str(args.n_clusters),
                "--portion",
                str(args.portion),
                "--n_init",
                "1",
                "--model",
                str(dumped / "km.joblib"),
            ],
            args.threads,
        )
        times["dumped: labels"], _ = run(
            [
                "espnet_ils.bin.dump_labels",
                "--feats_dir",
                str(dumped / "feats"),
                "--feature_rate",
                "50",
                "--km_model",
                str(dumped / "km.joblib"),
                "--outdir",
                str(dumped / "labels"),
            ],
            args.threads,
        )
        dumped_bytes = size((dumped / "feats").glob("feats.*.ark")) + size(
            [dumped / "labels" / "labels.1"]
        )

        # Streamed: the portion's features only, labels from audio.
        streamed = root / "streamed"
        portion = streamed / "portion"
        run(
            [
                "espnet_ils.bin.kmeans_portion",
                "--data_dir",
                str(data),
                "--portion",
                str(args.portion),
                "--output",
                str(portion),
            ],
            args.threads,
        )
        results = {}
        for storage in ("float32", "two_byte"):
            feats = streamed / f"feats_{storage}"
            elapsed, _ = run(
                [
                    "espnet_ils.bin.extract_layer_features",
                    *common,
                    "--wav_scp",
                    str(data / "wav.scp"),
                    "--utt_list",
                    str(portion),
                    "--storage",
                    storage,
                    "--out_dir",
                    str(feats),
                ],
                args.threads,
            )
            times[f"streamed: portion features ({storage})"] = elapsed
            run(
                [
                    "espnet_ils.bin.fit_kmeans",
                    "--feats_dir",
                    str(feats),
                    "--n_clusters",
                    str(args.n_clusters),
                    "--portion",
                    "1.0",
                    "--n_init",
                    "1",
                    "--model",
                    str(feats / "km.joblib"),
                ],
                args.threads,
            )
            labels = streamed / f"labels_{storage}"
            elapsed, rss_all = label_job(
                str(feats / "km.joblib"),
                str(labels),
                *(["--feats_dir", str(feats)] if storage == "float32" else []),
            )
            times[f"streamed: labels ({storage} k-means)"] = elapsed
            results[storage] = (
                size(feats.glob("feats.*.ark")),
                size([labels / "labels.1"]),
                rss_all,
                labels / "labels.1",
            )
        _, rss_quarter = label_job(
            str(streamed / "feats_float32" / "km.joblib"),
            str(streamed / "quarter"),
            "--nj",
            "4",
            "--job",
            "1",
        )

        # One model job's fixed cost (imports, model build): a label job whose shard is empty.
        startup, _ = label_job(
            str(streamed / "feats_float32" / "km.joblib"),
            str(streamed / "empty"),
            "--nj",
            str(args.utts + 1),
            "--job",
            "1",
        )

        print("\n| stage 5 writes | MB per audio hour of the training set | vs dumped |")
        print("|---|---|---|")
        print(
            f"| dumped: every utterance's features (float32) + labels | {dumped_bytes / MB / hours:.1f} | 1 |"
        )
        for storage, (feat_bytes, label_bytes, _, _) in results.items():
            total = feat_bytes + label_bytes
            print(
                f"| streamed: portion {args.portion} features ({storage}) + labels | {total / MB / hours:.1f} | 1/{dumped_bytes / total:.1f} |"
            )
        print("\n| step | s | audio h per min |")
        print("|---|---|---|")
        for step, elapsed in times.items():
            print(f"| {step} | {elapsed:.1f} | {hours / (elapsed / 60):.3f} |")
        today = times["dumped: features"] + times["dumped: labels"]
        streamed_total = (
            times["streamed: portion features (float32)"]
            + times["streamed: labels (float32 k-means)"]
        )
        print(f"| dumped, features + labels | {today:.1f} | {hours / (today / 60):.3f} |")
        print(
            f"| streamed, portion features + labels | {streamed_total:.1f} | {hours / (streamed_total / 60):.3f} |"
        )
        # Per hour at scale a job's start-up is spent once per shard: the model jobs' work alone
        # (the dumped label job loads no model).
        today_work = today - startup
        streamed_work = streamed_total - 2 * startup
        print(f"\nstart-up of a model job (an empty shard): {startup:.1f} s")
        print(
            f"without the model jobs' start-ups: dumped {today_work:.1f} s ({hours / (today_work / 60):.3f} h/min), "
            f"streamed {streamed_work:.1f} s ({hours / (streamed_work / 60):.3f} h/min)"
        )
        print(
            f"\nlabel job peak RSS: {rss_quarter:.0f} MB for {args.utts // 4} utterances (--nj 4), {results['two_byte'][2]:.0f} MB for {args.utts} (--nj 1; both run the model on every utterance)"
        )
        print(
            f"k-means on two_byte features vs float32: labels agree on {100 * agreement(results['two_byte'][3], results['float32'][3]):.2f}% of frames"
        )


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Fit k-means on a seeded portion of the utterances of feature shards and save the model.

    python -m espnet_ils.bin.fit_kmeans --feats_dir dump/mfcc/train --n_clusters 100 \
        --portion 0.1 --seed 0 --model exp/kmeans/mfcc_km100/km.joblib
"""

import argparse
import json
import logging
import time
from pathlib import Path
from typing import Dict, List, Optional

from espnet_ils.bin import setup_logging
from espnet_ils.kmeans import (
    REFERENCE_SETTINGS,
    choose_utterances,
    fit_kmeans,
    save_kmeans,
    stack_features,
)
from espnet_ils.shards import read_features

logger = logging.getLogger("espnet_ils.fit_kmeans")


def feature_scps(feats_dir: Path, nj: Optional[int] = None) -> List[Path]:
    """``feats.1..nj.scp`` of ``feats_dir`` (every ``feats.*.scp`` when ``nj`` is None); with ``nj``
    given, shards left by an earlier run with more jobs are not read."""
    if nj is None:
        scps = sorted(Path(feats_dir).glob("feats.*.scp"))
    else:
        scps = [Path(feats_dir) / f"feats.{job}.scp" for job in range(1, nj + 1)]
        scps = [scp for scp in scps if scp.is_file()]
        if scps and len(scps) != nj:
            raise FileNotFoundError(
                f"{feats_dir}: {len(scps)} of --nj {nj} feats.JOB.scp; rerun the feature stage"
            )
    if not scps:
        raise FileNotFoundError(f"{feats_dir}: no feats.*.scp; run the feature stage first")
    return scps


def load_portion(feats_dir: Path, portion: float, seed: int, nj: Optional[int] = None):
    """The features ``(N, D)`` of a seeded ``portion`` of the utterances in ``feats_dir``."""
    index: Dict[str, str] = {}
    for scp in feature_scps(feats_dir, nj):
        for line in scp.read_text().splitlines():
            utt, location = line.split(maxsplit=1)
            index[utt] = location
    chosen = set(choose_utterances(sorted(index), portion, seed))
    subset = Path(feats_dir) / ".kmeans_subset.scp"
    subset.write_text("".join(f"{u} {index[u]}\n" for u in sorted(chosen)))
    try:
        return stack_features(read_features(subset)), len(chosen)
    finally:
        subset.unlink()


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--feats_dir", type=Path, required=True, help="Directory of feats.*.scp")
    parser.add_argument("--n_clusters", type=int, required=True, help="k (100 MFCC, 500 layer)")
    parser.add_argument("--portion", type=float, default=0.1, help="Share of utterances to fit on")
    parser.add_argument("--seed", type=int, default=0, help="Seed for the portion and k-means")
    parser.add_argument(
        "--n_init",
        type=int,
        default=REFERENCE_SETTINGS["n_init"],
        help="k-means++ restarts (reference: 20)",
    )
    parser.add_argument(
        "--nj", type=int, default=None, help="Feature shards to read (default: every feats.*.scp)"
    )
    parser.add_argument("--model", type=Path, required=True, help="Output model (joblib)")
    return parser


def main(cmd: Optional[List[str]] = None) -> None:
    args = get_parser().parse_args(cmd)
    setup_logging(args)
    features, num_utts = load_portion(args.feats_dir, args.portion, args.seed, args.nj)
    logger.info("fitting on %d frames of %d utterances", len(features), num_utts)
    start = time.perf_counter()
    model = fit_kmeans(features, args.n_clusters, args.seed, {"n_init": args.n_init})
    args.model.parent.mkdir(parents=True, exist_ok=True)
    save_kmeans(model, args.model)
    summary = {
        "n_clusters": args.n_clusters,
        "frames": int(len(features)),
        "utterances": num_utts,
        "inertia_per_frame": model.inertia_ / len(features),
        "fit_seconds": round(time.perf_counter() - start, 2),
    }
    args.model.with_suffix(".json").write_text(json.dumps(summary, indent=2) + "\n")
    logger.info("wrote %s: %s", args.model, summary)


if __name__ == "__main__":
    main()

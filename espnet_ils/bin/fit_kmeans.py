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
from typing import List, Optional

from espnet_ils.bin import setup_logging
from espnet_ils.targets.kmeans import REFERENCE_SETTINGS, fit_kmeans, load_portion, save_kmeans

logger = logging.getLogger("espnet_ils.fit_kmeans")


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

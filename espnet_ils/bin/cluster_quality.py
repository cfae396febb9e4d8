#!/usr/bin/env python3
"""Cluster quality (phone purity, cluster purity, PNMI) of labels, or of every layer of SSL models.

Labels against phone alignments (both ``utt id id ...`` at 50 Hz):

    python -m espnet_ils.bin.cluster_quality labels --labels dump/labels/it1/dev/text \
        --alignments data/dev/phone_alignment

Every layer of one or more models, as in the paper's figure 2: for each layer, k-means is fitted on
that layer's frames and the clusters are scored against the phone alignments; writes
``<outdir>/cluster_quality.tsv`` and ``<outdir>/cluster_quality.png``:

    python -m espnet_ils.bin.cluster_quality layers --model ils=exp/ssl_ils --model hubert=exp/ssl_hubert \
        --wav_scp dump/raw/dev/wav.scp --alignments data/dev/phone_alignment --n_clusters 100 --outdir exp/cq
"""

import argparse
import logging
from pathlib import Path
from typing import List, Optional, Tuple

from espnet_ils.bin import setup_logging
from espnet_ils.kaldi_files import read_key_file, write_text_atomic
from espnet_ils.label_quality import (
    METRICS,
    aligned_utterances,
    label_quality,
    model_layer_quality,
    plot_quality,
    read_frame_labels,
    write_quality_table,
)

logger = logging.getLogger("espnet_ils.cluster_quality")


def parse_model(spec: str) -> Tuple[str, Path]:
    name, sep, directory = spec.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"--model {spec}: expected NAME=EXPDIR")
    return name, Path(directory)


def run_layers(args: argparse.Namespace) -> None:
    alignments = read_frame_labels(args.alignments)
    wav_scp = read_key_file(args.wav_scp)
    utts = aligned_utterances(alignments, wav_scp, args.max_utts)
    kmeans = {"n_clusters": args.n_clusters, "seed": args.seed, "n_init": args.n_init}
    table = {
        name: model_layer_quality(
            directory / args.checkpoint, wav_scp, alignments, utts, kmeans, args.device
        )
        for name, directory in args.model
    }
    args.outdir.mkdir(parents=True, exist_ok=True)
    write_quality_table(table, args.outdir / "cluster_quality.tsv")
    plot_quality(table, args.outdir / "cluster_quality.png")
    logger.info("wrote %s/cluster_quality.{tsv,png}", args.outdir)


def run_labels(args: argparse.Namespace) -> None:
    quality = label_quality(read_frame_labels(args.labels), read_frame_labels(args.alignments))
    lines = ["\t".join(METRICS), "\t".join(f"{quality[m]:.4f}" for m in METRICS)]
    if args.output:
        write_text_atomic(args.output, lines)
    logger.info("%s: %s", args.labels, quality)


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    modes = parser.add_subparsers(dest="mode", required=True)
    labels = modes.add_parser("labels", help="score a label file")
    labels.add_argument("--labels", type=Path, required=True, help="utt c1 c2 ... at 50 Hz")
    labels.add_argument("--alignments", type=Path, required=True, help="utt p1 p2 ... at 50 Hz")
    labels.add_argument("--output", type=Path, help="TSV to write (default: log only)")
    layers = modes.add_parser("layers", help="score every layer of SSL models")
    layers.add_argument(
        "--model", type=parse_model, action="append", required=True, help="NAME=EXPDIR (repeatable)"
    )
    layers.add_argument(
        "--checkpoint", default="valid.loss.best.pth", help="Weights file in each EXPDIR"
    )
    layers.add_argument("--wav_scp", type=Path, required=True)
    layers.add_argument("--alignments", type=Path, required=True, help="utt p1 p2 ... at 50 Hz")
    layers.add_argument("--n_clusters", type=int, default=100, help="k-means clusters per layer")
    layers.add_argument("--n_init", type=int, default=3, help="k-means++ restarts per layer")
    layers.add_argument("--seed", type=int, default=0)
    layers.add_argument(
        "--max_utts", type=int, default=0, help="Use the first N aligned utterances (0: all)"
    )
    layers.add_argument("--device", default="cpu")
    layers.add_argument("--outdir", type=Path, required=True)
    return parser


def main(cmd: Optional[List[str]] = None) -> None:
    args = get_parser().parse_args(cmd)
    setup_logging(args)
    {"labels": run_labels, "layers": run_layers}[args.mode](args)


if __name__ == "__main__":
    main()

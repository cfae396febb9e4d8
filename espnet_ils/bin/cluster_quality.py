#!/usr/bin/env python3
"""Cluster quality (phone purity, cluster purity, PNMI) of labels, or of every layer of SSL models.

Labels against phone alignments (both ``utt id id ...`` at 50 Hz):

    python -m espnet_ils.bin.cluster_quality labels --labels dump/labels/it1/dev/text \
        --alignments data/dev/phone_alignment

Every layer of one or more models, as in the paper's figure 2: for each layer, k-means is fitted on
that layer's frames of a random subset of ``--fit_dir`` (the training set; default: the scored
utterances themselves) and its clusters on the aligned utterances are scored against their phones;
writes ``<outdir>/cluster_quality.{tsv,png}`` and the protocol in ``<outdir>/protocol.json``:

    python -m espnet_ils.bin.cluster_quality layers --model ils=exp/ssl_ils --model hubert=exp/ssl_hubert \
        --fit_dir dump/raw/train --fit_hours 1 --score_dir dump/raw/dev_clean \
        --score_dir dump/raw/dev_other --n_clusters 500 --outdir exp/cq

The block of a model with the highest PNMI in such a table (layer 0 excluded), written to a file:

    python -m espnet_ils.bin.cluster_quality best --table exp/cq/cluster_quality.tsv --model it1 \
        --output exp/cq/chosen_block
"""

import argparse
import json
import logging
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from espnet_ils.analysis.alignments import read_frame_labels
from espnet_ils.analysis.label_quality import (
    METRICS,
    aligned_utterances,
    best_block,
    label_quality,
    model_layer_quality,
    plot_quality,
    write_quality_table,
)
from espnet_ils.bin import setup_logging
from espnet_ils.data.datadir import num_samples_of
from espnet_ils.data.kaldi_files import read_key_file, write_text_atomic
from espnet_ils.targets.selection import choose_by_duration

logger = logging.getLogger("espnet_ils.cluster_quality")


def parse_model(spec: str) -> Tuple[str, Path]:
    name, sep, directory = spec.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"--model {spec}: expected NAME=EXPDIR")
    return name, Path(directory)


def scored_sets(directories: List[Path]) -> Tuple[Dict[str, str], Dict[str, List[str]]]:
    """The audio and phone alignments of the utterances of several data directories."""
    wav_scp: Dict[str, str] = {}
    alignments: Dict[str, List[str]] = {}
    for directory in directories:
        aligned = read_frame_labels(directory / "phone_alignment")
        repeated = sorted(set(aligned) & set(alignments))
        if repeated:
            raise ValueError(f"--score_dir {directory}: utterances already scored: {repeated[:5]}")
        alignments.update(aligned)
        wav_scp.update(read_key_file(directory / "wav.scp"))
    return wav_scp, alignments


def run_layers(args: argparse.Namespace) -> None:
    wav_scp, alignments = scored_sets(args.score_dir)
    utts = aligned_utterances(alignments, wav_scp, args.max_utts)
    if args.fit_dir is None:  # fit on the scored utterances themselves
        fit_scp, fit_utts = wav_scp, utts
    else:
        fit_scp = read_key_file(args.fit_dir / "wav.scp")
        fit_utts = choose_by_duration(num_samples_of(args.fit_dir), args.fit_hours, args.seed)
    kmeans = {"n_clusters": args.n_clusters, "seed": args.seed, "n_init": args.n_init}
    logger.info(
        "k-means per layer fitted on %d utterances of %s, scored on %d of %s",
        len(fit_utts),
        args.fit_dir or "the scored sets",
        len(utts),
        " ".join(map(str, args.score_dir)),
    )
    table = {
        name: model_layer_quality(
            directory / args.checkpoint,
            (fit_scp, fit_utts),
            (wav_scp, utts),
            alignments,
            kmeans,
            args.device,
        )
        for name, directory in args.model
    }
    args.outdir.mkdir(parents=True, exist_ok=True)
    write_quality_table(table, args.outdir / "cluster_quality.tsv")
    plot_quality(table, args.outdir / "cluster_quality.png")
    protocol = {
        "fit": str(args.fit_dir or "the scored utterances"),
        "fit_hours": args.fit_hours if args.fit_dir else None,
        "fit_utterances": len(fit_utts),
        "scored": [str(directory) for directory in args.score_dir],
        "scored_utterances": len(utts),
        **kmeans,
    }
    write_text_atomic(args.outdir / "protocol.json", [json.dumps(protocol, indent=2)])
    logger.info("wrote %s/cluster_quality.{tsv,png}", args.outdir)


def run_labels(args: argparse.Namespace) -> None:
    quality = label_quality(read_frame_labels(args.labels), read_frame_labels(args.alignments))
    lines = ["\t".join(METRICS), "\t".join(f"{quality[m]:.4f}" for m in METRICS)]
    if args.output:
        write_text_atomic(args.output, lines)
    logger.info("%s: %s", args.labels, quality)


def run_best(args: argparse.Namespace) -> None:
    block = best_block(args.table, args.model, args.metric)
    logger.info("%s: block %d of %s has the highest %s", args.table, block, args.model, args.metric)
    write_text_atomic(args.output, [str(block)])


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
    layers.add_argument(
        "--score_dir",
        type=Path,
        action="append",
        required=True,
        help="Data directory scored: wav.scp and phone_alignment (utt p1 p2 ... at 50 Hz); "
        "repeatable, e.g. dev_clean and dev_other",
    )
    layers.add_argument(
        "--fit_dir",
        type=Path,
        help="Data directory (wav.scp, utt2num_samples) to fit k-means on, e.g. the training set "
        "as the paper does (default: the scored utterances themselves)",
    )
    layers.add_argument(
        "--fit_hours",
        type=float,
        default=0,
        help="Hours of a seeded random subset of --fit_dir to fit on (0: all of it)",
    )
    layers.add_argument("--n_clusters", type=int, default=100, help="k-means clusters per layer")
    layers.add_argument("--n_init", type=int, default=3, help="k-means++ restarts per layer")
    layers.add_argument("--seed", type=int, default=0)
    layers.add_argument(
        "--max_utts", type=int, default=0, help="Use the first N aligned utterances (0: all)"
    )
    layers.add_argument("--device", default="cpu")
    layers.add_argument("--outdir", type=Path, required=True)
    best = modes.add_parser("best", help="write the block of a model scoring highest in a table")
    best.add_argument("--table", type=Path, required=True, help="cluster_quality.tsv of layers")
    best.add_argument("--model", required=True, help="Model name in the table")
    best.add_argument("--metric", default="pnmi", choices=METRICS)
    best.add_argument("--output", type=Path, required=True, help="File to write the block to")
    return parser


def main(cmd: Optional[List[str]] = None) -> None:
    args = get_parser().parse_args(cmd)
    setup_logging(args)
    {"labels": run_labels, "layers": run_layers, "best": run_best}[args.mode](args)


if __name__ == "__main__":
    main()

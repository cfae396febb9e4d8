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
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from tqdm import tqdm

from espnet_ils.audio import load_waveform
from espnet_ils.bin import setup_logging
from espnet_ils.kaldi_files import read_key_file, write_text_atomic
from espnet_ils.kmeans import fit_kmeans
from espnet_ils.layer_features import LayerFeatureExtractor
from espnet_ils.metrics import cluster_quality, joint_counts

logger = logging.getLogger("espnet_ils.cluster_quality")

METRICS = ("phone_purity", "cluster_purity", "pnmi")


def read_frame_labels(path: Path) -> Dict[str, List[str]]:
    return {utt: value.split() for utt, value in read_key_file(path).items()}


def paired_frames(
    labels: Dict[str, Sequence], alignments: Dict[str, List[str]], tolerance: int = 1
) -> Tuple[List, List[str]]:
    """Concatenate labels and phones over the utterances of ``labels`` (all must be aligned).

    Lengths may differ by ``tolerance`` frames (the shorter one is used); more names the utterance.
    """
    clusters, phones = [], []
    for utt, values in labels.items():
        if utt not in alignments:
            raise ValueError(f"utterance {utt} has no phone alignment")
        reference = alignments[utt]
        if abs(len(values) - len(reference)) > tolerance:
            raise ValueError(
                f"utterance {utt}: {len(values)} label frames but {len(reference)} aligned phones"
            )
        count = min(len(values), len(reference))
        clusters.extend(values[:count])
        phones.extend(reference[:count])
    return clusters, phones


def layer_features(
    extractor: LayerFeatureExtractor, wav_scp: Dict[str, str], utts: Sequence[str]
) -> Dict[str, np.ndarray]:
    """``{utt: (L + 1, T, D)}``: every layer (0 = block-1 input) of each utterance, one at a time."""
    features = {}
    for utt in tqdm(utts, desc="layer features"):
        wave = load_waveform(wav_scp[utt], utt, extractor.sample_rate)
        features[utt] = extractor.extract_layers([wave])[0].numpy()
    return features


def score_layers(
    features: Dict[str, np.ndarray],
    alignments: Dict[str, List[str]],
    n_clusters: int,
    seed: int,
    n_init: int,
) -> List[Dict[str, float]]:
    """Metrics per layer: k-means on the layer's frames, clusters scored against phones."""
    rows = []
    num_layers = next(iter(features.values())).shape[0]
    for layer in range(num_layers):
        frames = {utt: array[layer] for utt, array in features.items()}
        model = fit_kmeans(
            np.concatenate(list(frames.values())), n_clusters, seed, {"n_init": n_init}
        )
        labels = {utt: model.predict(array) for utt, array in frames.items()}
        clusters, phones = paired_frames(labels, alignments)
        rows.append({"layer": layer, **cluster_quality(joint_counts(phones, clusters))})
        logger.info("layer %d: %s", layer, {k: round(v, 4) for k, v in rows[-1].items()})
    return rows


def plot(table: Dict[str, List[Dict[str, float]]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, len(METRICS), figsize=(4 * len(METRICS), 3.2))
    for axis, metric in zip(axes, METRICS):
        for name, rows in table.items():
            axis.plot([r["layer"] for r in rows], [r[metric] for r in rows], marker="o", label=name)
        axis.set_xlabel("layer (0 = input of block 1)")
        axis.set_title(metric.replace("_", " "))
        axis.grid(alpha=0.3)
    axes[0].legend()
    figure.tight_layout()
    tmp = path.with_name(path.stem + ".tmp" + path.suffix)
    figure.savefig(tmp, dpi=120)
    tmp.replace(path)


def parse_model(spec: str) -> Tuple[str, Path]:
    name, sep, directory = spec.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"--model {spec}: expected NAME=EXPDIR")
    return name, Path(directory)


def run_layers(args: argparse.Namespace) -> None:
    alignments = read_frame_labels(args.alignments)
    wav_scp = read_key_file(args.wav_scp)
    missing = sorted(set(alignments) - set(wav_scp))
    if missing:
        raise ValueError(f"{args.alignments}: utterances not in {args.wav_scp}: {missing[:5]}")
    utts = sorted(alignments)[: args.max_utts] if args.max_utts else sorted(alignments)
    table = {}
    for name, directory in args.model:
        model_file = directory / args.checkpoint
        if not model_file.is_file():
            raise FileNotFoundError(f"--model {name}={directory}: {model_file} does not exist")
        extractor = LayerFeatureExtractor.from_files(model_file, device=args.device)
        features = layer_features(extractor, wav_scp, utts)
        table[name] = score_layers(features, alignments, args.n_clusters, args.seed, args.n_init)
    args.outdir.mkdir(parents=True, exist_ok=True)
    lines = ["model\tlayer\t" + "\t".join(METRICS)]
    for name, rows in table.items():
        lines += [
            f"{name}\t{r['layer']}\t" + "\t".join(f"{r[m]:.4f}" for m in METRICS) for r in rows
        ]
    write_text_atomic(args.outdir / "cluster_quality.tsv", lines)
    plot(table, args.outdir / "cluster_quality.png")
    logger.info("wrote %s/cluster_quality.{tsv,png}", args.outdir)


def run_labels(args: argparse.Namespace) -> None:
    clusters, phones = paired_frames(
        read_frame_labels(args.labels), read_frame_labels(args.alignments)
    )
    quality = cluster_quality(joint_counts(phones, clusters))
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

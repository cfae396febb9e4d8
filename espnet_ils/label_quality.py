"""Cluster quality of frame labels, and of every layer of SSL models, against phone alignments.

Labels and alignments are Kaldi-style text at the encoder's 50 Hz: ``utt v1 v2 ...``. For a layer,
k-means is fitted on that layer's frames and its clusters are scored as labels (the paper's figure
2); the metrics are those of ``espnet_ils.metrics``.
"""

import logging
from pathlib import Path
from typing import Dict, List, Mapping, Sequence, Tuple

import numpy as np
from tqdm import tqdm

from espnet_ils.audio import load_waveform
from espnet_ils.kaldi_files import atomic_path, read_key_file, write_text_atomic
from espnet_ils.kmeans import fit_kmeans
from espnet_ils.layer_features import LayerFeatureExtractor
from espnet_ils.metrics import cluster_quality, joint_counts

logger = logging.getLogger(__name__)

METRICS = ("phone_purity", "cluster_purity", "pnmi")
# One layer's metrics, e.g. {"layer": 2, "phone_purity": 0.41, "cluster_purity": 0.3, "pnmi": 0.48}
LayerRow = Dict[str, float]


def read_frame_labels(path: Path) -> Dict[str, List[str]]:
    """``{utt: [value per 50 Hz frame]}`` of a label or alignment file."""
    return {utt: value.split() for utt, value in read_key_file(path).items()}


def paired_frames(
    labels: Mapping[str, Sequence], alignments: Mapping[str, List[str]], tolerance: int = 1
) -> Tuple[List, List[str]]:
    """Concatenate labels and phones over the utterances of ``labels`` (all must be aligned).

    Lengths may differ by ``tolerance`` frames (the shorter one is used; the last frame of an
    utterance is where the encoder's and the aligner's frame counts part); more names the utterance.
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


def label_quality(
    labels: Mapping[str, Sequence], alignments: Mapping[str, List[str]]
) -> Dict[str, float]:
    """Phone purity, cluster purity and PNMI of ``labels`` against ``alignments``."""
    clusters, phones = paired_frames(labels, alignments)
    return cluster_quality(joint_counts(phones, clusters))


def aligned_utterances(
    alignments: Mapping[str, List[str]], wav_scp: Mapping[str, str], max_utts: int = 0
) -> List[str]:
    """The sorted aligned utterances (the first ``max_utts``; 0: all); each must have audio."""
    missing = sorted(set(alignments) - set(wav_scp))
    if missing:
        raise ValueError(f"aligned utterances without audio in the wav.scp: {missing[:5]}")
    utts = sorted(alignments)
    return utts[:max_utts] if max_utts else utts


def layer_features(
    extractor: LayerFeatureExtractor, wav_scp: Mapping[str, str], utts: Sequence[str]
) -> Dict[str, np.ndarray]:
    """``{utt: (L + 1, T, D)}``: every layer (0 = block-1 input) of each utterance, one at a time."""
    features = {}
    for utt in tqdm(utts, desc="layer features"):
        wave = load_waveform(wav_scp[utt], utt, extractor.sample_rate)
        features[utt] = extractor.extract_layers([wave])[0].numpy()
    return features


def score_layers(
    features: Mapping[str, np.ndarray],
    alignments: Mapping[str, List[str]],
    n_clusters: int,
    seed: int,
    n_init: int,
) -> List[LayerRow]:
    """Metrics per layer of ``features`` (``{utt: (L + 1, T, D)}``): k-means with ``n_clusters``
    fitted on the layer's frames, its clusters scored against the phones."""
    rows = []
    num_layers = next(iter(features.values())).shape[0]
    for layer in range(num_layers):
        frames = {utt: array[layer] for utt, array in features.items()}
        model = fit_kmeans(
            np.concatenate(list(frames.values())), n_clusters, seed, {"n_init": n_init}
        )
        labels = {utt: model.predict(array) for utt, array in frames.items()}
        rows.append({"layer": layer, **label_quality(labels, alignments)})
        logger.info("layer %d: %s", layer, {k: round(v, 4) for k, v in rows[-1].items()})
    return rows


def model_layer_quality(
    model_file: Path,
    wav_scp: Mapping[str, str],
    alignments: Mapping[str, List[str]],
    utts: Sequence[str],
    kmeans: Mapping[str, int],
    device: str = "cpu",
) -> List[LayerRow]:
    """``score_layers`` of the model saved in ``model_file`` on ``utts``; ``kmeans`` holds
    ``n_clusters``, ``seed`` and ``n_init``."""
    if not Path(model_file).is_file():
        raise FileNotFoundError(f"{model_file} does not exist")
    extractor = LayerFeatureExtractor.from_files(model_file, device=device)
    return score_layers(layer_features(extractor, wav_scp, utts), alignments, **kmeans)


def write_quality_table(table: Mapping[str, List[LayerRow]], path: Path) -> None:
    """TSV with columns model, layer and the metrics, one row per model and layer."""
    lines = ["model\tlayer\t" + "\t".join(METRICS)]
    for name, rows in table.items():
        lines += [
            f"{name}\t{r['layer']}\t" + "\t".join(f"{r[m]:.4f}" for m in METRICS) for r in rows
        ]
    write_text_atomic(path, lines)


def plot_quality(table: Mapping[str, List[LayerRow]], path: Path) -> None:
    """One panel per metric, one line per model, layers on the x axis (PNG)."""
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
    with atomic_path(path) as tmp:
        figure.savefig(tmp, dpi=120, format="png")
    plt.close(figure)

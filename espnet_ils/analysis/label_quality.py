"""Cluster quality of frame labels, and of every layer of SSL models, against phone alignments.

Labels and alignments are Kaldi-style text at the encoder's 50 Hz: ``utt v1 v2 ...``. For a layer,
k-means is fitted on that layer's frames of one set of utterances and its clusters on the frames of
another (the aligned ones) are scored as labels; the metrics are those of ``espnet_ils.analysis.metrics``.
The paper's protocol (figure 2) fits on a random subset of the training data and scores on the dev
sets; fitting on the scored utterances themselves flatters the features against k-means targets,
which are fitted on training data.
"""

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Dict, Iterator, List, Mapping, Sequence, Tuple

import numpy as np
from sklearn.cluster import MiniBatchKMeans
from tqdm import tqdm

from espnet_ils.analysis.metrics import cluster_quality, joint_counts
from espnet_ils.data.audio import load_waveform
from espnet_ils.data.kaldi_files import atomic_path, write_text_atomic
from espnet_ils.targets.kmeans import fit_kmeans
from espnet_ils.targets.layer_features import LayerFeatureExtractor

if TYPE_CHECKING:  # matplotlib is imported where a plot is drawn
    from matplotlib.figure import Figure

logger = logging.getLogger(__name__)

METRICS = ("phone_purity", "cluster_purity", "pnmi")
# One layer's metrics, e.g. {"layer": 2, "phone_purity": 0.41, "cluster_purity": 0.3, "pnmi": 0.48}
LayerRow = Dict[str, float]


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


def layer_frames(
    extractor: LayerFeatureExtractor, wav_scp: Mapping[str, str], utts: Sequence[str], desc: str
) -> Iterator[Tuple[str, np.ndarray]]:
    """``(utt, (L + 1, T, D))``: every layer (0 = block-1 input) of each utterance, one at a time."""
    for utt in tqdm(utts, desc=desc):
        wave = load_waveform(wav_scp[utt], utt, extractor.sample_rate)
        yield utt, extractor.extract_layers([wave])[0].numpy()


def fit_layer_kmeans(
    extractor: LayerFeatureExtractor,
    wav_scp: Mapping[str, str],
    utts: Sequence[str],
    n_clusters: int,
    seed: int,
    n_init: int,
) -> List[MiniBatchKMeans]:
    """One k-means per layer, fitted on that layer's frames of ``utts``.

    Holds every layer's frames at once: ``(L + 1) x frames x D x 4`` bytes (BASE, 13 layers of
    768 dims: about 0.5 GB per 10 minutes of audio), which bounds the fit set's size.
    """
    per_layer: List[List[np.ndarray]] = [[] for _ in range(extractor.num_layers + 1)]
    for _, states in layer_frames(extractor, wav_scp, utts, "layer features (k-means fit)"):
        for frames, state in zip(per_layer, states):
            frames.append(state)
    models = []
    for layer in range(len(per_layer)):
        frames, per_layer[layer] = np.concatenate(per_layer[layer]), []
        models.append(fit_kmeans(frames, n_clusters, seed, {"n_init": n_init}))
    return models


def score_layers(
    extractor: LayerFeatureExtractor,
    wav_scp: Mapping[str, str],
    utts: Sequence[str],
    alignments: Mapping[str, List[str]],
    models: Sequence[MiniBatchKMeans],
) -> List[LayerRow]:
    """Metrics per layer on ``utts``: each layer's frames labelled by its k-means ``models[layer]``
    and scored against the phones."""
    labels: List[Dict[str, np.ndarray]] = [{} for _ in models]
    for utt, states in layer_frames(extractor, wav_scp, utts, "layer features (scoring)"):
        for per_utt, model, state in zip(labels, models, states):
            per_utt[utt] = model.predict(state)
    rows = []
    for layer, per_utt in enumerate(labels):
        rows.append({"layer": layer, **label_quality(per_utt, alignments)})
        logger.info("layer %d: %s", layer, {k: round(v, 4) for k, v in rows[-1].items()})
    return rows


def model_layer_quality(
    model_file: Path,
    fit: Tuple[Mapping[str, str], Sequence[str]],
    score: Tuple[Mapping[str, str], Sequence[str]],
    alignments: Mapping[str, List[str]],
    kmeans: Mapping[str, int],
    device: str = "cpu",
) -> List[LayerRow]:
    """Cluster quality of every layer of the model saved in ``model_file``: k-means per layer
    fitted on the utterances of ``fit`` (``(wav_scp, utts)``), scored on those of ``score``;
    ``kmeans`` holds ``n_clusters``, ``seed`` and ``n_init``."""
    if not Path(model_file).is_file():
        raise FileNotFoundError(f"{model_file} does not exist")
    extractor = LayerFeatureExtractor.from_files(model_file, device=device)
    models = fit_layer_kmeans(extractor, *fit, **kmeans)
    return score_layers(extractor, *score, alignments, models)


def best_block(table: Path, model: str, metric: str = "pnmi") -> int:
    """The block (layer >= 1) of ``model`` with the highest ``metric`` in a quality TSV; the first
    of equals. Layer 0, the block-1 input, is not a block output and is not chosen."""
    rows = [line.split("\t") for line in Path(table).read_text(encoding="utf-8").splitlines()]
    column = rows[0].index(metric)
    scores = {int(row[1]): float(row[column]) for row in rows[1:] if row[0] == model}
    blocks = [layer for layer in sorted(scores) if layer >= 1]
    if not blocks:
        raise ValueError(f"{table}: no block of model {model!r}")
    return max(blocks, key=lambda layer: scores[layer])


def write_quality_table(table: Mapping[str, List[LayerRow]], path: Path) -> None:
    """TSV with columns model, layer and the metrics, one row per model and layer."""
    lines = ["model\tlayer\t" + "\t".join(METRICS)]
    for name, rows in table.items():
        lines += [
            f"{name}\t{r['layer']}\t" + "\t".join(f"{r[m]:.4f}" for m in METRICS) for r in rows
        ]
    write_text_atomic(path, lines)


def plot_quality(table: Mapping[str, List[LayerRow]], path: Path) -> "Figure":
    """One panel per metric, one line per model, layers on the x axis (PNG, 4 x 3.2 inches per
    panel at 120 dpi). Returns the figure, closed, for a look at what it draws."""
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
    return figure

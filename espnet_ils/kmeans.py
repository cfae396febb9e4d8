"""k-means on frame features, with the HuBERT reference settings and a fixed seed.

The reference (fairseq's ``learn_kmeans.py``) uses scikit-learn's MiniBatchKMeans with k-means++
init, batch 10000, max_iter 100, n_init 20, tol 0, max_no_improvement 100, reassignment_ratio 0,
fitted on about 10% of the training utterances, and sets no random_state. We fix the seed.
"""

import logging
from pathlib import Path
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import joblib
import kaldiio
import numpy as np
from sklearn.cluster import MiniBatchKMeans

from espnet_ils.audio import SAMPLE_RATE
from espnet_ils.kaldi_files import atomic_path, read_key_file
from espnet_ils.shards import feature_scps

logger = logging.getLogger(__name__)

REFERENCE_SETTINGS = dict(
    init="k-means++",
    batch_size=10000,
    max_iter=100,
    n_init=20,
    tol=0.0,
    max_no_improvement=100,
    reassignment_ratio=0.0,
    compute_labels=False,
)


def choose_utterances(utts: Sequence[str], portion: float, seed: int) -> Sequence[str]:
    """A seeded random ``portion`` (0, 1] of ``utts`` (at least one), in sorted order."""
    if not 0 < portion <= 1:
        raise ValueError(f"--portion {portion}: must be in (0, 1]")
    count = max(1, round(len(utts) * portion))
    chosen = np.random.default_rng(seed).choice(len(utts), size=count, replace=False)
    return sorted(utts[i] for i in chosen)


def choose_by_duration(num_samples: Mapping[str, int], hours: float, seed: int) -> List[str]:
    """A seeded random subset of the utterances of ``num_samples`` (samples at 16 kHz) of at least
    ``hours`` of audio (all of them when they hold less; ``hours`` 0: all), in sorted order."""
    if hours < 0:
        raise ValueError(f"hours {hours}: must be >= 0")
    utts = sorted(num_samples)
    if hours == 0:
        return utts
    chosen, total = [], 0
    for index in np.random.default_rng(seed).permutation(len(utts)):
        if total >= hours * 3600 * SAMPLE_RATE:
            break
        chosen.append(utts[index])
        total += num_samples[utts[index]]
    return sorted(chosen)


def fit_kmeans(
    features: np.ndarray, n_clusters: int, seed: int, overrides: Optional[Dict] = None
) -> MiniBatchKMeans:
    """Fit MiniBatchKMeans with the reference settings (``overrides`` replace some of them).

    Args:
        features: ``(N, D)`` float frames.
        n_clusters: k (100 for MFCC, 500 for layer features).
        seed: random_state.
        overrides: Settings to change, e.g. ``{"n_init": 3}`` (see ``REFERENCE_SETTINGS``).

    Returns:
        The fitted model; ``model.inertia_`` is its sum of squared distances on ``features``.
    """
    if features.ndim != 2 or features.shape[0] < n_clusters:
        raise ValueError(
            f"k-means needs at least n_clusters={n_clusters} frames of 2-D features; "
            f"got shape {features.shape}: use a larger --portion or fewer clusters"
        )
    settings = {**REFERENCE_SETTINGS, **(overrides or {})}
    unknown = set(settings) - set(REFERENCE_SETTINGS)
    if unknown:
        raise ValueError(
            f"unknown k-means settings {sorted(unknown)}; known: {sorted(REFERENCE_SETTINGS)}"
        )
    model = MiniBatchKMeans(n_clusters=n_clusters, random_state=seed, **settings)
    model.fit(features)
    model.inertia_ = float(-model.score(features))  # on all fitted frames, comparable across runs
    logger.info("k-means %d: inertia %.6g per frame", n_clusters, model.inertia_ / len(features))
    return model


def save_kmeans(model: MiniBatchKMeans, path: Path) -> None:
    """Save ``model`` with joblib through a temporary name (a re-run trusts what it finds)."""
    with atomic_path(path) as tmp:
        joblib.dump(model, tmp)


def load_kmeans(path: Path) -> MiniBatchKMeans:
    if not Path(path).is_file():
        raise FileNotFoundError(f"{path}: no k-means model; run the k-means stage first")
    return joblib.load(path)


def stack_features(pairs: Iterable[Tuple[str, np.ndarray]]) -> np.ndarray:
    """Concatenate per-utterance ``(T, D)`` arrays into one ``(sum T, D)`` float32 array."""
    arrays = [array.astype(np.float32, copy=False) for _, array in pairs]
    if not arrays:
        raise ValueError("no features to fit k-means on")
    return np.concatenate(arrays)


def load_portion(
    feats_dir: Path, portion: float, seed: int, nj: Optional[int] = None
) -> Tuple[np.ndarray, int]:
    """The stacked features ``(N, D)`` of a seeded ``portion`` of the utterances of the feature
    shards in ``feats_dir`` (see ``feature_scps``), and how many utterances that is."""
    locations: Dict[str, str] = {}
    for scp in feature_scps(feats_dir, nj):
        locations.update(read_key_file(scp))
    chosen = choose_utterances(sorted(locations), portion, seed)
    return stack_features((utt, kaldiio.load_mat(locations[utt])) for utt in chosen), len(chosen)

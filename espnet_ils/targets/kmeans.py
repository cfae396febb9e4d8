"""k-means on frame features, with the HuBERT reference settings and a fixed seed.

The reference (fairseq's ``learn_kmeans.py``) uses scikit-learn's MiniBatchKMeans with k-means++
init, batch 10000, max_iter 100, n_init 20, tol 0, max_no_improvement 100, reassignment_ratio 0,
fitted on about 10% of the training utterances, and sets no random_state. We fix the seed.
"""

import importlib
import logging
import pickle
import sys
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Dict, Iterable, Iterator, Optional, Tuple, Union

import joblib
import kaldiio
import numpy as np
import sklearn
import torch
from sklearn.cluster import KMeans, MiniBatchKMeans
from sklearn.exceptions import InconsistentVersionWarning
from sklearn.utils._openmp_helpers import _openmp_effective_n_threads

from espnet_ils.data.kaldi_files import atomic_path, read_key_file
from espnet_ils.data.shards import feature_scps
from espnet_ils.targets.selection import choose_utterances

logger = logging.getLogger(__name__)

#: What a k-means model is here: ours (MiniBatchKMeans) or one rebuilt from released centroids.
KMeansModel = Union[KMeans, MiniBatchKMeans]

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


def assign_clusters(model: KMeansModel, features: torch.Tensor) -> np.ndarray:
    """The nearest centroid of every frame.

    On the CPU this is scikit-learn's own ``predict`` (so labels made from audio equal those made
    from dumped features bit for bit); on a GPU the same squared distances
    ``||c||^2 - 2 x.c`` are taken there, in the features' precision, to keep the frames on the device.

    Args:
        model: A fitted k-means model (``cluster_centers_`` of shape ``(C, D)``).
        features: ``(T, D)`` frames, float.

    Returns:
        ``(T,)`` int64 cluster ids.
    """
    if features.ndim != 2 or features.shape[1] != model.cluster_centers_.shape[1]:
        raise ValueError(
            f"features of shape {tuple(features.shape)} for a k-means model of "
            f"{model.cluster_centers_.shape[1]}-dimensional centroids: is the k-means model made "
            "from this layer of this model?"
        )
    if features.device.type == "cpu":
        return model.predict(features.float().numpy()).astype(np.int64)
    centers = torch.as_tensor(model.cluster_centers_, dtype=features.dtype, device=features.device)
    return nearest_centroid(features, centers).cpu().numpy()


def nearest_centroid(features: torch.Tensor, centers: torch.Tensor) -> torch.Tensor:
    """``argmin_c ||x - c||^2`` per frame, as ``||c||^2 - 2 x.c`` (``||x||^2`` ranks nothing).

    Args:
        features: ``(T, D)`` frames.
        centers: ``(C, D)`` centroids, same device and dtype.

    Returns:
        ``(T,)`` int64 cluster ids, on the features' device.
    """
    distances = (centers * centers).sum(dim=1) - 2 * features @ centers.T  # (T, C)
    return distances.argmin(dim=1)


def save_kmeans(model: MiniBatchKMeans, path: Path) -> None:
    """Save ``model`` with joblib through a temporary name (a re-run trusts what it finds)."""
    with atomic_path(path) as tmp:
        joblib.dump(model, tmp)


#: Where scikit-learn before 0.22 kept its k-means classes: the released quantizers of fairseq's
#: HuBERT (``hubert_base_ls960_L9_km500.bin``) were pickled from there.
OLD_SKLEARN_MODULES = {"sklearn.cluster.k_means_": "sklearn.cluster._kmeans"}


@contextmanager
def _old_sklearn_module_paths() -> Iterator[None]:
    """Make the pre-0.22 module paths name today's modules while a pickle is read."""
    added = [old for old in OLD_SKLEARN_MODULES if old not in sys.modules]
    for old in added:
        sys.modules[old] = importlib.import_module(OLD_SKLEARN_MODULES[old])
    try:
        yield
    finally:
        for old in added:
            del sys.modules[old]


def kmeans_from_centers(centers: np.ndarray) -> KMeans:
    """A fitted k-means model of today's scikit-learn with exactly these ``(C, D)`` centroids.

    Only the attributes ``predict`` reads are set (``cluster_centers_``, ``n_features_in_`` and the
    private ``_n_threads``; tests/test_model_labels.py pins them): refitting would move the centroids.
    """
    model = KMeans(n_clusters=centers.shape[0])
    model.cluster_centers_ = centers
    model.n_features_in_ = centers.shape[1]
    model._n_threads = _openmp_effective_n_threads()
    return model


def load_kmeans(path: Path) -> KMeansModel:
    """A k-means model saved with joblib: ours (:func:`save_kmeans`) or a released quantizer.

    A model pickled by another scikit-learn version (fairseq's HuBERT quantizers come from
    scikit-learn 0.2x, whose attributes differ) is rebuilt from its ``cluster_centers_``.

    Raises:
        FileNotFoundError: No such file.
        ValueError: The file is not a pickled k-means model, naming it.
    """
    if not Path(path).is_file():
        raise FileNotFoundError(f"{path}: no k-means model; run the k-means stage first")
    try:
        with _old_sklearn_module_paths(), warnings.catch_warnings():
            warnings.simplefilter("ignore", InconsistentVersionWarning)
            model = joblib.load(path)
    except (
        pickle.UnpicklingError,
        EOFError,
        ImportError,
        AttributeError,
        KeyError,
        ValueError,
    ) as error:
        raise ValueError(
            f"{path}: cannot be read as a k-means model (a joblib pickle of scikit-learn's KMeans "
            f"or MiniBatchKMeans): {type(error).__name__}: {error}"
        ) from error
    centers = getattr(model, "cluster_centers_", None)
    if not isinstance(centers, np.ndarray) or centers.ndim != 2:
        raise ValueError(
            f"{path}: holds a {type(model).__name__} without (C, D) cluster_centers_; expected a "
            "fitted scikit-learn KMeans or MiniBatchKMeans"
        )
    if getattr(model, "_sklearn_version", None) == sklearn.__version__:
        return model
    logger.info("%s: pickled by another scikit-learn; using its %d centroids", path, len(centers))
    return kmeans_from_centers(centers)


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

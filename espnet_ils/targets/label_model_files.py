"""Where a label model lies on disk, and what a re-run marker holds for it; no torch, no ESPnet.

The jobs of stage 5 (``bin/model_labels``, ``bin/extract_layer_features``) check their shard's
marker with :func:`label_model_identity` before they import what loads the model
(:mod:`espnet_ils.targets.label_models`, about 10 s of imports per process), so a re-run that finds every
shard done imports neither torch nor ESPnet.
"""

from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Tuple

from espnet_ils.data.markers import files_checksum

ESPNET = "espnet"
HUGGINGFACE = "huggingface"
#: A single PyTorch file, fairseq or torchaudio: told apart by what it holds.
TORCH_FILE = "torch_file"

ESPNET_CONFIG = "config.yaml"
#: Weights of an ESPnet model directory: ``convert_unispeech``'s and ``ssl_train``'s names.
ESPNET_WEIGHTS = ("model.pth", "valid.loss.best.pth")

HF_CONFIG = "config.json"
HF_PREPROCESSOR_CONFIG = "preprocessor_config.json"
#: PyTorch weights of a Hugging Face directory, whole or sharded with an index.
HF_WEIGHTS = (
    "*.safetensors",
    "*.safetensors.index.json",
    "pytorch_model*.bin",
    "pytorch_model*.bin.index.json",
)


@dataclass(frozen=True)
class LabelModelFiles:
    """Where a label model lies on disk.

    Attributes:
        form: :data:`ESPNET`, :data:`HUGGINGFACE`, or :data:`TORCH_FILE` (fairseq or torchaudio,
            told apart by what the file holds).
        files: Every file that defines the model, e.g. ESPnet ``(weights, config.yaml)``.
    """

    form: str
    files: Tuple[Path, ...]


def _espnet_weights(directory: Path) -> Path:
    present = [directory / name for name in ESPNET_WEIGHTS if (directory / name).is_file()]
    if len(present) != 1:
        found = [p.name for p in present] or sorted(p.name for p in directory.glob("*.pth"))
        raise ValueError(
            f"label model {directory}: an ESPnet model directory must hold one of "
            f"{list(ESPNET_WEIGHTS)}, found {found}; pass the weights file itself"
        )
    return present[0]


def _huggingface_files(directory: Path) -> Tuple[Path, ...]:
    weights = sorted({path for pattern in HF_WEIGHTS for path in directory.glob(pattern)})
    if not weights:
        raise ValueError(
            f"label model {directory}: a Hugging Face directory ({HF_CONFIG}) without PyTorch "
            "weights (model.safetensors or pytorch_model.bin)"
        )
    preprocessor = directory / HF_PREPROCESSOR_CONFIG
    extra = [preprocessor] if preprocessor.is_file() else []
    return (directory / HF_CONFIG, *extra, *weights)


def locate_label_model(path: Path, config: Optional[Path] = None) -> LabelModelFiles:
    """Tell a label model's form from its place on disk, without reading weights.

    Args:
        path: A directory with ``config.json`` (Hugging Face) or ``config.yaml`` (ESPnet), or a
            file: ESPnet weights when ``config`` is given or ``config.yaml`` lies beside it, else
            a fairseq checkpoint or a torchaudio state dict.
        config: ESPnet ``config.yaml``; only for ESPnet models.

    Returns:
        The form and the files that define the model.

    Raises:
        ValueError: Nothing at ``path``, a directory of no known form, or a missing ``config``.
    """
    path = Path(path)
    if config is not None:
        weights = _espnet_weights(path) if path.is_dir() else path
        for needed in (weights, Path(config)):
            if not needed.is_file():
                raise ValueError(f"label model {path}: {needed} is not a file")
        return LabelModelFiles(ESPNET, (weights, Path(config)))
    if path.is_dir():
        if (path / HF_CONFIG).is_file():
            return LabelModelFiles(HUGGINGFACE, _huggingface_files(path))
        if (path / ESPNET_CONFIG).is_file():
            return LabelModelFiles(ESPNET, (_espnet_weights(path), path / ESPNET_CONFIG))
        raise ValueError(
            f"label model {path}: a directory with neither {HF_CONFIG} (Hugging Face) nor "
            f"{ESPNET_CONFIG} (ESPnet); pass a model file or such a directory"
        )
    if not path.is_file():
        raise ValueError(f"label model {path}: no such file or directory")
    if (path.parent / ESPNET_CONFIG).is_file():
        return LabelModelFiles(ESPNET, (path, path.parent / ESPNET_CONFIG))
    return LabelModelFiles(TORCH_FILE, (path,))


def label_model_files(path: Path, config: Optional[Path] = None) -> List[Path]:
    """Every file that defines a label model (see :func:`locate_label_model`)."""
    return list(locate_label_model(path, config).files)


def label_model_identity(path: Path, config: Optional[Path] = None) -> str:
    """What a re-run marker holds for a label model: one checksum of the name and content of every
    file that defines it (ESPnet weights and ``config.yaml``; the fairseq or torchaudio file; the
    Hugging Face ``config.json``, ``preprocessor_config.json`` and weights), not its path.

    Args:
        path: As for :func:`load_label_model`.
        config: ESPnet ``config.yaml``; default beside the weights.

    Returns:
        ``espnet_ils.data.markers.files_checksum`` of the files.
    """
    return files_checksum(label_model_files(path, config))

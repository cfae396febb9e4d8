"""Frame labels for the SSL task: one k-means id per encoder frame (50 Hz), checked per utterance.

ESPnet's SSL task reads them as the data directory's ``text`` with ``--token_type word`` and a token
list of the cluster ids followed by ``<unk>`` (token id == cluster id).
"""

from pathlib import Path
from typing import Sequence

import numpy as np

from espnet_ils.shards import write_text_atomic

UNK = "<unk>"  # ESPnet's tokenizer needs it; it comes last so that token id == cluster id
RECEPTIVE_FIELD = 400  # samples, the conv front's window (25 ms)
ENCODER_STRIDE = 320  # samples, the conv front's hop (20 ms, 50 Hz)


def encoder_frames(num_samples: int) -> int:
    """Frames the conv front gives for ``num_samples`` samples: ``floor((N - 400) / 320) + 1``."""
    return max(0, (num_samples - RECEPTIVE_FIELD) // ENCODER_STRIDE + 1)


def to_encoder_rate(labels: np.ndarray, feature_rate_hz: int) -> np.ndarray:
    """Bring labels computed at ``feature_rate_hz`` (100 or 50) to the encoder's 50 Hz.

    100 Hz MFCC frames (hop 160) are taken every second frame: frame 2t starts at sample 320 t, as
    encoder frame t does; ``ceil(M / 2)`` of them equal ``floor((N - 400) / 320) + 1``.
    """
    if feature_rate_hz == 50:
        return labels
    if feature_rate_hz == 100:
        return labels[::2]
    raise ValueError(f"feature rate {feature_rate_hz} Hz: labels come at 50 or 100 Hz")


def check_frame_count(utt: str, labels: np.ndarray, num_samples: int, tolerance: int = 0) -> None:
    """Raise unless ``labels`` has the encoder's frame count for ``num_samples`` (+- tolerance)."""
    expected = encoder_frames(num_samples)
    if abs(len(labels) - expected) > tolerance:
        raise ValueError(
            f"utterance {utt}: {len(labels)} labels but the encoder gives {expected} frames for "
            f"{num_samples} samples (tolerance {tolerance}); were the features computed on other audio?"
        )


def format_labels(utt: str, labels: Sequence[int]) -> str:
    return utt + " " + " ".join(str(int(label)) for label in labels)


def write_token_list(path: Path, num_classes: int) -> None:
    """The SSL token list: ``0 .. num_classes - 1`` then ``<unk>``."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, [str(i) for i in range(num_classes)] + [UNK])

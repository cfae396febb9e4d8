"""Frame labels for the SSL task: one k-means id per encoder frame (50 Hz), checked per utterance.

ESPnet's SSL task reads them as the data directory's ``text`` with ``--token_type word`` and a token
list of the cluster ids followed by ``<unk>`` (token id == cluster id).
"""

from pathlib import Path
from typing import List, Sequence

import numpy as np

from espnet_ils.data.audio import num_frames
from espnet_ils.data.kaldi_files import write_text_atomic

UNK = "<unk>"  # ESPnet's tokenizer needs it; it comes last so that token id == cluster id


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
    expected = num_frames(num_samples)
    if abs(len(labels) - expected) > tolerance:
        raise ValueError(
            f"utterance {utt}: {len(labels)} labels but the encoder gives {expected} frames for "
            f"{num_samples} samples (tolerance {tolerance}); were the features computed on other audio?"
        )


def format_labels(utt: str, labels: Sequence[int]) -> str:
    return utt + " " + " ".join(str(int(label)) for label in labels)


def cluster_token_list(num_classes: int) -> List[str]:
    """The SSL token list: cluster ids ``"0" .. str(num_classes - 1)``, then ``<unk>``
    (``ILSSSLTask``'s contract: token id == cluster id)."""
    return [str(cluster) for cluster in range(num_classes)] + [UNK]


def write_token_list(path: Path, num_classes: int) -> None:
    """Write :func:`cluster_token_list` to ``path``, one token per line."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, cluster_token_list(num_classes))

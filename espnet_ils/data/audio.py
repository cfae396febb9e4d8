"""16 kHz audio: the sample rate, the frame grids over it, and reading waveforms with errors that
name the file and utterance.

Frame ``t`` of a grid with hop ``h`` covers samples ``[h t, h t + 400)``: at hop 320 (50 Hz) the
frames of the conv front (receptive field 400, total stride 320, as its blocks in
``espnet_ils.model.frontend.DEFAULT_CONV_SHAPES`` make it) and so of the encoder and its labels; at hop
160 (100 Hz) Kaldi's 25 ms / 10 ms MFCC framing (``snip_edges``).
Frame ``2t`` of the 100 Hz grid starts where frame ``t`` of the 50 Hz grid does.
"""

from pathlib import Path
from typing import Union

import numpy as np
import soundfile as sf

SAMPLE_RATE = 16000  # Hz, of every corpus and model here
WINDOW = 400  # samples (25 ms): the conv front's receptive field, Kaldi's MFCC window
ENCODER_HOP = 320  # samples (20 ms, 50 Hz): the conv front's total stride
MFCC_HOP = 160  # samples (10 ms, 100 Hz): Kaldi's MFCC frame shift


def num_frames(num_samples: int, hop: int = ENCODER_HOP) -> int:
    """Frames of :data:`WINDOW` samples every ``hop`` samples that fit in ``num_samples`` samples.

    Args:
        num_samples: Length of the waveform in samples at 16 kHz.
        hop: Frame shift in samples (:data:`ENCODER_HOP` for the encoder's 50 Hz frames,
            :data:`MFCC_HOP` for 100 Hz MFCC frames).

    Returns:
        ``floor((N - 400) / hop) + 1``, or 0 for a waveform shorter than one window.
    """
    return max(0, (num_samples - WINDOW) // hop + 1)


def load_waveform(
    path: Union[str, Path], utt_id: str, sample_rate: int = SAMPLE_RATE
) -> np.ndarray:
    """Read one mono utterance as float32 samples in [-1, 1].

    Args:
        path: Audio file readable by soundfile (FLAC, WAV, ...).
        utt_id: The utterance, for error messages.
        sample_rate: Required sampling rate in Hz.

    Returns:
        ``(N,)`` float32 samples.

    Raises:
        ValueError: Unreadable, empty, multi-channel or wrongly sampled audio, naming utterance
            and file.
    """
    try:
        wave, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, OSError) as error:
        raise ValueError(f"utterance {utt_id}: cannot read audio file {path}: {error}") from error
    if wave.shape[1] != 1:
        raise ValueError(f"utterance {utt_id}: {path} has {wave.shape[1]} channels; expected mono")
    if rate != sample_rate:
        raise ValueError(
            f"utterance {utt_id}: {path} is sampled at {rate} Hz; expected {sample_rate} Hz "
            "(resample the corpus first)"
        )
    if wave.shape[0] == 0:
        raise ValueError(f"utterance {utt_id}: {path} is empty")
    return wave[:, 0]

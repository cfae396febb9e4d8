"""MFCC features of the HuBERT reference pipeline (iteration-1 k-means targets).

Kaldi-compatible MFCC (13 cepstra, 23 mel bins, 25 ms windows every 10 ms, no energy, no dither)
plus deltas and delta-deltas (window 5): 39 dims at 100 Hz, no CMVN.
"""

import numpy as np
import torch
import torchaudio

from espnet_ils.data.audio import SAMPLE_RATE


def compute_mfcc(wave: np.ndarray, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """MFCC + deltas + delta-deltas of one utterance.

    Args:
        wave: ``(N,)`` float samples in [-1, 1] at ``sample_rate``.
        sample_rate: Hz (16000).

    Returns:
        ``(M, 39)`` float32 features at 100 Hz, ``M = floor((N - 400) / 160) + 1`` at 16 kHz.
    """
    waveform = torch.from_numpy(np.ascontiguousarray(wave, dtype=np.float32))[None]
    with torch.no_grad():
        mfcc = torchaudio.compliance.kaldi.mfcc(
            waveform,
            sample_frequency=sample_rate,
            use_energy=False,
            num_ceps=13,
            num_mel_bins=23,
            frame_length=25.0,
            frame_shift=10.0,
            dither=0.0,
        )  # (M, 13)
        cepstra = mfcc.t()[None]  # (1, 13, M): compute_deltas works along the last axis
        deltas = torchaudio.functional.compute_deltas(cepstra, win_length=5)
        delta_deltas = torchaudio.functional.compute_deltas(deltas, win_length=5)
        features = torch.cat([cepstra, deltas, delta_deltas], dim=1)[0].t()  # (M, 39)
    return features.numpy().astype(np.float32)

"""Generated audio in the layouts the pipeline reads: a data directory's ``wav.scp`` of tones
(``write_wavs``) and a one-chapter LibriSpeech subset (``write_librispeech``)."""

from pathlib import Path

import numpy as np
import soundfile as sf


def write_wavs(root: Path, count: int = 6) -> Path:
    """``count`` utterances ``u0``, ``u1``, ... (0.5 s, each 1931 samples longer than the one
    before): a tone of its own pitch plus noise, FLACs in ``root/wav`` listed in ``root/wav.scp``."""
    rng = np.random.default_rng(0)
    (root / "wav").mkdir(parents=True)
    lines = []
    for index in range(count):
        samples = 8000 + 1931 * index
        wave = 0.1 * np.sin(
            np.arange(samples) * (0.05 + 0.02 * index)
        ) + 0.01 * rng.standard_normal(samples)
        path = root / "wav" / f"u{index}.flac"
        sf.write(path, wave.astype(np.float32), 16000)
        lines.append(f"u{index} {path}")
    (root / "wav.scp").write_text("\n".join(lines) + "\n")
    return root / "wav.scp"


def write_librispeech(root: Path, words: str) -> Path:
    """A one-chapter LibriSpeech subset ``root/dev-clean``: two utterances saying ``words``."""
    chapter = root / "dev-clean" / "1" / "2"
    chapter.mkdir(parents=True)
    lines = []
    for index in range(2):
        sf.write(chapter / f"1-2-000{index}.flac", np.zeros(16000, dtype=np.float32) + 0.01, 16000)
        lines.append(f"1-2-000{index} {words}\n")
    (chapter / "1-2.trans.txt").write_text("".join(lines))
    return root / "dev-clean"

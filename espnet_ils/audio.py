"""Reading Kaldi-style audio lists and waveforms, with errors that name the file and utterance."""

from pathlib import Path
from typing import Dict, Union

import numpy as np
import soundfile as sf

SAMPLE_RATE = 16000


def read_key_file(path: Union[str, Path]) -> Dict[str, str]:
    """Read a Kaldi-style ``key value...`` file (``wav.scp``, ``text``, ``utt2spk``) into a dict.

    Args:
        path: The file; one ``key rest-of-line`` entry per line.

    Returns:
        ``{key: rest}`` sorted by key.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: A line without a value, or a repeated key (naming the line).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    entries: Dict[str, str] = {}
    with path.open(encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            fields = line.strip().split(maxsplit=1)
            if not fields:
                continue
            if len(fields) != 2:
                raise ValueError(f"{path}:{number}: expected 'key value', got {line.strip()!r}")
            if fields[0] in entries:
                raise ValueError(f"{path}:{number}: key {fields[0]!r} appears twice")
            entries[fields[0]] = fields[1]
    return dict(sorted(entries.items()))


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

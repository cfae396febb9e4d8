"""The LibriSpeech sample of the shared test data laid out as Libri-Light (``write_librilight``):
each speaker in a subset, LibriSpeech's chapter as the book, a VAD JSON beside every FLAC."""

import json
import shutil
from pathlib import Path
from typing import Callable, List

import soundfile as sf

from helpers.shared_data import LIBRISPEECH_SAMPLE

# Libri-Light's subset of each sample speaker (write_librilight).
SUBSET_OF_SPEAKER = {"1089": "small", "1988": "medium", "2412": "medium", "3752": "large"}


def two_segments(duration: float) -> List[List[float]]:
    """A VAD of two stretches with a pause between them and silence at both ends."""
    return [[0.21, round(0.45 * duration, 3)], [round(0.5 * duration, 3), round(duration - 0.1, 3)]]


def write_json(flac: Path, voice_activity) -> None:
    """Libri-Light's JSON beside ``flac``: its speaker, book and VAD ``[[start, end], ...]`` (s)."""
    meta = {"speaker": flac.parent.parent.name, "book_meta": {"id": "1"}, "snr": 9.5}
    flac.with_suffix(".json").write_text(json.dumps({**meta, "voice_activity": voice_activity}))


def write_librilight(root: Path, vad: Callable = two_segments) -> Path:
    """The 14 sample FLACs as Libri-Light: speaker 1089 in small/, 1988 and 2412 in medium/, 3752
    in large/, LibriSpeech's chapter as the book."""
    for flac in sorted(LIBRISPEECH_SAMPLE.rglob("*.flac")):
        speaker, book = flac.parent.parent.name, flac.parent.name
        dst = root / SUBSET_OF_SPEAKER[speaker] / speaker / book / flac.name
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(flac, dst)
        write_json(dst, vad(sf.info(str(flac)).duration))
    return root

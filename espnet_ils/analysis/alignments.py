"""Phone alignments on the encoder's frame grid, from timed phone segments.

Sources: the Montreal Forced Aligner's TextGrid files (a ``phones`` tier), frame-level phone files
in the format fairseq's HuBERT label-quality script reads (``utt<TAB>p1,p2,...`` at a fixed frame
rate, 100 Hz for LibriSpeech), and the mini corpus's engine timings.

The rule at frame edges: with hop ``h`` (``espnet_ils.data.audio``), frame ``t`` covers samples
``[h t, h t + 400)`` and takes the phone whose segment ``[start, end)`` holds the centre of its
window, ``(h t + 200) / 16000`` s, so a centre on a boundary takes the later phone. A centre outside
every segment (before the first, after the last, or in a gap) is silence, as is an empty label
(MFA's unlabelled intervals). A frame-level file's frame ``j`` at rate ``R`` is the segment
``[j / R, (j + 1) / R)``.

Stress digits (``AH0`` -> ``ah``) are removed and labels lower-cased, as fairseq's script does, so
that LibriSpeech's 39 ARPAbet phones plus silence are what is scored.
"""

import bisect
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterable, List, Mapping, Sequence

from espnet_ils.data.audio import ENCODER_HOP, SAMPLE_RATE, WINDOW, num_frames
from espnet_ils.data.kaldi_files import read_key_file

SILENCE = "sil"
# How far an alignment may end from the end of its audio, in seconds: a frame-level file ends with
# its last full frame (up to a window short of the end); more means another recording or a cut one.
END_TOLERANCE_S = 0.05
# MFA's and CMUdict's silence and noise marks, scored as silence
SILENCE_MARKS = frozenset({"", "sil", "sp", "spn", "<eps>", "pau"})


@dataclass(frozen=True)
class PhoneSegment:
    """One phone with its time span.

    Attributes:
        label: Phone name.
        start: Start time in seconds from the beginning of the waveform.
        end: End time in seconds (``end >= start``).
    """

    label: str
    start: float
    end: float


def frame_labels(
    segments: Sequence[PhoneSegment], num_samples: int, hop: int = ENCODER_HOP
) -> List[str]:
    """One phone label per frame (see the module docstring for the rule).

    Args:
        segments: Phones in time order, non-overlapping, times in seconds.
        num_samples: Length of the waveform in samples at 16 kHz.
        hop: Frame shift in samples (``ENCODER_HOP`` 320 for 50 Hz, ``MFCC_HOP`` 160 for 100 Hz).

    Returns:
        ``num_frames(num_samples, hop)`` labels.
    """
    ends = [segment.end for segment in segments]
    labels = []
    for frame in range(num_frames(num_samples, hop)):
        centre = (frame * hop + WINDOW / 2) / SAMPLE_RATE  # seconds
        index = bisect.bisect_right(ends, centre)
        inside = index < len(segments) and segments[index].start <= centre
        labels.append(segments[index].label if inside else SILENCE)
    return labels


def normalize_phone(label: str) -> str:
    """ARPAbet without stress, lower case; silence and noise marks -> ``SILENCE``."""
    phone = re.sub(r"[0-9]", "", label.strip()).lower()
    return SILENCE if phone in SILENCE_MARKS else phone


def textgrid_segments(path: Path, tier: str = "phones") -> List[PhoneSegment]:
    """The normalised phone segments of ``tier`` in an MFA TextGrid file."""
    from praatio import textgrid  # imported here: only stage 7 on LibriSpeech needs it

    try:
        grid = textgrid.openTextgrid(str(path), includeEmptyIntervals=True)
    except Exception as error:  # praatio raises several types for a malformed file
        raise ValueError(f"{path}: not a readable TextGrid ({error})") from error
    if tier not in grid.tierNames:
        raise ValueError(f"{path}: no tier {tier!r}; tiers: {list(grid.tierNames)}")
    return [
        PhoneSegment(normalize_phone(entry.label), entry.start, entry.end)
        for entry in grid.getTier(tier).entries
    ]


def textgrid_files(directory: Path) -> Dict[str, Path]:
    """``{utt: path}`` of every ``<utt>.TextGrid`` under ``directory`` (MFA writes one folder per
    speaker); an utterance found twice is refused, naming both files."""
    files: Dict[str, Path] = {}
    for path in sorted(Path(directory).rglob("*.TextGrid")):
        if path.stem in files:
            raise ValueError(f"utterance {path.stem}: two TextGrids, {files[path.stem]} and {path}")
        files[path.stem] = path
    return files


def frame_phone_segments(path: Path, rate_hz: float) -> Dict[str, List[PhoneSegment]]:
    """``{utt: segments}`` of a frame-level phone file (``utt<TAB>p1,p2,...`` at ``rate_hz``)."""
    segments = {}
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        utt, tab, phones = line.partition("\t")
        if not tab or not phones:
            raise ValueError(f"{path}:{number}: expected 'utt<TAB>p1,p2,...', got {line[:60]!r}")
        segments[utt] = [
            PhoneSegment(normalize_phone(phone), j / rate_hz, (j + 1) / rate_hz)
            for j, phone in enumerate(phones.split(","))
        ]
    return segments


def encoder_alignments(
    segments: Mapping[str, Sequence[PhoneSegment]], utt2num_samples: Mapping[str, int]
) -> Dict[str, List[str]]:
    """``{utt: one phone per 50 Hz encoder frame}`` for the utterances of ``utt2num_samples``
    that ``segments`` covers.

    Raises:
        ValueError: An alignment ends more than ``END_TOLERANCE_S`` from its audio's end, naming
            the utterance and both lengths.
    """
    alignments = {}
    for utt, num_samples in utt2num_samples.items():
        if utt not in segments:
            continue
        duration = num_samples / SAMPLE_RATE
        end = segments[utt][-1].end if segments[utt] else 0.0
        if abs(end - duration) > END_TOLERANCE_S:
            raise ValueError(
                f"utterance {utt}: the alignment ends at {end:.3f} s but the audio lasts "
                f"{duration:.3f} s; is it the alignment of this recording?"
            )
        alignments[utt] = frame_labels(segments[utt], num_samples)
    return alignments


def unaligned(utts: Iterable[str], aligned: Mapping[str, object]) -> List[str]:
    """The utterances of ``utts`` without an alignment, sorted."""
    return sorted(set(utts) - set(aligned))


def read_frame_labels(path: Path) -> Dict[str, List[str]]:
    """``{utt: [value per 50 Hz frame]}`` of a label or alignment file."""
    return {utt: value.split() for utt, value in read_key_file(path).items()}

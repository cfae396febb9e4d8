"""Phone segments (times in seconds) -> one phone label per encoder frame.

The frames are those of the conv feature extractor (DESIGN.md section 1): at 16 kHz, frame ``t``
of the 50 Hz grid covers samples ``[320 t, 320 t + 400)``, so an utterance of ``N`` samples has
``floor((N - 400) / 320) + 1`` frames. The 100 Hz grid is Kaldi's 25 ms / 10 ms MFCC framing
(``snip_edges``): samples ``[160 t, 160 t + 400)``. A frame is labelled with the phone that covers
the centre of its window; a centre outside every segment (before the first or after the last
phone the engine timed) is silence.
"""

import bisect
from typing import List, Sequence

from espnet_ils.corpus.phones import SILENCE, PhoneSegment

SAMPLE_RATE = 16000  # Hz
WINDOW = 400  # samples (25 ms), receptive field of the conv feature extractor
HOP_50HZ = 320  # samples (20 ms), total stride of the conv feature extractor
HOP_100HZ = 160  # samples (10 ms), MFCC frame shift


def num_frames(num_samples: int, hop: int = HOP_50HZ, window: int = WINDOW) -> int:
    """Frames of ``window`` samples every ``hop`` samples that fit in ``num_samples`` samples."""
    if num_samples < window:
        return 0
    return (num_samples - window) // hop + 1


def frame_labels(
    segments: Sequence[PhoneSegment],
    num_samples: int,
    hop: int = HOP_50HZ,
    window: int = WINDOW,
    sample_rate: int = SAMPLE_RATE,
) -> List[str]:
    """One phone label per frame.

    Args:
        segments: Phones in time order, non-overlapping, times in seconds.
        num_samples: Length of the waveform in samples at ``sample_rate``.
        hop: Frame shift in samples (320 for 50 Hz, 160 for 100 Hz at 16 kHz).
        window: Frame length in samples (400 = 25 ms at 16 kHz).
        sample_rate: Sampling rate in Hz.

    Returns:
        ``num_frames(num_samples, hop, window)`` labels.
    """
    ends = [segment.end for segment in segments]
    labels = []
    for frame in range(num_frames(num_samples, hop, window)):
        centre = (frame * hop + window / 2) / sample_rate
        index = bisect.bisect_right(ends, centre)
        inside = index < len(segments) and segments[index].start <= centre
        labels.append(segments[index].label if inside else SILENCE)
    return labels

"""Phone segments (times in seconds) -> one phone label per frame of a 16 kHz frame grid.

The grids are those of :mod:`espnet_ils.audio`: frame ``t`` with hop ``h`` covers samples
``[h t, h t + 400)``, so an utterance of ``N`` samples has ``num_frames(N, h)`` frames (hop 320:
the encoder's 50 Hz frames; hop 160: Kaldi's 100 Hz MFCC frames). A frame is labelled with the
phone that covers the centre of its window; a centre outside every segment (before the first or
after the last phone the engine timed) is silence.
"""

import bisect
from typing import List, Sequence

from espnet_ils.audio import ENCODER_HOP, SAMPLE_RATE, WINDOW, num_frames
from mini_corpus.phones import SILENCE, PhoneSegment


def frame_labels(
    segments: Sequence[PhoneSegment], num_samples: int, hop: int = ENCODER_HOP
) -> List[str]:
    """One phone label per frame.

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

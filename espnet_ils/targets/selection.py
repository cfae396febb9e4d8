"""Which utterances a k-means is fitted on: a seeded portion of a set, or a seeded subset of so many
hours of audio; the same choice wherever it is made (the k-means fits, the cluster quality, and
the data checks after stage 2), from the utterance ids and lengths alone.

Only numpy is imported here, so that the checks before the stages stay quick to start.
"""

from typing import List, Mapping, Sequence

import numpy as np

from espnet_ils.data.audio import SAMPLE_RATE


def choose_utterances(utts: Sequence[str], portion: float, seed: int) -> Sequence[str]:
    """A seeded random ``portion`` (0, 1] of ``utts`` (at least one), in sorted order."""
    if not 0 < portion <= 1:
        raise ValueError(f"--portion {portion}: must be in (0, 1]")
    count = max(1, round(len(utts) * portion))
    chosen = np.random.default_rng(seed).choice(len(utts), size=count, replace=False)
    return sorted(utts[i] for i in chosen)


def choose_by_duration(num_samples: Mapping[str, int], hours: float, seed: int) -> List[str]:
    """A seeded random subset of the utterances of ``num_samples`` (samples at 16 kHz) of at least
    ``hours`` of audio (all of them when they hold less; ``hours`` 0: all), in sorted order."""
    if hours < 0:
        raise ValueError(f"hours {hours}: must be >= 0")
    utts = sorted(num_samples)
    if hours == 0:
        return utts
    chosen, total = [], 0
    for index in np.random.default_rng(seed).permutation(len(utts)):
        if total >= hours * 3600 * SAMPLE_RATE:
            break
        chosen.append(utts[index])
        total += num_samples[utts[index]]
    return sorted(chosen)


def choose_portion(
    num_samples: Mapping[str, int], portion: float, max_hours: float, seed: int
) -> List[str]:
    """The utterances k-means is fitted on: a seeded ``portion`` of all of them
    (:func:`choose_utterances`, so the same as fitting on a portion of every utterance's
    features), cut to a seeded subset of ``max_hours`` of audio when it holds more (0: no cap).

    Args:
        num_samples: Utterance -> length in samples at 16 kHz.
        portion: Share of the utterances, in (0, 1].
        max_hours: Most audio to fit on, in hours (0: no cap); k-means holds its frames in memory.
        seed: Seed of both choices.

    Returns:
        Utterance ids, sorted.
    """
    if max_hours < 0:
        raise ValueError(f"--max_hours {max_hours}: must be >= 0 (0: no cap)")
    chosen = choose_utterances(sorted(num_samples), portion, seed)
    if max_hours == 0 or sum(num_samples[u] for u in chosen) <= max_hours * 3600 * SAMPLE_RATE:
        return list(chosen)
    return choose_by_duration({u: num_samples[u] for u in chosen}, max_hours, seed)

"""k-means labels straight from audio: a model's block output, then the nearest centroid.

Iteration 2 (and LARGE, with an external model) needs one label per 50 Hz frame of every training
utterance. Dumping the block's features first costs 553 MB per audio hour in float32 for a
768-wide block (531 GB for LibriSpeech 960 h); here each batch of audio goes through the model and
the k-means model and only its labels are kept, so a label job writes about 0.8 MB per audio hour
and holds one window of utterances at a time, whatever its shard's size.

Order: a shard's utterances are taken in its wav.scp order, :data:`WINDOW` at a time; within a
window they run in batches of similar length, and the window's labels are written in wav.scp order,
so a shard's file is in wav.scp order (``merge_labels`` checks it) and equal, line for line, to
what ``dump_labels`` writes from dumped features of the same model and layer (bit for bit on the
CPU with ``batch_size`` 1, where the features are the same floats).
"""

import logging
from pathlib import Path
from typing import Container, Iterator, List, Mapping, Optional, Sequence, Tuple

import kaldiio
import torch
from tqdm import tqdm

from espnet_ils.data.audio import load_waveform
from espnet_ils.data.kaldi_files import atomic_path
from espnet_ils.data.labels import check_frame_count, format_labels
from espnet_ils.targets.kmeans import KMeansModel, assign_clusters
from espnet_ils.targets.layer_features import (
    LayerFeatureExtractor,
    length_sorted_batches,
    pad_waveforms,
)

logger = logging.getLogger(__name__)

WINDOW = 512  # utterances whose labels are held at once (about 1.3 MB of labels for 15 s each)


def windows(
    utts: Sequence[str],
    num_samples: Mapping[str, int],
    batch_size: int,
    window: int = WINDOW,
    skip: Container[str] = (),
) -> Iterator[Tuple[List[str], List[List[str]]]]:
    """``(window, batches)``: consecutive runs of ``window`` utterances of ``utts`` and the
    length-sorted batches of ``batch_size`` of each run's utterances not in ``skip``."""
    for start in range(0, len(utts), window):
        chunk = list(utts[start : start + window])
        lengths = {utt: num_samples[utt] for utt in chunk if utt not in skip}
        yield chunk, length_sorted_batches(lengths, batch_size)


def label_batch(
    extractor: LayerFeatureExtractor,
    layer: int,
    kmeans: KMeansModel,
    batch: Sequence[str],
    audio: Mapping[str, str],
    num_samples: Mapping[str, int],
) -> List[str]:
    """The label lines (``utt c1 c2 ...``) of one batch of utterances.

    Args:
        extractor: The model.
        layer: Its block output to cluster (1-based; 0: the input of block 1).
        kmeans: Fitted on that layer's features.
        batch: Utterance ids.
        audio: Utterance -> audio file (wav.scp).
        num_samples: Utterance -> length in samples, as the data directory says.

    Raises:
        ValueError: Unreadable audio, a length other than the data directory's, or a label count
            other than the encoder's frame count, naming the utterance.
    """
    waves = [load_waveform(audio[utt], utt, extractor.sample_rate) for utt in batch]
    for utt, wave in zip(batch, waves):
        if len(wave) != num_samples[utt]:
            raise ValueError(
                f"utterance {utt}: {audio[utt]} has {len(wave)} samples, the data directory says "
                f"{num_samples[utt]} (utt2num_samples): was the audio replaced? Run stage 2 again"
            )
    speech, lengths = pad_waveforms(waves)
    states, frames = extractor.extract_batch(speech, lengths, [layer])  # (1, B, T, D), (B,)
    lines = []
    for index, utt in enumerate(batch):
        labels = assign_clusters(kmeans, states[0, index, : int(frames[index])])
        check_frame_count(utt, labels, num_samples[utt])
        lines.append(format_labels(utt, labels))
    return lines


def write_label_shard(
    extractor: LayerFeatureExtractor,
    layer: int,
    kmeans: KMeansModel,
    audio: Mapping[str, str],
    num_samples: Mapping[str, int],
    output: Path,
    batch_size: int = 1,
    desc: str = "labels",
    stored: Optional[Mapping[str, str]] = None,
) -> int:
    """Write the labels of the utterances of ``audio`` (in its order) to ``output``.

    The file appears under its name only when every utterance is labelled. Utterances whose
    features of this layer are already written (the k-means portion's, in float32) are labelled
    from them instead of running the model again: the same floats, so the same labels.

    Args:
        extractor: The model.
        layer: Its block output to cluster.
        kmeans: Fitted on that layer's features.
        audio: Utterance -> audio file, in the order to write.
        num_samples: Utterance -> length in samples (every utterance of ``audio``).
        output: The shard's label file.
        batch_size: Utterances per forward pass.
        desc: Progress bar label.
        stored: Utterance -> kaldiio location of its ``(frames, dim)`` features of ``layer``.

    Returns:
        The number of utterances written.
    """
    extractor.check_layers([layer])
    missing = [utt for utt in audio if utt not in num_samples]
    if missing:
        raise ValueError(
            f"utterances {missing[:5]} ({len(missing)}) of the wav.scp have no length in "
            "utt2num_samples: run stage 2 again"
        )
    utts = list(audio)
    with atomic_path(output) as tmp, tmp.open("w", encoding="utf-8") as f:
        progress = tqdm(total=len(utts), desc=desc)
        stored = {utt: stored[utt] for utt in utts if utt in stored} if stored else {}
        for window, batches in windows(utts, num_samples, batch_size, skip=stored):
            lines = {}
            for utt in (utt for utt in window if utt in stored):
                features = torch.tensor(
                    kaldiio.load_mat(stored[utt])
                )  # a copy: kaldiio maps it read-only
                labels = assign_clusters(kmeans, features)
                check_frame_count(utt, labels, num_samples[utt])
                lines[utt] = format_labels(utt, labels)
                progress.update(1)
            for batch in batches:
                for utt, line in zip(
                    batch, label_batch(extractor, layer, kmeans, batch, audio, num_samples)
                ):
                    lines[utt] = line
                progress.update(len(batch))
            f.writelines(lines[utt] + "\n" for utt in window)
        progress.close()
    logger.info("wrote the labels of %d utterances to %s", len(utts), output)
    return len(utts)

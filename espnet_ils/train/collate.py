"""ESPnet's HuBERT batches, with the labels checked per utterance and the paper's maximum crop.

Two things ``HuBERTCollateFn`` does not do, done here on the host, where the batch is still a list of
named utterances:

* **Label checks.** Every utterance's labels must be cluster ids (not ``<unk>``, the id of a label
  missing from the token list) and must number its frame count (``floor((N - window) / shift) +
  1`` for ``N`` samples, the collate's own window) within ``label_length_tolerance``. The error
  names the utterance. The loss then never reads a tensor value on the host, so a GPU step does
  not wait for these checks.
* **Maximum crop** (``max_sample_size``, the paper's 250k samples, fairseq's name). ESPnet crops every
  training batch to its shortest utterance but has no upper limit, so a batch of long utterances
  costs memory the paper never spent. Each longer utterance is first cropped to
  ``max_sample_size`` samples at a random offset with its labels (ESPnet's own crop, so audio and
  labels stay aligned as in the batch crop). Validation batches are not cropped, as in ESPnet.
"""

import math
from typing import Collection, Dict, List, Optional, Tuple

import numpy as np
import torch
from espnet2.train.collate_fn import HuBERTCollateFn, _crop_audio_label

from espnet_ils.data.labels import UNK

Batch = Collection[Tuple[str, Dict[str, np.ndarray]]]


class ILSCollateFn:
    """Check each utterance's labels, crop to ``max_sample_size``, then collate with ``collate``.

    Args:
        collate: ESPnet's HuBERT collate, as ``SSLTask.build_collate_fn`` makes it.
        num_classes: Cluster ids in the token list (its length minus the final ``<unk>``).
        max_sample_size: The longest training crop in samples (paper: 250000, 15.6 s at 16 kHz);
            None: no limit (ESPnet's behaviour).
        label_length_tolerance: Largest allowed difference, in frames, between an utterance's label
            count (after ``label_downsampling``) and its frame count (1).
    """

    def __init__(
        self,
        collate: HuBERTCollateFn,
        num_classes: int,
        max_sample_size: Optional[int] = None,
        label_length_tolerance: int = 1,
    ):
        self.window = int(collate.window_size * collate.sample_rate)  # samples
        self.shift = int(collate.window_shift * collate.sample_rate)  # samples
        if max_sample_size is not None:
            _check_count("max_sample_size", max_sample_size)
            if max_sample_size < self.window:
                raise ValueError(
                    f"collate_fn_conf max_sample_size={max_sample_size}: shorter than one frame of "
                    f"the front end ({self.window} samples)"
                )
            if collate.label_downsampling != 1:
                raise ValueError(
                    "collate_fn_conf max_sample_size needs label_downsampling: 1 (labels at the "
                    f"encoder's frame rate); got label_downsampling={collate.label_downsampling}"
                )
        _check_count("label_length_tolerance", label_length_tolerance)
        self.collate = collate
        self.num_classes = num_classes
        self.max_sample_size = max_sample_size
        self.label_length_tolerance = label_length_tolerance

    def check_labels(self, utt: str, sample: Dict[str, np.ndarray]) -> None:
        """Raise, naming ``utt``, unless its labels are cluster ids at its frame count."""
        labels = sample.get("text")
        if labels is None:
            return
        unknown = np.flatnonzero((labels < 0) | (labels >= self.num_classes))
        if unknown.size:
            raise ValueError(
                f"utterance {utt}: label id {int(labels[unknown[0]])} at frame {int(unknown[0])} "
                f"is not one of the {self.num_classes} cluster ids (id {self.num_classes} is "
                f"{UNK}: a label missing from the token list). Check that the token list "
                "matches the k-means model the labels were dumped with"
            )
        num_samples = sample["speech"].shape[0]
        frames = max(0, (num_samples - self.window) // self.shift + 1)
        num_labels = math.ceil(len(labels) / self.collate.label_downsampling)
        if abs(num_labels - frames) > self.label_length_tolerance:
            raise ValueError(
                f"utterance {utt}: {num_labels} labels (after label_downsampling="
                f"{self.collate.label_downsampling}) but {frames} frames for its {num_samples} "
                f"samples (tolerance {self.label_length_tolerance}): labels must be at the "
                "encoder's frame rate (50 Hz), as espnet_ils.bin.dump_labels writes them; 100 Hz "
                "labels need collate_fn_conf.label_downsampling: 2"
            )

    def crop(self, sample: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
        """One utterance cropped to ``max_sample_size`` samples with its labels (if longer)."""
        speech = sample["speech"]
        if speech.shape[0] <= self.max_sample_size:
            return sample
        # Private in ESPnet, but it is the crop HuBERTCollateFn applies to a batch, which ours must
        # match (pinned in tests/test_espnet_internals.py).
        speech, labels, _ = _crop_audio_label(
            speech,
            sample.get("text"),
            speech.shape[0],
            self.max_sample_size,
            self.collate.rand_crop,
            self.collate.window_size,
            self.collate.window_shift,
            self.collate.sample_rate,
        )
        cropped = dict(sample, speech=speech)
        if labels is not None:
            cropped["text"] = labels
        return cropped

    def __call__(self, data: Batch) -> Tuple[List[str], Dict[str, torch.Tensor]]:
        for utt, sample in data:
            self.check_labels(utt, sample)
        if self.max_sample_size is not None and self.collate.train and self.collate.crop_audio:
            data = [(utt, self.crop(sample)) for utt, sample in data]
        return self.collate(data)


def _check_count(key: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"collate_fn_conf {key}={value!r}: expected a non-negative whole number")

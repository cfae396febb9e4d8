"""A maximum crop for ESPnet's HuBERT batches (the paper's 250k samples, fairseq's max_sample_size).

ESPnet's ``HuBERTCollateFn`` crops every utterance of a training batch to the batch's shortest one
but has no upper limit, so a batch of long utterances costs memory the paper never spent. This
wrapper first crops each longer utterance to ``max_sample_size`` samples, at a random offset with
its labels (ESPnet's own crop, so audio and labels stay aligned as in the batch crop), then hands
the batch to ESPnet's collate. Validation batches are not cropped, as in ESPnet.
"""

from typing import Collection, Dict, List, Tuple

import numpy as np
import torch
from espnet2.train.collate_fn import HuBERTCollateFn, _crop_audio_label

Batch = Collection[Tuple[str, Dict[str, np.ndarray]]]


class MaxCropCollateFn:
    """Crop utterances to at most ``max_sample_size`` samples, then collate with ``collate``.

    Args:
        collate: ESPnet's HuBERT collate, as ``SSLTask.build_collate_fn`` makes it.
        max_sample_size: The longest training crop in samples (paper: 250000, 15.6 s at 16 kHz).
    """

    def __init__(self, collate: HuBERTCollateFn, max_sample_size: int):
        if isinstance(max_sample_size, bool) or not isinstance(max_sample_size, int):
            raise ValueError(
                f"collate_fn_conf max_sample_size={max_sample_size!r}: expected a number of samples"
            )
        window = int(collate.window_size * collate.sample_rate)
        if max_sample_size < window:
            raise ValueError(
                f"collate_fn_conf max_sample_size={max_sample_size}: shorter than one frame of the "
                f"front end ({window} samples)"
            )
        if collate.label_downsampling != 1:
            raise ValueError(
                "collate_fn_conf max_sample_size needs label_downsampling: 1 (labels at the "
                f"encoder's frame rate); got label_downsampling={collate.label_downsampling}"
            )
        self.collate = collate
        self.max_sample_size = max_sample_size

    def crop(self, sample: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
        """One utterance cropped to ``max_sample_size`` samples with its labels (if longer)."""
        speech = sample["speech"]
        if speech.shape[0] <= self.max_sample_size:
            return sample
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
        if self.collate.train and self.collate.crop_audio:
            data = [(utt, self.crop(sample)) for utt, sample in data]
        return self.collate(data)

"""The collate: labels checked per utterance, and the maximum training crop (at most max_sample_size
samples, labels aligned, validation untouched)."""

import argparse

import numpy as np
import pytest
import torch

from espnet_ils.data.audio import num_frames
from espnet_ils.train.tasks import ILSSSLTask

NUM_CLASSES = 2000  # utterance() labels frames by their index


def collate_fn(train: bool, token_list=None, **conf):
    args = argparse.Namespace(
        frontend_conf={},
        encoder_conf={},
        collect_stats=False,
        collate_fn_conf=conf,
        token_list=token_list or [str(i) for i in range(NUM_CLASSES)] + ["<unk>"],
    )
    return ILSSSLTask.build_collate_fn(args, train)


def utterance(num_samples: int):
    """Audio whose sample values are their own index, labels whose values are the frame index."""
    frames = num_frames(num_samples)
    return {"speech": np.arange(num_samples, dtype=np.float64), "text": np.arange(frames)}


@pytest.mark.parametrize("seed", range(5))
def test_long_utterances_are_cropped_with_their_labels(seed):
    torch.manual_seed(seed)  # ESPnet draws the offset with torch
    collate = collate_fn(True, max_sample_size=16000, label_downsampling=1, rand_crop=True)
    _, batch = collate([("a", utterance(40000)), ("b", utterance(56000))])
    assert batch["speech"].shape == (2, 16000)
    assert batch["text"].shape == (2, num_frames(16000))
    for speech, labels in zip(batch["speech"], batch["text"]):
        offset = int(speech[0])
        assert np.array_equal(speech.numpy(), np.arange(offset, offset + 16000))
        first_frame = max((offset - 400) // 320 + 1, 0)  # ESPnet's batch crop does the same
        assert np.array_equal(labels.numpy(), np.arange(first_frame, first_frame + 49))


def test_batch_shorter_than_the_maximum_is_cropped_to_its_shortest_utterance_only():
    collate = collate_fn(True, max_sample_size=250000, rand_crop=False)
    _, batch = collate([("a", utterance(20000)), ("b", utterance(30000))])
    assert batch["speech"].shape == (2, 20000)
    assert np.array_equal(batch["speech"][1].numpy(), np.arange(20000))


def test_validation_batches_are_not_cropped():
    collate = collate_fn(False, max_sample_size=16000)
    _, batch = collate([("a", utterance(40000)), ("b", utterance(20000))])
    assert batch["speech"].shape == (2, 40000)
    assert batch["speech_lengths"].tolist() == [40000, 20000]


def test_without_the_option_espnet_collate_is_used_unchanged():
    collate = collate_fn(True, rand_crop=False)
    _, batch = collate([("a", utterance(400000)), ("b", utterance(300000))])
    assert batch["speech"].shape == (2, 300000)


@pytest.mark.parametrize(
    "conf, message",
    [
        ({"max_sample_size": "250k"}, "max_sample_size='250k'"),
        ({"max_sample_size": 100}, "shorter than one frame"),
        ({"max_sample_size": 250000, "label_downsampling": 2}, "label_downsampling=2"),
        ({"label_length_tolerance": -1}, "label_length_tolerance=-1"),
    ],
)
def test_bad_values_name_the_key(conf, message):
    with pytest.raises(ValueError, match=message):
        collate_fn(True, **conf)


@pytest.mark.parametrize("train", [True, False])
def test_a_label_outside_the_token_list_names_the_utterance(train):
    collate = collate_fn(train, token_list=["0", "1", "2", "<unk>"])
    good = {"speech": np.zeros(16000), "text": np.full(num_frames(16000), 2)}
    bad = dict(good, text=good["text"].copy())
    bad["text"][7] = 3  # the id of <unk>: the label was not in the token list
    collate([("good", good)])
    with pytest.raises(ValueError, match=r"utterance bad: label id 3 at frame 7 .* 3 cluster ids"):
        collate([("good", good), ("bad", bad)])


@pytest.mark.parametrize("train", [True, False])
def test_a_label_count_off_by_more_than_the_tolerance_names_the_utterance(train):
    collate = collate_fn(train, label_length_tolerance=2)
    frames = num_frames(16000)  # 49
    for extra in (-2, 2):
        collate([("ok", {"speech": np.zeros(16000), "text": np.zeros(frames + extra, int)})])
    doubled = {"speech": np.zeros(16000), "text": np.zeros(2 * frames, int)}  # 100 Hz labels
    with pytest.raises(
        ValueError, match=r"utterance u100: 98 labels .* 49 frames .*\(tolerance 2\)"
    ):
        collate([("u100", doubled)])


def test_100_hz_labels_pass_with_label_downsampling_2():
    collate = collate_fn(True, label_downsampling=2)
    frames = num_frames(16000)
    _, batch = collate([("a", {"speech": np.zeros(16000), "text": np.zeros(2 * frames, int)})])
    assert batch["text"].shape == (1, frames)

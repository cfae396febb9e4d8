"""What we rely on in ESPnet 202511 beyond its public API, pinned: after an upgrade, each test fails
with a message naming the ESPnet function that changed and the module of ours that relies on it.

(``Trainer.run``'s checkpoint writes, which ``espnet_ils.train.checkpoints`` relies on, are pinned in
tests/test_checkpoints.py.)
"""

import inspect
import math

import numpy as np
import pytest
import torch
from espnet2.asr.frontend.cnn import CNNFrontend
from espnet2.asr.frontend.espnet_ssl import ESPnetSSLFrontend
from espnet2.ssl.utils.mask import Masking
from espnet2.tasks import asr, ssl
from espnet2.train.class_choices import ClassChoices
from espnet2.train.collate_fn import HuBERTCollateFn, _crop_audio_label
from torch import nn

from espnet_ils.converters import MASK_OPTIONS
from espnet_ils.train.tasks import SSL_FRONTEND_DROPPED

SHAPES = [(8, 10, 5), (8, 3, 2), (8, 2, 2)]


def changed(function: str, user: str, what: str) -> str:
    return f"ESPnet's {function} changed: {user} relies on {what}; adapt it to the new ESPnet"


def test_class_choices_look_classes_up_in_their_classes_dict():
    choices = ClassChoices("thing", dict(a=nn.Linear), type_check=nn.Module, default="a")
    choices.classes["b"] = nn.Identity
    message = changed(
        "espnet2.train.class_choices.ClassChoices",
        "espnet_ils.train.registration._add",
        "adding a class to .classes, and on .name and .base_type",
    )
    assert choices.get_class("b") is nn.Identity and "b" in choices.choices(), message
    assert (choices.name, choices.base_type) == ("thing", nn.Module), message


def test_task_modules_keep_their_choices_where_registration_adds_to_them():
    for task, names in [
        (ssl, ["frontend_choices", "preencoder_choices", "encoder_choices", "loss_choices"]),
        (asr, ["frontend_choices", "preencoder_choices", "encoder_choices"]),
    ]:
        missing = [
            name for name in names if not isinstance(getattr(task, name, None), ClassChoices)
        ]
        assert not missing, changed(
            task.__name__,
            "espnet_ils.train.registration.register_into",
            f"its module-level {missing}",
        )


@pytest.mark.parametrize("norm_mode", ["group_norm", "layer_norm"])
def test_conv_layer_block_is_conv_norm_gelu_with_the_frame_count_formula(norm_mode):
    frontend = CNNFrontend(norm_mode=norm_mode, conv_mode="standard", bias=False, shapes=SHAPES)
    message = changed(
        "espnet2.asr.frontend.cnn.ConvLayerBlock.forward",
        "espnet_ils.model.frontend.ILSCNNFrontend._extract (it runs the GroupNorm block itself)",
        "gelu(layer_norm(conv(x))) and length = floor((length - kernel_size) / stride) + 1, "
        "at least 0, with CNNFrontend.layers holding the blocks in order",
    )
    x = torch.randn(2, 1, 400)
    length = torch.tensor([400, 12])
    norms = [type(block.layer_norm) for block in frontend.layers]
    if norm_mode == "group_norm":  # the only block that ILSCNNFrontend runs itself
        assert norms[0] is nn.GroupNorm and set(norms[1:]) == {type(None)}, message
    for block in frontend.layers:
        expected = block.conv(x)
        if block.layer_norm is not None:
            expected = block.layer_norm(expected)
        expected = nn.functional.gelu(expected)
        expected_length = ((length - block.kernel_size) // block.stride + 1).clamp(min=0)
        x, length = block(x, length)
        torch.testing.assert_close(x, expected, msg=message)
        assert length.tolist() == expected_length.tolist(), message
    assert length.tolist() == [(400 - 30) // 20 + 1, 0], message  # receptive field 30, stride 20


def test_cnn_frontend_is_its_blocks_and_nothing_else_by_default():
    frontend = CNNFrontend(norm_mode="group_norm", conv_mode="standard", bias=False, shapes=SHAPES)
    wav = torch.randn(2, 800)
    x, length = wav.unsqueeze(1), torch.tensor([800, 800])
    for block in frontend.layers:
        x, length = block(x, length)
    feats, feats_length = frontend(wav, torch.tensor([800, 800]))
    message = changed(
        "espnet2.asr.frontend.cnn.CNNFrontend.forward",
        "espnet_ils.model.frontend.ILSCNNFrontend (it replaces forward)",
        "forward being the blocks in order, then (B, C, T) -> (B, T, C), when normalize_audio "
        "and normalize_output are off",
    )
    torch.testing.assert_close(feats, x.transpose(1, 2), msg=message)
    assert feats_length.tolist() == length.tolist(), message
    assert frontend.normalize_audio is False, message


def test_crop_audio_label_crops_audio_and_labels_alike():
    message = changed(
        "espnet2.train.collate_fn._crop_audio_label",
        "espnet_ils.train.collate.ILSCollateFn.crop",
        "its positional arguments (waveform, label, length, num_frames, rand_crop, window_size, "
        "window_shift, sample_rate) and the labels cropped with the audio at 400 / 320 samples",
    )
    assert list(inspect.signature(_crop_audio_label).parameters) == [
        "waveform",
        "label",
        "length",
        "num_frames",
        "rand_crop",
        "window_size",
        "window_shift",
        "sample_rate",
    ], message
    waveform, labels = np.arange(4000.0), np.arange(12)  # frame i starts at sample 320 i
    cropped, cropped_labels, length = _crop_audio_label(
        waveform, labels, 4000, 1000, False, 25, 20, 16
    )
    assert length == 1000 and np.array_equal(cropped, waveform[:1000]), message
    assert np.array_equal(cropped_labels, labels[:2]), message  # floor((1000 - 400) / 320) + 1
    torch.manual_seed(0)
    cropped, cropped_labels, _ = _crop_audio_label(waveform, labels, 4000, 1000, True, 25, 20, 16)
    offset = int(cropped[0])
    assert np.array_equal(cropped, waveform[offset : offset + 1000]), message
    first = max(math.floor((offset - 400) / 320) + 1, 0)
    assert np.array_equal(cropped_labels, labels[first : first + 2]), message


def test_hubert_collate_keeps_its_options_as_attributes():
    options = dict(
        label_downsampling=2,
        rand_crop=False,
        crop_audio=False,
        window_size=25,
        window_shift=20,
        sample_rate=16,
        train=False,
    )
    collate = HuBERTCollateFn(**options)
    kept = {name: getattr(collate, name, None) for name in options}
    assert kept == options, changed(
        "espnet2.train.collate_fn.HuBERTCollateFn.__init__",
        "espnet_ils.train.collate.ILSCollateFn",
        f"reading its options back as attributes of the same names {sorted(options)}",
    )


def test_masking_takes_the_options_the_converters_carry_over():
    options = [p for p in inspect.signature(Masking.__init__).parameters if p != "self"]
    assert options == ["encoder_embed_dim", *MASK_OPTIONS], changed(
        "espnet2.ssl.utils.mask.Masking.__init__",
        "espnet_ils.converters (MASK_OPTIONS, which fairseq's and torchaudio's names match)",
        f"the options {list(MASK_OPTIONS)}",
    )


def test_ssl_frontend_drops_only_the_losses_of_the_model_it_loads(ssl_dir):
    frontend = ESPnetSSLFrontend(frontend_conf={"path_or_url": str(ssl_dir / "model.pth")})
    saved = torch.load(ssl_dir / "model.pth", map_location="cpu", weights_only=True)
    kept = {key for key in saved if not key.startswith(SSL_FRONTEND_DROPPED)}
    assert kept != set(saved) and set(frontend.upstream.state_dict()) == kept, changed(
        "espnet2.asr.frontend.espnet_ssl.ESPnetSSLFrontend.__init__",
        "espnet_ils.train.tasks.check_ssl_frontend_keys",
        f"the SSL model at .upstream with every key but {SSL_FRONTEND_DROPPED!r}* (del model.losses)",
    )

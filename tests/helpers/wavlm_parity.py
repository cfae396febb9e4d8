"""Parity checks of the WavLM exports (transformers, s3prl) against our models.

A tensor matches when ``max|ours - theirs| <= 1e-5 * max|ours|`` over the valid frames (fp32,
eval mode). Our models are tiny ones of every layout with random weights and their norms moved
off their defaults (:func:`helpers.models.write_model`).
"""

from pathlib import Path
from typing import List, Tuple

import pytest
import torch
from torch import nn

from espnet_ils.data.labels import cluster_token_list
from espnet_ils.model.frontend import normalize_waveform
from espnet_ils.train.tasks import ILSASRTask, ILSSSLTask
from helpers.models import tiny_config, write_model
from helpers.shared_data import SHARED_DATA

TOLERANCE = 1e-5
REFERENCE = SHARED_DATA / "ils_reference"
needs_reference = pytest.mark.skipif(
    not REFERENCE.is_dir(),
    reason=f"ILS-SSL parity fixtures not found at {REFERENCE} (test data outside the repository)",
)
LETTERS = ["<blank>", "<unk>", "<space>", "A", "B", "C", "D", "E", "F", "<sos/eos>"]
LENGTHS = (16000, 9000)  # samples: 49 and 28 frames, a padded batch


def relative_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    return float((actual.detach() - expected.detach()).abs().max() / expected.abs().max())


def assert_match(errors: dict) -> None:
    bad = {name: f"{error:.2e}" for name, error in errors.items() if not error <= TOLERANCE}
    assert not bad, f"relative errors above {TOLERANCE}: {bad}"


def ils_parts(model: nn.Module) -> Tuple[nn.Module, nn.Module, nn.Module]:
    """Front end, pre-encoder and encoder of an SSL model or of a fine-tuned model's SSL model."""
    ssl = getattr(model.frontend, "upstream", model)
    return ssl.frontend, ssl.preencoder, ssl.encoder


@torch.no_grad()
def our_layers(model: nn.Module, wav: torch.Tensor) -> List[torch.Tensor]:
    """Layers 0..N of one utterance alone (``(T, D)`` each), as our encoder numbers them."""
    frontend, preencoder, encoder = ils_parts(model)
    feats, lengths = frontend(wav[None], torch.tensor([wav.numel()]))
    projected, _ = preencoder(feats, lengths)
    layers, _ = encoder.layer_outputs(projected, lengths)
    return [layer[0] for layer in layers]


def waveforms() -> List[torch.Tensor]:
    return [0.1 * torch.randn(n) for n in LENGTHS]


def padded_batch(wavs: List[torch.Tensor], normalize: bool) -> Tuple[torch.Tensor, torch.Tensor]:
    """``(B, N)`` zero-padded waveforms (normalised as our front end does, where it does) and
    the ``(B, N)`` attention mask."""
    lengths = torch.tensor([w.numel() for w in wavs])
    batch = nn.utils.rnn.pad_sequence(wavs, batch_first=True)
    mask = (torch.arange(batch.size(1))[None] < lengths[:, None]).long()
    return (normalize_waveform(batch, lengths) if normalize else batch), mask


def frames(samples: int) -> int:
    return (samples - 400) // 320 + 1


def ssl_model_dir(root: Path, norm_mode: str, pre_ln: bool, **encoder_conf) -> Path:
    config = tiny_config(norm_mode, pre_ln)
    config["encoder_conf"].update(encoder_conf)
    if pre_ln:  # LARGE: the top head's input norm becomes WavLM's encoder.layer_norm
        config["loss"][0]["conf"]["layer_norm_inputs"] = True
    write_model(ILSSSLTask, config, cluster_token_list(5), root)
    return root


def load(model_dir: Path):
    return ILSSSLTask.build_model_from_file(
        model_dir / "config.yaml", model_dir / "valid.loss.best.pth"
    )[0].eval()


def load_asr(weights: Path) -> nn.Module:
    return ILSASRTask.build_model_from_file(weights.parent / "config.yaml", weights)[0].eval()


@torch.no_grad()
def our_ctc_logits(model: nn.Module, wav: torch.Tensor) -> torch.Tensor:
    """``(T, V)`` CTC logits of one utterance alone, from the waveform as ESPnet reads it."""
    encoded, _ = model.encode(wav[None], torch.tensor([wav.numel()]))
    return model.ctc.ctc_lo(encoded)[0]


def asr_config(ssl_weights: Path, **changes) -> dict:
    """CTC fine-tuning of an SSL model as the recipe's configs do it (tiny); ``changes`` replace
    top-level keys, a dict value updating the dict that is there."""
    config = {
        "frontend": "espnet_ssl",
        "frontend_conf": {
            "frontend_conf": {"path_or_url": str(ssl_weights)},
            "layer": -1,
            "freeze_encoder_steps": 0,
            "masking_conf": {"mask_prob": 0.3, "mask_length": 2},
        },
        "normalize": None,
        "specaug": None,
        "encoder": "linear",
        "encoder_conf": {"output_size": 32, "input_layer": None, "normalize_before": False},
        "decoder": None,
        "model_conf": {"ctc_weight": 1.0},
        "token_type": "char",
    }
    for key, value in changes.items():
        config[key] = {**config.get(key, {}), **value} if isinstance(value, dict) else value
    return config


def write_large_ctc_model(root: Path) -> Path:
    """A LARGE-like fine-tuned CTC model (returns its weights): a pre-LN SSL model with the
    LayerNorm front and waveform normalisation, then the ASR linear encoder's LayerNorm
    (``normalize_before``) before the CTC head, which a pre-LN WavLM reads as its
    ``encoder.layer_norm``."""
    ssl = write_model(
        ILSSSLTask, tiny_config("layer_norm", pre_ln=True), cluster_token_list(5), root / "ssl"
    )
    config = asr_config(ssl, encoder_conf={"normalize_before": True})
    return write_model(ILSASRTask, config, LETTERS, root / "asr")

"""Hidden states of an ILS-SSL encoder for waveforms: any block output, batched, no masking.

Used for the k-means labels of the next iteration (the paper's BASE iteration 2 clusters block 6 of
the iteration-1 model) and for layer-wise analysis. Works with the models of
``espnet_ils.bin.ssl_train`` and the directories written by ``espnet_ils.bin.convert_unispeech``
(pretrained or fine-tuned), i.e. any ESPnet model with the ``ils_transformer`` encoder, whatever its
front end (the ``ils_cnn`` conv front, or log-mel ``default`` with a normalisation as the mini
configs use). Models with ESPnet's own encoders are refused: ``e_branchformer`` and ``conformer``
run their convolutions over the padding, so their block outputs depend on the batch.

Layers are numbered like the paper's supervised layers: layer k (1-based) is the output of
Transformer block k, as it is fed to the ILS heads before their own LayerNorm; layer 0 is the input
of block 1 (projected conv features plus the convolutional positional embedding, after the encoder
LayerNorm of post-LN models). Only the blocks up to the highest requested layer are run
(``ILSTransformerEncoder.layer_outputs``).

The ``ils_cnn`` front, ESPnet's log-mel front and its normalisations, and the encoder are
padding-invariant, so an utterance gives the same features alone or padded in a batch.
"""

import logging
from pathlib import Path
from typing import List, Mapping, Optional, Sequence, Tuple, Union

import humanfriendly
import numpy as np
import torch
import yaml
from espnet2.tasks.asr import ASRTask
from espnet2.tasks.ssl import encoder_choices as ssl_encoder_choices
from torch import nn
from torch.nn.utils.rnn import pad_sequence

from espnet_ils.data.audio import SAMPLE_RATE
from espnet_ils.model.encoder import ILSTransformerEncoder
from espnet_ils.train.tasks import ILSSSLTask

logger = logging.getLogger(__name__)

Waveform = Union[torch.Tensor, np.ndarray]


def length_sorted_batches(lengths: Mapping[str, int], batch_size: int) -> List[List[str]]:
    """Utterance ids grouped into batches of ``batch_size`` of similar length (less padding).

    Args:
        lengths: Utterance -> length (samples).
        batch_size: Utterances per batch, >= 1.

    Returns:
        The batches, shortest first; ties broken by utterance id.
    """
    if batch_size < 1:
        raise ValueError(f"--batch_size {batch_size}: must be >= 1")
    ordered = sorted(lengths, key=lambda key: (lengths[key], key))
    return [ordered[start : start + batch_size] for start in range(0, len(ordered), batch_size)]


def pad_waveforms(waveforms: Sequence[Waveform]) -> Tuple[torch.Tensor, torch.Tensor]:
    """1-D waveforms ``(N_i,)`` -> a zero-padded batch ``(B, max N_i)`` float32 and lengths ``(B,)``."""
    waves = [torch.as_tensor(wave, dtype=torch.float32) for wave in waveforms]
    if any(wave.ndim != 1 for wave in waves):
        raise ValueError(
            f"waveforms must be 1-D (samples); got shapes {[list(w.shape) for w in waves]}"
        )
    return pad_sequence(waves, batch_first=True), torch.tensor([wave.numel() for wave in waves])


def _config_name(encoder: nn.Module) -> str:
    """`` (encoder: NAME)`` for a class in ESPnet's SSL encoder choices, else ``""``."""
    for name, cls in ssl_encoder_choices.classes.items():
        if type(encoder) is cls:
            return f" (encoder: {name})"
    return ""


class LayerFeatureExtractor:
    """Block outputs of an ILS-SSL encoder, in eval mode and without masking.

    Args:
        frontend: The front end, waveforms to features at 50 Hz (``ils_cnn``, ``default``, ...).
        preencoder: The feature projection (``feature_projection``), or None.
        encoder: The Transformer encoder (``ils_transformer``).
        normalize: The model's feature normalisation (``utterance_mvn``, ...), or None.
        sample_rate: Sampling rate the model expects, in Hz (16000).
        device: Where to run, e.g. ``"cpu"`` or ``"cuda:0"``.
        source: The model's file or directory, named by errors (e.g. a layer beyond the depth).

    Example:
        >>> extractor = LayerFeatureExtractor.from_files(Path("exp/ssl_it1/valid.loss.best.pth"))
        >>> feats = extractor.extract([wav1, wav2], layer=6)  # [(T1, D), (T2, D)]
    """

    def __init__(
        self,
        frontend: nn.Module,
        preencoder: Optional[nn.Module],
        encoder: nn.Module,
        normalize: Optional[nn.Module] = None,
        sample_rate: int = SAMPLE_RATE,
        device: str = "cpu",
        source: Optional[Path] = None,
    ):
        if not isinstance(encoder, ILSTransformerEncoder):
            raise ValueError(
                f"encoder is {type(encoder).__name__}{_config_name(encoder)}: layer features need "
                "an ILS-SSL model (encoder ils_transformer), as trained by "
                "espnet_ils.bin.ssl_train or written by convert_unispeech. ESPnet's "
                "e_branchformer and conformer are refused: their convolutions run over the "
                "padding, so a block's output would depend on the batch. Take iteration-2 targets "
                "from an ils_transformer model (the recipe's iteration-1 configs are one); "
                "per-block cluster quality is not available for these encoders"
            )
        self.device = torch.device(device)
        self.front = (
            nn.ModuleList(  # waveform -> encoder input, in the model's order
                module for module in (frontend, normalize, preencoder) if module is not None
            )
            .to(self.device)
            .eval()
        )
        self.encoder = encoder.to(self.device).eval()
        self.sample_rate = sample_rate
        self.source = source

    @classmethod
    def from_files(
        cls, model_file: Path, config: Optional[Path] = None, device: str = "cpu"
    ) -> "LayerFeatureExtractor":
        """Load an ESPnet SSL model (``ssl_train``) or a converted model directory.

        Args:
            model_file: Weights, e.g. ``exp/<ssl>/valid.loss.best.pth`` or ``<outdir>/model.pth``.
            config: Its ``config.yaml``; default: next to ``model_file``.
            device: Where to run.

        Returns:
            The extractor.
        """
        config = config or model_file.parent / "config.yaml"
        with config.open(encoding="utf-8") as f:
            conf = yaml.safe_load(f)
        task = ILSSSLTask if "loss" in conf else ASRTask  # only SSL task configs have losses
        model, _ = task.build_model_from_file(config, model_file, device)
        fs = conf.get("frontend_conf", {}).get("fs", SAMPLE_RATE)
        sample_rate = humanfriendly.parse_size(fs) if isinstance(fs, str) else int(fs)
        return cls(
            model.frontend,
            model.preencoder,
            model.encoder,
            model.normalize,
            sample_rate,
            device,
            source=model_file,
        )

    @property
    def num_layers(self) -> int:
        """Number of Transformer blocks N; valid layers are ``0..N``."""
        return len(self.encoder.encoders)

    def check_layers(self, layers: Sequence[int]) -> List[int]:
        """Validate layer indices (0 = block-1 input, k = output of block k)."""
        layers = list(layers)
        if not layers or any(not 0 <= layer <= self.num_layers for layer in layers):
            model = f"model {self.source}: " if self.source is not None else ""
            raise ValueError(
                f"{model}layers {layers}: valid layers are 0 (input of block 1) to "
                f"{self.num_layers} (block outputs are 1-based)"
            )
        return layers

    @torch.inference_mode()
    def extract_batch(
        self, speech: torch.Tensor, speech_lengths: torch.Tensor, layers: Sequence[int]
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Hidden states of a padded batch.

        Args:
            speech: Waveforms ``(B, N)`` at ``sample_rate``, zero-padded.
            speech_lengths: Valid samples ``(B,)``.
            layers: Layers to return, ``0..num_layers``.

        Returns:
            ``(L, B, T, D)`` in the order of ``layers`` (frames at 50 Hz; padded frames hold
            arbitrary values) and the valid frames ``(B,)``.
        """
        layers = self.check_layers(layers)
        speech = speech.to(self.device)
        speech_lengths = speech_lengths.to(self.device)
        feats, lengths = speech, speech_lengths
        for module in self.front:
            feats, lengths = module(feats, lengths)
        states, lengths = self.encoder.layer_outputs(feats, lengths, num_blocks=max(layers))
        return torch.stack([states[layer] for layer in layers]), lengths  # (L, B, T, D)

    def extract_layers(
        self, waveforms: Sequence[Waveform], layers: Optional[Sequence[int]] = None
    ) -> List[torch.Tensor]:
        """Hidden states of several utterances, run as one padded batch.

        Args:
            waveforms: 1-D waveforms ``(N_i,)`` at ``sample_rate``, float in [-1, 1].
            layers: Layers to return; default all, ``0..num_layers``.

        Returns:
            Per utterance ``(L, T_i, D)`` on the CPU, float32, ``T_i = floor((N_i - 400) / 320) + 1``
            for the usual conv stack.
        """
        if layers is None:
            layers = range(self.num_layers + 1)
        states, frames = self.extract_batch(*pad_waveforms(waveforms), layers)
        states = states.float().cpu()
        return [states[:, index, :count] for index, count in enumerate(frames.tolist())]

    def extract(self, waveforms: Sequence[Waveform], layer: int) -> List[torch.Tensor]:
        """One layer of several utterances: per utterance ``(T_i, D)``; see :meth:`extract_layers`."""
        return [states[0] for states in self.extract_layers(waveforms, [layer])]

"""Front end of the frozen probes: ESPnet's ``ESPnetSSLFrontend`` with the SSL model frozen and in
eval mode, and a learned softmax-weighted sum of its block outputs (SUPERB's protocol).

``ESPnetSSLFrontend(multilayer_feature=True)`` already holds the weighted sum (its ``Featureizer``),
and ``freeze_param`` can stop the SSL model's gradients, but the ASR and classification models put
their whole module tree in training mode: the frozen SSL model would still apply dropout, layer drop
and feature masking while a probe trains. A probe measures what the pretrained layers hold, so here
the SSL model always runs as at inference, without autograd; only the layer weights (and the
downstream model) learn.
"""

from typing import Tuple

import torch
from espnet2.asr.frontend.espnet_ssl import ESPnetSSLFrontend
from typeguard import typechecked

PROBE_FRONTEND_NAME = "frozen_ssl"


class FrozenSSLFrontend(ESPnetSSLFrontend):
    """A frozen SSL model of ``espnet_ils.bin.ssl_train`` whose block outputs a probe weighs.

    The weighted sum is over the encoder's block outputs 1..N (ESPnet's SSL model passes those; the
    input of block 1 is not among them), with one weight per block, softmax-normalised.
    """

    @typechecked
    def __init__(self, frontend_conf: dict, fs: int = 16000):
        """
        Args:
            frontend_conf: ``{"path_or_url": <ssl exp>/valid.loss.best.pth}`` (its ``config.yaml``
                beside it), as for ESPnet's ``espnet_ssl`` front end in fine-tuning.
            fs: Sampling rate of the input (Hz); the SSL models take 16000.
        """
        if fs != 16000:
            raise ValueError(f"frontend_conf.fs={fs}: the SSL models take 16 kHz audio")
        super().__init__(
            fs=fs,
            frontend_conf=frontend_conf,
            multilayer_feature=True,
            freeze_encoder_steps=0,
            mask_feats=False,
        )
        self.upstream.requires_grad_(False)
        self.upstream.eval()

    def train(self, mode: bool = True) -> "FrozenSSLFrontend":
        super().train(mode)
        self.upstream.eval()  # the SSL model runs as at inference, whatever the probe does
        return self

    def reload_pretrained_parameters(self) -> None:
        """Restore the SSL weights after a config's ``init`` re-initialised every parameter."""
        super().reload_pretrained_parameters()
        self.upstream.eval()

    def forward(
        self, input: torch.Tensor, input_lengths: torch.Tensor
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """
        Args:
            input: Waveforms ``(B, S)`` at 16 kHz.
            input_lengths: Valid samples ``(B,)``.

        Returns:
            The weighted sum of the block outputs ``(B, T, D)`` at 50 Hz, and the valid frames
            ``(B,)``.
        """
        with torch.no_grad():
            _, layers, lengths = self.upstream.inference_encode(input, input_lengths, False)
        return self.featurizer(layers), lengths

    def layer_weights(self) -> torch.Tensor:
        """The softmax-normalised weight of each block ``(N,)``, block 1 first."""
        return torch.softmax(self.featurizer.weights.detach(), dim=-1)

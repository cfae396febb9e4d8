"""ESPnet's SSL task with build-time checks for the ILS loss and a maximum training crop.

Identical to ``espnet2.tasks.ssl.SSLTask`` (same flags, same model), but a model whose ILS loss does
not fit its token list or its encoder is refused before training starts, naming the option, and
``--collate_fn_conf max_sample_size=N`` caps the training crop (``espnet_ils.collate``).
"""

import argparse
from typing import Callable, List

from espnet2.ssl.espnet_model import ESPnetSSLModel
from espnet2.tasks.ssl import SSLTask

from espnet_ils.collate import MaxCropCollateFn
from espnet_ils.labels import UNK
from espnet_ils.loss import ILSLoss


def check_token_list(token_list: List[str], num_classes: int) -> None:
    """The SSL token list must be the ``num_classes`` cluster ids followed by ``<unk>``.

    ESPnet's tokenizer needs ``<unk>``; putting it last keeps token id == cluster id.
    """
    if len(token_list) != num_classes + 1 or token_list[-1] != UNK:
        raise ValueError(
            f"token_list has {len(token_list)} entries (last: {token_list[-1]!r}) but the ILS loss "
            f"has num_classes={num_classes}: expected {num_classes} cluster ids followed by "
            f"'{UNK}' ({num_classes + 1} lines). Set loss conf num_classes to the k-means size "
            "or pass the token list written with the labels."
        )


def check_ils_model(model: ESPnetSSLModel) -> None:
    """Check every ILS loss of ``model`` against its token list and its encoder depth."""
    num_blocks = len(getattr(model.encoder, "encoders", ()))
    for loss in model.losses:
        if not isinstance(loss, ILSLoss):
            continue
        check_token_list(list(model.token_list), loss.num_classes)
        if num_blocks and max(loss.layers) > num_blocks:
            raise ValueError(
                f"loss conf layers={list(loss.layers)}: block {max(loss.layers)} does not exist, "
                f"the encoder has num_blocks={num_blocks} (layers are 1-based)"
            )


class ILSSSLTask(SSLTask):
    """``SSLTask`` that validates ILS losses when the model is built."""

    @classmethod
    def build_model(cls, args: argparse.Namespace) -> ESPnetSSLModel:
        model = super().build_model(args)
        check_ils_model(model)
        return model

    @classmethod
    def build_collate_fn(cls, args: argparse.Namespace, train: bool) -> Callable:
        collate = super().build_collate_fn(args, train)
        max_sample_size = args.collate_fn_conf.get("max_sample_size")
        if max_sample_size is None:
            return collate
        return MaxCropCollateFn(collate, max_sample_size)

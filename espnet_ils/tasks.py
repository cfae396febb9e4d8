"""ESPnet's SSL task with build-time checks for the ILS loss, checked labels and a maximum crop.

Identical to ``espnet2.tasks.ssl.SSLTask`` (same flags, same model), but a model whose ILS loss does
not fit its token list or its encoder is refused before training starts, naming the option; every
batch's labels are checked per utterance, and ``--collate_fn_conf max_sample_size=N`` caps the
training crop (``espnet_ils.collate``).
"""

import argparse
from pathlib import Path
from typing import Callable, List, Union

from espnet2.ssl.espnet_model import ESPnetSSLModel
from espnet2.tasks.ssl import SSLTask

from espnet_ils.collate import ILSCollateFn
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
        return ILSCollateFn(
            collate,
            num_classes=len(_token_list(args.token_list)) - 1,  # the last token is <unk>
            max_sample_size=args.collate_fn_conf.get("max_sample_size"),
            label_length_tolerance=args.collate_fn_conf.get("label_length_tolerance", 1),
        )


def _token_list(token_list: Union[str, List[str]]) -> List[str]:
    """``--token_list`` as ESPnet accepts it: a list, or a file with one token per line."""
    if isinstance(token_list, str):
        return Path(token_list).read_text(encoding="utf-8").splitlines()
    return list(token_list)

"""ESPnet's SSL, ASR and classification tasks: build-time checks, checked labels, safe checkpoints.

``ILSSSLTask`` is ``espnet2.tasks.ssl.SSLTask`` (same flags, same model), but a model whose ILS
loss does not fit its token list or its encoder, or whose encoder asks for intermediate CTC, is
refused before training starts, naming the option; every batch's labels are checked per utterance,
and ``--collate_fn_conf max_sample_size=N`` caps the training crop (``espnet_ils.train.collate``).

``ILSASRTask`` is ``espnet2.tasks.asr.ASRTask``, but the SSL model that ``frontend: espnet_ssl``
(or the probes' ``frozen_ssl``) loads must match its checkpoint key for key; ``ILSCLSTask`` is
``espnet2.tasks.cls.CLSTask`` (the speaker-identification probe) with the same check.

All three train with ``espnet_ils.train.checkpoints.CrashSafeTrainer``: a kill at any moment loses at most the
current epoch.
"""

import argparse
from pathlib import Path
from typing import Callable, List, Union

import torch
from espnet2.asr.encoder.abs_encoder import AbsEncoder
from espnet2.asr.encoder.conformer_encoder import ConformerEncoder
from espnet2.asr.encoder.e_branchformer_encoder import EBranchformerEncoder
from espnet2.asr.espnet_model import ESPnetASRModel
from espnet2.asr.frontend.espnet_ssl import ESPnetSSLFrontend
from espnet2.cls.espnet_model import ESPnetClassificationModel
from espnet2.ssl.espnet_model import ESPnetSSLModel
from espnet2.tasks.asr import ASRTask
from espnet2.tasks.cls import CLSTask
from espnet2.tasks.ssl import SSLTask

from espnet_ils.data.labels import UNK
from espnet_ils.model.encoder import ILSTransformerEncoder
from espnet_ils.model.loss import ILSLoss
from espnet_ils.model.strict_loading import require_exact_keys
from espnet_ils.train.checkpoints import CrashSafeTrainer
from espnet_ils.train.collate import ILSCollateFn

# What ESPnetSSLFrontend deletes from the SSL model after loading it (espnet2/asr/frontend/
# espnet_ssl.py: ``del model.losses``); ESPnet 202511 has no ``ema`` util to delete.
SSL_FRONTEND_DROPPED = "losses."


def token_list_classes(args: argparse.Namespace) -> int:
    """The k-means clusters of the SSL token list: its ids ``0..C-1`` followed by ``<unk>``.

    ESPnet's tokenizer needs ``<unk>``; putting it last keeps token id == cluster id.

    Raises:
        ValueError: The token list does not end with ``<unk>`` (naming it).
    """
    tokens = _token_list(args.token_list)
    if not tokens or tokens[-1] != UNK:
        raise ValueError(
            f"{_token_list_name(args)} ends with {tokens[-1:]}: an SSL token list holds the "
            f"k-means cluster ids followed by '{UNK}' (espnet_ils.bin.write_token_list)"
        )
    return len(tokens) - 1


def with_num_classes(args: argparse.Namespace) -> List[dict]:
    """``args.loss`` with each ``ils`` loss's ``num_classes`` taken from the token list, the one
    source of the cluster count (as ESPnet's ASR task takes its vocabulary size from it).

    A ``num_classes`` the config states must agree with the token list.

    Raises:
        ValueError: A config's ``num_classes`` differs from the token list's clusters, naming both
            values and where each came from.
    """
    num_classes = token_list_classes(args)
    config = getattr(args, "config", None) or "the config"
    losses = []
    for loss in args.loss or []:
        conf = dict(loss.get("conf") or {})
        if loss.get("name") == "ils":
            stated = conf.setdefault("num_classes", num_classes)
            if stated != num_classes:
                raise ValueError(
                    f"loss conf num_classes={stated} (in {config}) but "
                    f"{_token_list_name(args)} holds {num_classes} cluster ids: the loss predicts "
                    "the token list's clusters. Leave num_classes out of the config to take it "
                    "from the token list, or write the token list with the k-means size"
                )
        losses.append({**loss, "conf": conf})
    return losses


def check_ils_model(model: ESPnetSSLModel, encoder_conf: dict) -> None:
    """Check every ILS loss of ``model`` against its encoder's depth and layer drop
    (``encoder_conf``, the config it was built from); its cluster count is the token list's
    (:func:`with_num_classes`)."""
    num_blocks = len(getattr(model.encoder, "encoders", ()))
    for loss in model.losses:
        if not isinstance(loss, ILSLoss):
            continue
        if num_blocks and max(loss.layers) > num_blocks:
            raise ValueError(
                f"loss conf layers={list(loss.layers)}: block {max(loss.layers)} does not exist, "
                f"the encoder has num_blocks={num_blocks} (layers are 1-based)"
            )
        check_layer_drop(model.encoder, encoder_conf.get("layer_drop_rate", 0.0))


# Why ESPnet's encoders cannot drop blocks under the ILS loss, whose head for layer k reads block
# k from the encoder's list of block outputs.
LAYER_DROP_FLAWS = {
    EBranchformerEncoder: "leaves dropped blocks out of the block outputs the ILS heads read, so "
    "the blocks above a dropped one move down and a head reads another block",
    ConformerEncoder: "accepts layer_drop_rate and ignores it (every block always runs)",
}


def check_layer_drop(encoder: AbsEncoder, layer_drop_rate: float) -> None:
    """Refuse layer drop in an encoder other than ``ils_transformer`` under the ILS loss.

    Only ``ILSTransformerEncoder`` keeps a dropped block in its list of block outputs (it passes
    its input through). The rate comes from the config: ESPnet's encoders keep it in different
    places (``ConformerEncoder`` only on a block container that it never calls).
    """
    if layer_drop_rate > 0 and not isinstance(encoder, ILSTransformerEncoder):
        name = type(encoder).__name__
        flaw = LAYER_DROP_FLAWS.get(type(encoder), "does not support it with the ils loss")
        raise ValueError(
            f"encoder_conf.layer_drop_rate={layer_drop_rate} with the ils loss: {name} {flaw}. "
            "Set encoder_conf.layer_drop_rate: 0, or use encoder: ils_transformer (a dropped "
            "block passes its input through and keeps its place)"
        )


def check_pretraining_encoder_conf(encoder_conf: dict) -> None:
    """Refuse intermediate CTC in a pretraining config, where it would do nothing or crash.

    ESPnet's SSL model asks the encoder for every block output (``return_all_hs``) instead of the
    intermediate CTC outputs, and only ESPnet's ASR model attaches the ``conditioning_layer`` that
    self-conditioning calls.
    """
    for option in ("interctc_layer_idx", "interctc_use_conditioning"):
        if encoder_conf.get(option):
            raise ValueError(
                f"encoder_conf.{option}={encoder_conf[option]!r} in a pretraining config: ESPnet's "
                "SSL model computes no intermediate CTC. Intermediate CTC belongs to fine-tuning "
                f"(an ASR config with model_conf.interctc_weight); remove {option} here."
            )


class ILSSSLTask(SSLTask):
    """``SSLTask`` that validates ILS losses when the model is built."""

    trainer = CrashSafeTrainer

    @classmethod
    def build_model(cls, args: argparse.Namespace) -> ESPnetSSLModel:
        check_pretraining_encoder_conf(args.encoder_conf)
        args.loss = with_num_classes(args)  # before ESPnet reads a token list file into a list
        model = super().build_model(args)
        check_ils_model(model, args.encoder_conf)
        return model

    @classmethod
    def build_collate_fn(cls, args: argparse.Namespace, train: bool) -> Callable:
        collate = super().build_collate_fn(args, train)
        return ILSCollateFn(
            collate,
            num_classes=token_list_classes(args),
            max_sample_size=args.collate_fn_conf.get("max_sample_size"),
            label_length_tolerance=args.collate_fn_conf.get("label_length_tolerance", 1),
        )


def check_ssl_frontend_keys(frontend: ESPnetSSLFrontend, path_or_url: str) -> None:
    """Check every key of the SSL model in ``frontend`` against its checkpoint; guard later loads.

    ``ESPnetSSLFrontend`` rebuilds the SSL model and loads ``path_or_url`` with ``strict=False``
    before we can hook it. Our front end, projection, encoder and loss check their own keys, but a
    renamed key elsewhere, such as the mask embedding ``util_modules.mask.mask_embedding``, would
    stay random. So the whole SSL model gets the exact-key check (for ASR checkpoints and
    ``--init_param`` too) and the checkpoint is loaded through it once more (the same values).

    Args:
        frontend: The built ``espnet_ssl`` front end.
        path_or_url: Its ``frontend_conf.path_or_url``: a ``.pt`` / ``.pth`` file.

    Raises:
        ValueError: ``path_or_url`` is not a ``.pt`` / ``.pth`` file (an ``espnet_model_zoo`` name).
        espnet_ils.model.strict_loading.StateDictKeyError: The keys differ; the message names them.
    """
    if not path_or_url.endswith((".pt", ".pth")):
        raise ValueError(
            f"frontend_conf.path_or_url={path_or_url!r}: the SSL model's keys can only be checked "
            "against a file; download it first (espnet_model_zoo_download --unpack true NAME) "
            "and pass its .pth"
        )
    upstream = frontend.upstream
    require_exact_keys(upstream)
    state = torch.load(path_or_url, map_location="cpu", mmap=True, weights_only=True)
    upstream.load_state_dict(
        {k: v for k, v in state.items() if not k.startswith(SSL_FRONTEND_DROPPED)}
    )


def check_frontend(model: torch.nn.Module, frontend_conf: dict) -> None:
    """The exact-key check of an ``espnet_ssl`` (or ``frozen_ssl``) front end's SSL model."""
    if isinstance(model.frontend, ESPnetSSLFrontend):
        check_ssl_frontend_keys(model.frontend, frontend_conf["frontend_conf"]["path_or_url"])


class ILSASRTask(ASRTask):
    """``ASRTask`` whose ``espnet_ssl`` front end loads its SSL model with exact keys."""

    trainer = CrashSafeTrainer

    @classmethod
    def build_model(cls, args: argparse.Namespace) -> ESPnetASRModel:
        model = super().build_model(args)
        check_frontend(model, args.frontend_conf)
        return model


class ILSCLSTask(CLSTask):
    """``CLSTask`` (the speaker-identification probe) with the same front-end check as
    :class:`ILSASRTask`."""

    trainer = CrashSafeTrainer

    @classmethod
    def build_model(cls, args: argparse.Namespace) -> ESPnetClassificationModel:
        model = super().build_model(args)
        check_frontend(model, args.frontend_conf)
        return model


def _token_list(token_list: Union[str, List[str]]) -> List[str]:
    """``--token_list`` as ESPnet accepts it: a list, or a file with one token per line."""
    if isinstance(token_list, str):
        return Path(token_list).read_text(encoding="utf-8").splitlines()
    return list(token_list)


def _token_list_name(args: argparse.Namespace) -> str:
    """The token list as an error names it: its file, or its length when given as a list."""
    if isinstance(args.token_list, str):
        return f"the token list {args.token_list}"
    return f"the token list ({len(args.token_list)} tokens)"

"""What of an ILS-SSL model a WavLM export reads, and what WavLM cannot express.

ILS-SSL's encoder is WavLM's with the gated relative position bias turned off, so the exports to
``transformers`` (:mod:`espnet_ils.export.transformers_wavlm`) and to s3prl's WavLM checkpoint
(:mod:`espnet_ils.export.s3prl_wavlm`) read the same parts of our models: the conv front end
``ils_cnn``, the ``feature_projection`` pre-encoder and the ``ils_transformer`` encoder, of a
pretrained SSL model, of a model fine-tuned through ESPnet's ``espnet_ssl`` front end, or of a
converted fairseq checkpoint. This module finds them (:func:`export_source`), refuses by name
what WavLM has no counterpart for (other encoders such as E-Branchformer and Conformer, the mini
configs' log-mel front end, feature normalisation, other pre-encoders, depthwise conv blocks,
self-conditioned intermediate CTC), and says which of our tensors an export leaves out and why
(:data:`DROPPED`, :data:`ENCODER_ONLY_DROPPED`).

A pre-LN (LARGE) WavLM applies ``encoder.layer_norm`` to its top block in both toolkits; ours has
no such norm, and the export gives it the LayerNorm that reads the top block in our model
(:attr:`ExportSource.top_norm`).
"""

import argparse
import importlib.metadata
import importlib.util
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import torch
import yaml
from espnet2.asr.encoder.linear_encoder import LinearEncoder
from espnet2.asr.espnet_model import ESPnetASRModel
from espnet2.asr.frontend.cnn import TransposedLayerNorm
from espnet2.asr.frontend.espnet_ssl import ESPnetSSLFrontend
from espnet2.ssl.espnet_model import ESPnetSSLModel
from torch import nn

from espnet_ils.converters import unispeech
from espnet_ils.model.encoder import ILSTransformerEncoder
from espnet_ils.model.frontend import ILSCNNFrontend
from espnet_ils.model.loss import ILSLoss
from espnet_ils.model.preencoder import FeatureProjection
from espnet_ils.train.tasks import ILSASRTask, ILSSSLTask

logger = logging.getLogger(__name__)

ESPNET_CONFIG = "config.yaml"
#: Weights of an ESPnet model directory (``convert_unispeech``, ``ssl_train``), unless named.
ESPNET_WEIGHTS = ("model.pth", "valid.loss.best.pth")
#: ESPnet's ``pack`` / ``unpack`` index of an unpacked model.
ESPNET_META = "meta.yaml"

#: The ASR model's ``linear`` encoder's LayerNorm, under our key (see :func:`canonical_state`).
ASR_NORM = "asr_encoder.after_norm"

#: Our keys that no WavLM tensor takes, with the reason (always, or for a given export).
DROPPED: Dict[str, str] = {
    r"losses\.\d+\..*": "ILS prediction heads and their input norms: pretraining only, WavLM has "
    "no heads (the top block's input norm of a pre-LN model is kept, as encoder.layer_norm)",
    r"(?:frontend\.)?global_step": "ESPnet's step counter",
}
ENCODER_ONLY_DROPPED: Dict[str, str] = {
    r"ctc\.ctc_lo\.(weight|bias)": "CTC head: an encoder export holds the encoder only",
    r"decoder\..*": "attention decoder: an encoder export holds the encoder only",
    ASR_NORM.replace(".", r"\.") + r"\.(weight|bias)": "the ASR encoder's LayerNorm after the SSL "
    "front end: an encoder export holds the SSL encoder only",
    r"frontend\.featurizer\.weights": "the espnet_ssl front end's weights of its weighted sum of "
    "blocks (multilayer_feature): an encoder export holds the SSL encoder only",
}


@dataclass
class ExportSource:
    """An ILS encoder model of ours, in the parts the export reads.

    Attributes:
        frontend: The conv front end.
        preencoder: The feature projection.
        encoder: The ILS Transformer encoder.
        state: Every tensor of the model under our key (:func:`canonical_state`).
        top_norm: Our key prefix of the LayerNorm that reads the top block, or None.
        fine_tuning_mask: The masking of a fine-tuned model (``MaskUtil``; None: it did not mask,
            or the model is a pretrained one).
        token_list: CTC tokens of an ASR model, else None.
        ctc_refusal: Why ``WavLMForCTC`` cannot express this model's CTC path (None: it can, or
            there is no CTC head).
        ctc_dropout: Dropout before the CTC head (``final_dropout``).
        description: What the model is, for logs.
    """

    frontend: ILSCNNFrontend
    preencoder: FeatureProjection
    encoder: ILSTransformerEncoder
    state: Dict[str, torch.Tensor]
    top_norm: Optional[str]
    fine_tuning_mask: Optional[nn.Module] = None
    token_list: Optional[List[str]] = None
    ctc_refusal: Optional[str] = None
    ctc_dropout: float = 0.0
    description: str = ""


def require_package(name: str) -> None:
    """Stop with a clear error when the toolkit an export writes for is not installed.

    Args:
        name: Its import name and distribution (``transformers``, ``s3prl``).

    Raises:
        ValueError: ``name`` is not installed, naming the version the tests check the export
            against (setup.py's test extra, read from this package's metadata).
    """
    if importlib.util.find_spec(name) is not None:
        return
    try:
        requirements = importlib.metadata.requires("espnet_ils") or []
    except importlib.metadata.PackageNotFoundError:  # the package run from a source tree
        requirements = []
    pinned = [r.split(";")[0].strip() for r in requirements if r.startswith(f"{name}==")]
    raise ValueError(
        f"{name} is not installed: pip install {pinned[0] if pinned else name} (the version the "
        "tests check the export with; make install-test installs it)"
    )


def listing(items: List[str]) -> str:
    return "\n  " + "\n  ".join(items)


def refuse(what: str, why: str) -> ValueError:
    return ValueError(f"{what}: WavLM cannot express it ({why})")


def check_frontend(frontend: nn.Module, normalize: Optional[nn.Module]) -> str:
    """Check the front end against WavLM's feature encoder.

    Args:
        frontend: The SSL model's front end.
        normalize: The SSL model's feature normalisation (must be None).

    Returns:
        ``feat_extract_norm``: ``"group"`` (GroupNorm in block 0 only) or ``"layer"``.

    Raises:
        ValueError: Another front end (e.g. the mini configs' log-mel ``frontend: default``),
            depthwise conv blocks, other norms, or a feature normalisation.
    """
    if not isinstance(frontend, ILSCNNFrontend):
        raise refuse(
            f"front end {type(frontend).__name__}",
            "its feature encoder is the waveform conv stack of ils_cnn only; the mini configs' "
            "log-mel front (frontend: default) and other front ends have no counterpart",
        )
    if normalize is not None:
        raise refuse(
            f"feature normalisation {type(normalize).__name__} (normalize:)",
            "WavLM feeds the conv features to its projection as they are",
        )
    blocks = list(frontend.layers)
    for index, block in enumerate(blocks):
        if not isinstance(block.conv, nn.Conv1d) or block.conv.groups != 1:
            raise refuse(
                f"frontend_conf.conv_mode of conv block {index} (depthwise)",
                "its conv blocks are standard convolutions",
            )
    norms = [block.layer_norm for block in blocks]
    first = norms[0]
    if (
        isinstance(first, nn.GroupNorm)
        and first.num_groups == first.num_channels
        and all(norm is None for norm in norms[1:])
    ):
        return "group"
    if all(isinstance(norm, TransposedLayerNorm) for norm in norms):
        return "layer"
    raise refuse(
        f"conv block norms {[type(n).__name__ for n in norms]}",
        "feat_extract_norm is per-channel GroupNorm in block 0 (group_norm) or LayerNorm in "
        "every block (layer_norm)",
    )


def check_encoder(encoder: nn.Module, preencoder: Optional[nn.Module]) -> None:
    """Check the pre-encoder and encoder against WavLM's projection and Transformer.

    Raises:
        ValueError: Another pre-encoder or encoder (E-Branchformer, Conformer, ...), or
            self-conditioned intermediate CTC.
    """
    if not isinstance(preencoder, FeatureProjection):
        raise refuse(
            f"pre-encoder {type(preencoder).__name__}",
            "its feature projection is LayerNorm + Linear (preencoder: feature_projection)",
        )
    if not isinstance(encoder, ILSTransformerEncoder):
        raise refuse(
            f"encoder {type(encoder).__name__}",
            "WavLM's encoder is the Transformer of encoder: ils_transformer; E-Branchformer, "
            "Conformer and other encoders have no counterpart",
        )
    if encoder.interctc_layer_idx and encoder.interctc_use_conditioning:
        raise refuse(
            "encoder_conf.interctc_use_conditioning",
            "self-conditioned intermediate CTC adds CTC posteriors back into the blocks",
        )


def top_input_norm(ssl_model: ESPnetSSLModel, num_blocks: int) -> Optional[str]:
    """Our key prefix of the ILS head input norm that reads the top block, or None.

    Args:
        ssl_model: A pretrained model (with its losses).
        num_blocks: Blocks of its encoder.
    """
    for loss_index, loss in enumerate(getattr(ssl_model, "losses", None) or []):
        if isinstance(loss, ILSLoss) and num_blocks in loss.layers:
            index = list(loss.layers).index(num_blocks)
            if isinstance(loss.input_norms[index], nn.LayerNorm):
                return f"losses.{loss_index}.input_norms.{index}"
    return None


def canonical_state(model: nn.Module) -> Dict[str, torch.Tensor]:
    """Every tensor of an ESPnet SSL or ASR model under our canonical keys.

    The SSL model's keys (``frontend.``, ``preencoder.``, ``encoder.``, ``util_modules.``,
    ``losses.``) are kept. An ASR model fine-tuned through ``espnet_ssl`` holds that model under
    ``frontend.upstream.``, which is stripped; its ``linear`` encoder's LayerNorm becomes
    :data:`ASR_NORM`. A converted fine-tuned model (``ils_cnn``, ``feature_projection`` and
    ``ils_transformer`` in the ASR model itself) keeps its keys. ``ctc.`` stays.
    """
    state = {}
    nested = isinstance(model, ESPnetASRModel) and isinstance(model.frontend, ESPnetSSLFrontend)
    for key, value in model.state_dict().items():
        if nested and key.startswith("frontend.upstream."):
            key = key[len("frontend.upstream.") :]
        elif nested and key.startswith("encoder.after_norm."):
            key = ASR_NORM + key[len("encoder.after_norm") :]
        state[key] = value
    return state


@dataclass(frozen=True)
class _Parts:
    """The SSL modules inside an ASR model and what sits between them and the CTC head."""

    frontend: nn.Module
    normalize: Optional[nn.Module]
    preencoder: Optional[nn.Module]
    encoder: nn.Module
    mask: Optional[nn.Module]
    asr_norm: bool
    refusal: Optional[str]


def _asr_parts(model: ESPnetASRModel) -> _Parts:
    """The SSL modules of a fine-tuned model: inside its ``espnet_ssl`` front end (our recipe), or
    in the ASR model itself (a converted fairseq ``hubert_ctc``)."""
    if not isinstance(model.frontend, ESPnetSSLFrontend):
        if model.postencoder is not None:
            raise refuse(f"postencoder {type(model.postencoder).__name__}", "no counterpart")
        return _Parts(
            model.frontend, model.normalize, model.preencoder, model.encoder, None, False, None
        )
    frontend, ssl = model.frontend, model.frontend.upstream
    for name in ("normalize", "preencoder", "postencoder"):  # between the SSL model and CTC
        module = getattr(model, name)
        if module is not None:
            raise refuse(f"the ASR model's {name} {type(module).__name__}", "no counterpart")
    if not isinstance(model.encoder, LinearEncoder) or model.encoder.embed is not None:
        raise refuse(
            f"the ASR encoder {type(model.encoder).__name__} after the espnet_ssl front end",
            "the CTC head must read the SSL encoder directly (encoder: linear, input_layer: "
            "null, output_size the SSL width)",
        )
    refusal = None
    num_blocks = len(getattr(ssl.encoder, "encoders", []))
    if frontend.multilayer_feature:
        refusal = "frontend_conf.multilayer_feature: the CTC head reads a weighted sum of blocks"
    elif frontend.layer not in (-1, num_blocks - 1):
        refusal = (
            f"frontend_conf.layer {frontend.layer}: the CTC head reads block {frontend.layer + 1} "
            f"of {num_blocks}"
        )
    mask = ssl.util_modules["mask"] if frontend.mask_feats and "mask" in ssl.util_modules else None
    return _Parts(
        ssl.frontend,
        ssl.normalize,
        ssl.preencoder,
        ssl.encoder,
        mask,
        model.encoder.normalize_before,
        refusal,
    )


def _asr_source(model: ESPnetASRModel, token_type: str) -> ExportSource:
    """The parts of a fine-tuned CTC model; see :class:`ExportSource`."""
    parts = _asr_parts(model)
    check_frontend(parts.frontend, parts.normalize)
    check_encoder(parts.encoder, parts.preencoder)
    pre_ln = parts.encoder.normalize_before
    refusal = parts.refusal
    if refusal is None and (model.decoder is not None or model.ctc_weight < 1.0):
        refusal = f"decoder {type(model.decoder).__name__}, ctc_weight {model.ctc_weight}"
    if refusal is None and token_type != "char":
        refusal = f"token_type {token_type!r}: Wav2Vec2CTCTokenizer joins characters"
    if refusal is None and parts.asr_norm and not pre_ln:
        refusal = "the ASR linear encoder's normalize_before on a post-LN model"
    if refusal is None and pre_ln and not parts.asr_norm:
        refusal = (
            "the CTC head reads the raw top block of a pre-LN model, and WavLMForCTC normalises "
            "it with encoder.layer_norm first"
        )
    return ExportSource(
        frontend=parts.frontend,
        preencoder=parts.preencoder,
        encoder=parts.encoder,
        state=canonical_state(model),
        top_norm=ASR_NORM if parts.asr_norm and pre_ln else None,
        fine_tuning_mask=parts.mask,
        token_list=list(model.token_list),
        ctc_refusal=refusal,
        ctc_dropout=float(model.ctc.dropout_rate),
        description="fine-tuned CTC model",
    )


def _ssl_source(model: ESPnetSSLModel) -> ExportSource:
    """The parts of a pretrained SSL model; see :class:`ExportSource`."""
    check_frontend(model.frontend, model.normalize)
    check_encoder(model.encoder, model.preencoder)
    encoder = model.encoder
    top = top_input_norm(model, len(encoder.encoders)) if encoder.normalize_before else None
    return ExportSource(
        frontend=model.frontend,
        preencoder=model.preencoder,
        encoder=encoder,
        state=canonical_state(model),
        top_norm=top,
        description="pretrained SSL model",
    )


def export_source(model: nn.Module, token_type: Optional[str] = None) -> ExportSource:
    """What the export reads from an ESPnet SSL model or fine-tuned ASR model.

    Args:
        model: ``ESPnetSSLModel`` (``ILSSSLTask``) or ``ESPnetASRModel``.
        token_type: The ASR model's ``token_type`` (only char token lists become a tokenizer).

    Raises:
        ValueError: Another model, or parts WavLM cannot express, naming them.
    """
    if isinstance(model, ESPnetSSLModel):
        return _ssl_source(model)
    if isinstance(model, ESPnetASRModel):
        return _asr_source(model, token_type or "")
    raise ValueError(
        f"{type(model).__name__}: only ESPnet SSL models and fine-tuned ASR models export"
    )


def locate_espnet_model(
    model_dir: Optional[Path], config: Optional[Path], model_file: Optional[Path]
) -> Tuple[Path, Path]:
    """The ``config.yaml`` and weights of an ESPnet model.

    Args:
        model_dir: An experiment or converted model directory (``config.yaml`` and one of
            :data:`ESPNET_WEIGHTS`), or an unpacked ESPnet model (``meta.yaml``); None when both
            files are given.
        config: Overrides the directory's config.
        model_file: Overrides the directory's weights.

    Raises:
        ValueError: A file is missing or the weights are ambiguous, naming the directory.
    """
    meta: Dict[str, Any] = {}
    if model_dir is not None and (model_dir / ESPNET_META).is_file():
        meta = yaml.safe_load((model_dir / ESPNET_META).read_text(encoding="utf-8")) or {}

    def from_meta(section: str, suffix: str) -> Optional[Path]:
        found = [v for k, v in (meta.get(section) or {}).items() if k.endswith(suffix)]
        return model_dir / found[0] if len(found) == 1 else None

    if config is None and model_dir is not None:
        config = from_meta("yaml_files", "_train_config") or model_dir / ESPNET_CONFIG
    if model_file is None and model_dir is not None:
        model_file = from_meta("files", "_model_file")
        if model_file is None:
            present = [model_dir / n for n in ESPNET_WEIGHTS if (model_dir / n).is_file()]
            if len(present) != 1:
                raise ValueError(
                    f"--model_dir {model_dir}: holds {[p.name for p in present]} of "
                    f"{list(ESPNET_WEIGHTS)}; pass the weights with --model_file"
                )
            model_file = present[0]
    for option, path in (("--config", config), ("--model_file", model_file)):
        if path is None or not path.is_file():
            raise ValueError(f"{option} {path}: no such file (give --model_dir or both files)")
    return config, model_file


def load_model(
    model_dir: Optional[Path] = None,
    config: Optional[Path] = None,
    model_file: Optional[Path] = None,
    checkpoint: Optional[Path] = None,
    dictionary: Optional[Path] = None,
) -> Tuple[nn.Module, Optional[str]]:
    """Build the model to export, in eval mode on the CPU.

    Args:
        model_dir: ESPnet model directory (see :func:`locate_espnet_model`).
        config: ESPnet ``config.yaml`` (``ILSSSLTask`` or ASR task).
        model_file: ESPnet weights.
        checkpoint: Instead of the above, an original ILS-SSL / HuBERT fairseq checkpoint,
            converted in memory by :mod:`espnet_ils.converters.unispeech`.
        dictionary: The letter dictionary of a fine-tuned fairseq checkpoint.

    Returns:
        The model and its ``token_type`` (None for SSL models).
    """
    if checkpoint is not None:
        if model_dir is not None or config is not None or model_file is not None:
            raise ValueError("--checkpoint (fairseq) excludes --model_dir, --config, --model_file")
        contents = unispeech.read_checkpoint(checkpoint)
        dictionary = dictionary or unispeech.default_dictionary(checkpoint, contents)
        task, conf, tokens, mapped = unispeech.prepare(contents, dictionary)
        model, args = unispeech.build_converted_model(task, conf, tokens, mapped)
    else:
        config, model_file = locate_espnet_model(model_dir, config, model_file)
        conf = yaml.safe_load(config.read_text(encoding="utf-8")) or {}
        if "loss" in conf:
            task = ILSSSLTask
        elif "ctc_conf" in conf:
            task = ILSASRTask
        else:
            raise ValueError(f"{config}: neither an SSL (loss:) nor an ASR (ctc_conf:) config")
        model, args = task.build_model_from_file(config, model_file, device="cpu")
    return model.eval(), getattr(args, "token_type", None)


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """The command-line options of :func:`load_model`'s model (``--dict`` is its ``dictionary``)."""
    parser.add_argument(
        "--model_dir",
        type=Path,
        default=None,
        help="ESPnet model: an experiment or converted directory (config.yaml and model.pth or "
        "valid.loss.best.pth) or an unpacked ESPnet model (meta.yaml)",
    )
    parser.add_argument("--config", type=Path, default=None, help="config.yaml to use instead")
    parser.add_argument("--model_file", type=Path, default=None, help="weights to use instead")
    parser.add_argument(
        "--checkpoint",
        type=Path,
        default=None,
        help="instead of an ESPnet model: a fairseq ILS-SSL / HuBERT .pt (convert_unispeech)",
    )
    parser.add_argument(
        "--dict",
        type=Path,
        default=None,
        help="letter dictionary of a fine-tuned --checkpoint; None: dict.<label>.txt beside it",
    )


def model_arguments(args: argparse.Namespace) -> Dict[str, Optional[Path]]:
    """:func:`load_model`'s keyword arguments from the options of :func:`add_model_arguments`."""
    return {
        "model_dir": args.model_dir,
        "config": args.config,
        "model_file": args.model_file,
        "checkpoint": args.checkpoint,
        "dictionary": args.dict,
    }

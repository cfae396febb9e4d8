"""Import torchaudio's HuBERT / wav2vec 2.0 weights (post-LN, e.g. BASE) into the ILS-SSL modules.

torchaudio's ``Wav2Vec2Model`` (``hubert_base``, ``wav2vec2_base``, ...) and ``HuBERTPretrainModel``
(``hubert_pretrain_base``) are the network of our front end, preencoder and encoder with the
relative position bias off. With ``relative_position_bias: false`` and the loss on the top block
only (the paper's K = {N}) the ILS-SSL model is HuBERT, so these weights convert without loss.

The converted weights come grouped by the module that takes them. Each group is the complete
``state_dict`` of one module and loads with ``load_state_dict(strict=True)``:

=============  ================================================  =======================================
group          our module                                        torchaudio source
=============  ================================================  =======================================
``frontend``   :class:`espnet_ils.model.frontend.ILSCNNFrontend`       ``feature_extractor``
``preencoder`` :class:`espnet_ils.model.preencoder.FeatureProjection`  ``encoder.feature_projection``
``encoder``    :class:`espnet_ils.model.encoder.ILSTransformerEncoder` ``encoder.transformer``
``mask``       ESPnet's ``Masking`` util (``util: mask``)        ``mask_generator`` (pretraining only)
``loss``       :class:`espnet_ils.model.loss.ILSLoss`, ``layers: [N]`` ``logit_generator`` (pretraining only)
``ctc``        ESPnet's ``CTC``                                  ``aux`` (fine-tuned models only)
=============  ================================================  =======================================

In ``ESPnetSSLModel`` the groups sit at ``frontend.``, ``preencoder.``, ``encoder.``,
``util_modules.mask.`` and ``losses.0.``; in ``ESPnetASRModel`` the CTC head sits at ``ctc.``.

Pre-LN models (``hubert_large``, ``encoder_layer_norm_first=True``) are not supported: torchaudio
applies its encoder LayerNorm after the last block there, and our pre-LN encoder has none (ILS-SSL
feeds the raw residual stream to its heads). WavLM models have other keys and are refused.

Example:
    >>> model = torchaudio.models.hubert_pretrain_base()
    >>> modules = build_from_torchaudio(model)  # {"frontend": ILSCNNFrontend, ...}
    >>> # or, into modules built from a YAML config:
    >>> load_torchaudio_hubert(model.state_dict(), {"frontend": frontend, "encoder": encoder, ...})
"""

import re
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import torch
from espnet2.asr.ctc import CTC
from espnet2.ssl.utils.mask import Masking
from torch import nn
from torchaudio.models import HuBERTPretrainModel, Wav2Vec2Model
from torchaudio.models.wav2vec2 import components

from espnet_ils.converters import MASK_OPTIONS
from espnet_ils.model.encoder import ILSTransformerEncoder
from espnet_ils.model.frontend import ILSCNNFrontend
from espnet_ils.model.loss import ILSLoss
from espnet_ils.model.preencoder import FeatureProjection

FRONTEND = "frontend"
PREENCODER = "preencoder"
ENCODER = "encoder"
MASK = "mask"
LOSS = "loss"
CTC_HEAD = "ctc"

#: Class built for each group by :func:`build_from_torchaudio`.
MODULE_CLASSES: Dict[str, type] = {
    FRONTEND: ILSCNNFrontend,
    PREENCODER: FeatureProjection,
    ENCODER: ILSTransformerEncoder,
    MASK: Masking,
    LOSS: ILSLoss,
    CTC_HEAD: CTC,
}

#: ``HuBERTPretrainModel`` keeps its ``Wav2Vec2Model`` under this name.
PRETRAIN_PREFIX = "wav2vec2."

_BLOCK = r"encoder\.transformer\.layers\.(\d+)\."

#: One entry per key family: (torchaudio key, after ``wav2vec2.`` is stripped; group; our key).
KEY_MAP: Tuple[Tuple[str, str, str], ...] = (
    # Conv feature extractor
    # feature_extractor.conv_layers.X.conv.{weight,bias} -> layers.X.conv.{weight,bias}
    (r"feature_extractor\.conv_layers\.(\d+)\.conv\.(weight|bias)", FRONTEND, r"layers.\1.conv.\2"),
    # GroupNorm of block 0 (group_norm mode) or LayerNorm of every block (layer_norm mode):
    # feature_extractor.conv_layers.X.layer_norm.{weight,bias} -> layers.X.layer_norm.{weight,bias}
    (
        r"feature_extractor\.conv_layers\.(\d+)\.layer_norm\.(weight|bias)",
        FRONTEND,
        r"layers.\1.layer_norm.\2",
    ),
    # Feature projection
    # encoder.feature_projection.layer_norm.{weight,bias} -> layer_norm.{weight,bias}
    (r"encoder\.feature_projection\.layer_norm\.(weight|bias)", PREENCODER, r"layer_norm.\1"),
    # encoder.feature_projection.projection.{weight,bias} -> linear.{weight,bias}
    (r"encoder\.feature_projection\.projection\.(weight|bias)", PREENCODER, r"linear.\1"),
    # Convolutional positional embedding, weight norm over dim 2
    # encoder.transformer.pos_conv_embed.conv.bias -> pos_conv.conv.bias
    (r"encoder\.transformer\.pos_conv_embed\.conv\.bias", ENCODER, "pos_conv.conv.bias"),
    # Magnitude g (1, 1, K), old-style (torch.nn.utils.weight_norm) or parametrized:
    # encoder.transformer.pos_conv_embed.conv.{weight_g,parametrizations.weight.original0}
    #   -> pos_conv.conv.parametrizations.weight.original0
    (
        r"encoder\.transformer\.pos_conv_embed\.conv\.(weight_g|parametrizations\.weight\.original0)",
        ENCODER,
        "pos_conv.conv.parametrizations.weight.original0",
    ),
    # Direction v (D, D / groups, K):
    # encoder.transformer.pos_conv_embed.conv.{weight_v,parametrizations.weight.original1}
    #   -> pos_conv.conv.parametrizations.weight.original1
    (
        r"encoder\.transformer\.pos_conv_embed\.conv\.(weight_v|parametrizations\.weight\.original1)",
        ENCODER,
        "pos_conv.conv.parametrizations.weight.original1",
    ),
    # LayerNorm before block 1 (post-LN):
    # encoder.transformer.layer_norm.{weight,bias} -> layer_norm.{weight,bias}
    (r"encoder\.transformer\.layer_norm\.(weight|bias)", ENCODER, r"layer_norm.\1"),
    # Transformer blocks, 0-based X in both
    # encoder.transformer.layers.X.attention.{q,k,v,out}_proj.{weight,bias}
    #   -> encoders.X.self_attn.{q,k,v,out}_proj.{weight,bias}
    (
        _BLOCK + r"attention\.((?:q|k|v|out)_proj\.(?:weight|bias))",
        ENCODER,
        r"encoders.\1.self_attn.\2",
    ),
    # encoder.transformer.layers.X.layer_norm.* -> encoders.X.self_attn_layer_norm.*
    (_BLOCK + r"layer_norm\.(weight|bias)", ENCODER, r"encoders.\1.self_attn_layer_norm.\2"),
    # encoder.transformer.layers.X.feed_forward.intermediate_dense.* -> encoders.X.fc1.*
    (_BLOCK + r"feed_forward\.intermediate_dense\.(weight|bias)", ENCODER, r"encoders.\1.fc1.\2"),
    # encoder.transformer.layers.X.feed_forward.output_dense.* -> encoders.X.fc2.*
    (_BLOCK + r"feed_forward\.output_dense\.(weight|bias)", ENCODER, r"encoders.\1.fc2.\2"),
    # encoder.transformer.layers.X.final_layer_norm.* -> encoders.X.final_layer_norm.*
    (_BLOCK + r"final_layer_norm\.(weight|bias)", ENCODER, r"encoders.\1.final_layer_norm.\2"),
    # Pretraining (HuBERTPretrainModel): mask embedding (D,) and the top block's prediction head
    # mask_generator.mask_embedding -> mask_embedding
    (r"mask_generator\.mask_embedding", MASK, "mask_embedding"),
    # logit_generator.final_proj.{weight,bias} (final_dim, D) -> heads.0.proj.{weight,bias}
    (r"logit_generator\.final_proj\.(weight|bias)", LOSS, r"heads.0.proj.\1"),
    # logit_generator.label_embeddings (C, final_dim) -> heads.0.codewords
    (r"logit_generator\.label_embeddings", LOSS, "heads.0.codewords"),
    # Fine-tuned Wav2Vec2Model: aux.{weight,bias} (V, D) -> ctc_lo.{weight,bias}
    (r"aux\.(weight|bias)", CTC_HEAD, r"ctc_lo.\1"),
)

_COMPILED_KEY_MAP = tuple((re.compile(pattern), group, new) for pattern, group, new in KEY_MAP)

StateDicts = Dict[str, Dict[str, torch.Tensor]]


def _map_key(key: str) -> Optional[Tuple[str, str]]:
    """torchaudio key -> (group, our key), or None when no key family matches."""
    if key.startswith(PRETRAIN_PREFIX):
        key = key[len(PRETRAIN_PREFIX) :]
    for pattern, group, new in _COMPILED_KEY_MAP:
        match = pattern.fullmatch(key)
        if match:
            return group, match.expand(new)
    return None


def _listing(items: List[str]) -> str:
    return "\n  " + "\n  ".join(items)


def convert_torchaudio_hubert(state_dict: Mapping[str, torch.Tensor]) -> StateDicts:
    """Rename a torchaudio HuBERT / wav2vec 2.0 state dict into our modules' state dicts.

    Only renames (tensors are shared, not copied); :func:`check_converted` compares the result with
    the modules it is meant for.

    Args:
        state_dict: ``Wav2Vec2Model.state_dict()`` or ``HuBERTPretrainModel.state_dict()``.

    Returns:
        ``{group: state_dict}`` for the groups present (see the module docstring): ``frontend``,
        ``preencoder`` and ``encoder`` always; ``mask`` (``mask_embedding`` ``(D,)``) and ``loss``
        for pretraining models; ``ctc`` for fine-tuned ones.

    Raises:
        ValueError: A key matches no key family (naming every such key), or two keys map to one.
    """
    converted: StateDicts = {}
    sources: Dict[Tuple[str, str], str] = {}
    unknown, duplicated = [], []
    for key, value in state_dict.items():
        target = _map_key(key)
        if target is None:
            unknown.append(key)
        elif target in sources:
            duplicated.append(f"{sources[target]} and {key} -> {target[0]}: {target[1]}")
        else:
            sources[target] = key
            converted.setdefault(target[0], {})[target[1]] = value
    if unknown:
        raise ValueError(
            "Unknown torchaudio keys (not in the post-LN HuBERT / wav2vec 2.0 layout; WavLM and "
            f"other variants are not supported):{_listing(sorted(unknown))}"
        )
    if duplicated:
        raise ValueError(
            f"Several torchaudio keys map to one parameter:{_listing(sorted(duplicated))}"
        )
    return converted


def check_converted(converted: StateDicts, modules: Mapping[str, nn.Module]) -> None:
    """Check that converted weights fill ``modules`` exactly: every key, every shape.

    Args:
        converted: Output of :func:`convert_torchaudio_hubert`.
        modules: Our module for every converted group, e.g. ``{"frontend": frontend, ...}``.

    Raises:
        ValueError: Listing, per group, converted weights with no module, an encoder other than
            ``ILSTransformerEncoder`` (e.g. ESPnet's ``e_branchformer``), our keys no torchaudio
            key maps to (missing), converted keys our module lacks, and shape mismatches.
    """
    problems = []
    for group in sorted(set(converted) | set(modules)):
        offered = converted.get(group, {})
        if group not in modules:
            problems.append(
                f"{group}: {len(offered)} converted weights ({sorted(offered)[0]}, ...) but no "
                f"module given; pass skip_groups=('{group}',) to leave them out"
            )
            continue
        if group == ENCODER and not isinstance(modules[group], ILSTransformerEncoder):
            # Another encoder (ESPnet's e_branchformer, conformer, ...) would only have every key
            # listed as missing and unexpected below.
            problems.append(
                f"{group}: {type(modules[group]).__name__} cannot take torchaudio's Transformer "
                "weights, which convert into ILSTransformerEncoder (encoder: ils_transformer) "
                "only; build it from torchaudio_hubert_confs, or call build_from_torchaudio"
            )
            continue
        expected = modules[group].state_dict()
        for key in sorted(set(expected) - set(offered)):
            problems.append(f"{group}: missing {key} (no torchaudio key maps to it)")
        for key in sorted(set(offered) - set(expected)):
            problems.append(
                f"{group}: unexpected {key} (our {type(modules[group]).__name__} has none)"
            )
        for key in sorted(set(offered) & set(expected)):
            if offered[key].shape != expected[key].shape:
                problems.append(
                    f"{group}: shape mismatch for {key}: torchaudio {tuple(offered[key].shape)}, "
                    f"ours {tuple(expected[key].shape)}"
                )
    if problems:
        raise ValueError(
            "torchaudio weights do not fit the modules (build them with the source model's "
            f"sizes, see torchaudio_hubert_confs):{_listing(problems)}"
        )


def load_torchaudio_hubert(
    state_dict: Mapping[str, torch.Tensor],
    modules: Mapping[str, nn.Module],
    skip_groups: Sequence[str] = (),
) -> None:
    """Convert a torchaudio state dict and load it strictly into our modules.

    Args:
        state_dict: ``Wav2Vec2Model.state_dict()`` or ``HuBERTPretrainModel.state_dict()``.
        modules: Our module for every group the state dict holds (see the module docstring).
        skip_groups: Groups to leave out on purpose, e.g. ``("mask", "loss")`` to take only the
            encoder of a pretraining model; any other converted group without a module is an error.

    Raises:
        ValueError: An unknown group in ``skip_groups``, or from :func:`convert_torchaudio_hubert`
            or :func:`check_converted`.
    """
    for group in skip_groups:
        if group not in MODULE_CLASSES:
            raise ValueError(f"skip_groups has {group!r}; groups are {sorted(MODULE_CLASSES)}")
    converted = {
        group: weights
        for group, weights in convert_torchaudio_hubert(state_dict).items()
        if group not in skip_groups
    }
    check_converted(converted, modules)
    for group, module in modules.items():
        module.load_state_dict(converted.get(group, {}), strict=True)


def _frontend_conf(
    extractor: components.FeatureExtractor, feature_grad_mult: Optional[float]
) -> Dict[str, Any]:
    blocks = extractor.conv_layers
    norms = [block.layer_norm for block in blocks]
    if isinstance(norms[0], nn.GroupNorm) and all(norm is None for norm in norms[1:]):
        norm_mode = "group_norm"
    elif all(isinstance(norm, nn.LayerNorm) for norm in norms):
        norm_mode = "layer_norm"
    else:
        raise ValueError(
            f"torchaudio conv extractor norms {norms}: neither group_norm nor layer_norm"
        )
    return {
        "norm_mode": norm_mode,
        "conv_mode": "standard",
        "bias": blocks[0].conv.bias is not None,
        "shapes": [[b.conv.out_channels, b.conv.kernel_size[0], b.conv.stride[0]] for b in blocks],
        "feature_grad_mult": 1.0 if feature_grad_mult is None else feature_grad_mult,
    }


def _preencoder_conf(projection: components.FeatureProjection) -> Dict[str, Any]:
    return {
        "input_size": projection.projection.in_features,
        "output_size": projection.projection.out_features,
        "dropout_rate": projection.dropout.p,
    }


def _encoder_conf(transformer: components.Transformer) -> Dict[str, Any]:
    layer = transformer.layers[0]
    if not isinstance(layer.attention, components.SelfAttention):
        raise ValueError(
            f"torchaudio encoder with {type(layer.attention).__name__} (WavLM?): only the "
            "HuBERT / wav2vec 2.0 self-attention converts"
        )
    if layer.layer_norm_first:
        raise ValueError(
            "torchaudio encoder_layer_norm_first=True (pre-LN, e.g. hubert_large): its final "
            "encoder LayerNorm has no place in our pre-LN encoder; only post-LN models convert"
        )
    pos_conv = transformer.pos_conv_embed
    return {
        "input_size": pos_conv.embed_dim,
        "output_size": pos_conv.embed_dim,
        "attention_heads": layer.attention.num_heads,
        "linear_units": layer.feed_forward.intermediate_dense.out_features,
        "num_blocks": len(transformer.layers),
        "dropout_rate": transformer.dropout.p,
        "attention_dropout_rate": layer.attention.dropout,
        "activation_dropout_rate": layer.feed_forward.intermediate_dropout.p,
        "layer_drop_rate": transformer.layer_drop,
        "normalize_before": False,
        "conv_pos_kernel": pos_conv.kernel_size,
        "conv_pos_groups": pos_conv.conv.groups,
        "relative_position_bias": False,
    }


def torchaudio_hubert_confs(
    model: Union[Wav2Vec2Model, HuBERTPretrainModel],
) -> Dict[str, Dict[str, Any]]:
    """Constructor arguments of our modules that match a torchaudio model.

    The values are plain YAML types, so they also serve as ``frontend_conf``, ``preencoder_conf``,
    ``encoder_conf``, the mask util's and the loss's ``conf`` (without ``encoder_embed_dim`` /
    ``encoder_output_size`` and the encoder's ``input_size``, which ESPnet fills in).

    Args:
        model: A post-LN torchaudio ``Wav2Vec2Model`` (HuBERT / wav2vec 2.0) or
            ``HuBERTPretrainModel``.

    Returns:
        ``{group: kwargs}`` for the groups :func:`convert_torchaudio_hubert` gives for its state
        dict. The loss is HuBERT's: ``layers: [num_blocks]``, ``logit_temp: 0.1`` (fixed in
        torchaudio), ESPnet's default feature penalty weight.

    Raises:
        ValueError: For other model types, WavLM, and pre-LN models.
    """
    pretrain = isinstance(model, HuBERTPretrainModel)
    wav2vec2 = model.wav2vec2 if pretrain else model
    if not isinstance(wav2vec2, Wav2Vec2Model):
        raise ValueError(
            f"Expected a torchaudio Wav2Vec2Model or HuBERTPretrainModel, got {type(model).__name__}"
        )
    encoder = wav2vec2.encoder
    confs = {
        FRONTEND: _frontend_conf(
            wav2vec2.feature_extractor, model.feature_grad_mult if pretrain else None
        ),
        PREENCODER: _preencoder_conf(encoder.feature_projection),
        ENCODER: _encoder_conf(encoder.transformer),
    }
    embed_dim = confs[ENCODER]["output_size"]
    if pretrain:
        confs[MASK] = {"encoder_embed_dim": embed_dim}
        confs[MASK].update({name: getattr(model.mask_generator, name) for name in MASK_OPTIONS})
        num_classes, final_dim = model.logit_generator.label_embeddings.shape
        confs[LOSS] = {
            "encoder_output_size": embed_dim,
            "num_classes": num_classes,
            "layers": [confs[ENCODER]["num_blocks"]],
            "final_dim": final_dim,
            "logit_temp": 0.1,
        }
    if wav2vec2.aux is not None:
        confs[CTC_HEAD] = {"odim": wav2vec2.aux.out_features, "encoder_output_size": embed_dim}
    return confs


def build_from_torchaudio(model: Union[Wav2Vec2Model, HuBERTPretrainModel]) -> Dict[str, nn.Module]:
    """Build our modules with a torchaudio model's configuration and load its weights.

    Args:
        model: See :func:`torchaudio_hubert_confs`.

    Returns:
        ``{group: module}`` (see the module docstring), in training mode like any new module.
        Run ``frontend -> preencoder -> (mask) -> encoder``; block k of the encoder
        (``return_all_hs=True``, index k - 1) equals layer k of torchaudio's ``extract_features``.
    """
    modules = {
        group: MODULE_CLASSES[group](**conf)
        for group, conf in torchaudio_hubert_confs(model).items()
    }
    load_torchaudio_hubert(model.state_dict(), modules)
    return modules

"""Export ILS-SSL models for s3prl as WavLM checkpoints (Microsoft's format, ``{"cfg", "model"}``).

s3prl's ``wavlm_local(ckpt)`` (``s3prl.upstream.wavlm.hubconf``) loads such a file with
``torch.load``, builds ``WavLM(WavLMConfig(cfg))`` and loads ``model`` strictly; its
``hidden_states`` (hooks on every block's input and on the encoder's output) are our layers
``0..N-1`` and then the encoder's output. WavLM's ``gru_rel_pos: False`` adds the bucket bias of
block 0 to every block ungated, as the original ILS-SSL code does (it imports WavLM's encoder), so
no gate is written and s3prl's bucket function is the original's (the tests compare it with ours).

The checkpoint's tensor names are the original ILS-SSL code's, which ``convert_unispeech`` maps
onto ours (:func:`espnet_ils.converters.unispeech.key_families`); the export runs that mapping the
other way, tensor for tensor: every tensor of s3prl's model comes from one of ours or gets a value
stated below, and every tensor of ours is used or left out for a reason
(:data:`espnet_ils.export.wavlm_source.DROPPED`), else the export fails naming the keys.

* ``pos_conv`` weight norm (dim 2) is written as ``weight_g`` / ``weight_v``, the names of
  ``torch.nn.utils.weight_norm`` that WavLM uses.
* Pre-LN (LARGE): WavLM applies ``encoder.layer_norm`` to the top block when it returns the
  encoder's output, so s3prl's last hidden state is the top block through the LayerNorm that
  reads it in our model (:attr:`~espnet_ils.export.wavlm_source.ExportSource.top_norm`: the top
  ILS head's input norm, or the ASR model's ``after_norm``), or through a plain LayerNorm
  (weight 1, bias 0) where ours has none. ``after_norm`` is ESPnet's LayerNorm with eps 1e-12,
  WavLM's has 1e-5 (about ``5e-6 / v`` relative on a frame whose top block has variance ``v``).
* ``normalize`` (LARGE) is s3prl's ``F.layer_norm(wav, wav.shape)``: ours exactly (eps 1e-5).
* ``mask_emb``: s3prl never masks (``extract_features(mask=False)``); a pretrained model's mask
  embedding is written, a model without one gets zeros.
* BASE's GroupNorm front: WavLM normalises block 0 over the padded batch, ours over each
  utterance's frames, so in a padded batch the shorter utterances differ (one at a time they agree).
* A fine-tuned model exports its SSL encoder (s3prl upstreams have no heads); its CTC head and
  decoder are left out.

ESPnet's ``S3prlFrontend`` (``frontend: s3prl``, ``upstream: wavlm_local``) would read the file
too, but on the pinned stack it cannot start: s3prl 0.4.18's ``s3prl.nn`` imports every upstream,
and ``byol_s`` calls ``torchaudio.set_audio_backend``, which torchaudio 2.11 no longer has.
"""

import logging
import re
from pathlib import Path
from typing import Any, Callable, Dict, Mapping, Optional

import torch

from espnet_ils.converters import unispeech
from espnet_ils.export.wavlm_source import (
    DROPPED,
    ENCODER_ONLY_DROPPED,
    ExportSource,
    check_frontend,
    export_source,
    listing,
    load_model,
    refuse,
    require_package,
)

logger = logging.getLogger(__name__)

#: WavLM's ``extractor_mode`` of our conv front's norms (:func:`check_frontend`).
EXTRACTOR_MODES = {"group": "default", "layer": "layer_norm"}
#: Our conv-block norms (``convert_unispeech``'s layout) of each WavLM ``extractor_mode``.
NORM_MODES = {"default": "group_norm", "layer_norm": "layer_norm"}
#: WavLM's LayerNorm after the top block (pre-LN only) and its mask embedding.
TOP_NORM = "encoder.layer_norm"
MASK_EMBEDDING = "mask_emb"


def wavlm_cfg(source: ExportSource) -> Dict[str, Any]:
    """The checkpoint's ``cfg``: ``WavLMConfig`` fields that rebuild ``source``'s network (plain
    Python values, so that ``torch.load(weights_only=True)`` reads them).

    Masking and the pretraining options WavLM keeps but s3prl never uses stay WavLM's defaults.

    Raises:
        ValueError: A projection WavLM has no counterpart for.
    """
    encoder, frontend = source.encoder, source.frontend
    first = encoder.encoders[0]
    convs = [block.conv for block in frontend.layers]
    relative_bias = encoder.relative_bias
    if convs[-1].out_channels == encoder.output_size():
        raise refuse(
            f"feature_projection of {convs[-1].out_channels} conv channels to the same width",
            "WavLM has no post_extract_proj when the conv width equals encoder_embed_dim",
        )
    return {
        "extractor_mode": EXTRACTOR_MODES[check_frontend(frontend, None)],
        "conv_feature_layers": repr(
            [(conv.out_channels, conv.kernel_size[0], conv.stride[0]) for conv in convs]
        ),
        "conv_bias": convs[0].bias is not None,
        "feature_grad_mult": float(frontend.feature_grad_mult),
        "normalize": bool(frontend.normalize_audio),
        "encoder_layers": len(encoder.encoders),
        "encoder_embed_dim": encoder.output_size(),
        "encoder_ffn_embed_dim": first.fc1.out_features,
        "encoder_attention_heads": first.self_attn.heads,
        "activation_fn": "gelu",
        "layer_norm_first": bool(encoder.normalize_before),
        "dropout": float(encoder.dropout.p),
        "attention_dropout": float(first.self_attn.dropout_rate),
        "activation_dropout": float(first.activation_dropout.p),
        "encoder_layerdrop": float(encoder.layer_drop_rate),
        "dropout_input": float(source.preencoder.dropout.p),
        "dropout_features": 0.0,
        "conv_pos": encoder.pos_conv.conv.kernel_size[0],
        "conv_pos_groups": encoder.pos_conv.conv.groups,
        "relative_position_embedding": relative_bias is not None,
        "num_buckets": 320 if relative_bias is None else relative_bias.num_buckets,
        "max_distance": 800 if relative_bias is None else relative_bias.max_distance,
        "gru_rel_pos": False,
    }


def our_key_of(source: ExportSource, cfg: Mapping[str, Any]) -> Callable[[str], Optional[str]]:
    """Our key of a WavLM tensor (None where no tensor of ours has it): ``convert_unispeech``'s
    mapping of the original's key, or the top norm of a pre-LN model."""
    layout = unispeech.Layout(
        unispeech.PRETRAINED, NORM_MODES[cfg["extractor_mode"]], cfg["layer_norm_first"]
    )
    families = [(re.compile(f.pattern), f.target) for f in unispeech.key_families(layout)[0]]

    def our_key(wavlm_key: str) -> Optional[str]:
        if cfg["layer_norm_first"] and wavlm_key.startswith(TOP_NORM + "."):
            suffix = wavlm_key[len(TOP_NORM) :]
            return None if source.top_norm is None else source.top_norm + suffix
        for pattern, target in families:
            match = pattern.fullmatch(wavlm_key)
            if match:
                return match.expand(target)
        return None

    return our_key


def fixed_value(wavlm_key: str, like: torch.Tensor) -> Optional[torch.Tensor]:
    """The value of a WavLM tensor that no tensor of ours fills, where the module docstring
    gives one: a plain top LayerNorm, and a zero mask embedding."""
    if wavlm_key == TOP_NORM + ".weight":
        return torch.ones_like(like)
    if wavlm_key in (TOP_NORM + ".bias", MASK_EMBEDDING):
        return torch.zeros_like(like)
    return None


def map_weights(
    source: ExportSource, cfg: Mapping[str, Any], expected: Mapping[str, torch.Tensor]
) -> Dict[str, torch.Tensor]:
    """Every tensor of s3prl's WavLM, from ours or fixed, checked both ways.

    Args:
        source: From :func:`~espnet_ils.export.wavlm_source.export_source`.
        cfg: From :func:`wavlm_cfg`.
        expected: ``WavLM(cfg).state_dict()`` (keys and shapes).

    Returns:
        The checkpoint's ``model``: WavLM key -> contiguous tensor.

    Raises:
        ValueError: Tensors of ours that no WavLM tensor takes and that are not left out for a
            reason, WavLM tensors nothing fills, and shape mismatches, all named.
    """
    our_key = our_key_of(source, cfg)
    weights, used, problems = {}, set(), []
    for key, like in expected.items():
        ours = our_key(key)
        if ours in source.state:
            value = source.state[ours]
            used.add(ours)
        else:
            value = fixed_value(key, like)
            if value is None:
                problems.append(f"WavLM {key}: nothing of ours fills it (ours would be {ours})")
                continue
            logger.info("%s: no tensor of ours has it; written as the module docstring says", key)
        if value.shape != like.shape:
            problems.append(
                f"shape of {key}: ours {ours} {tuple(value.shape)}, WavLM {tuple(like.shape)}"
            )
        weights[key] = value.detach().clone().contiguous()
    dropped = {**DROPPED, **ENCODER_ONLY_DROPPED}
    for key in sorted(set(source.state) - used):
        reason = next((why for pattern, why in dropped.items() if re.fullmatch(pattern, key)), None)
        if reason is None:
            problems.append(f"ours {key}: no WavLM tensor takes it")
        else:
            logger.info("not exported: %s (%s)", key, reason)
    if problems:
        raise ValueError(
            f"the {source.description} does not map onto s3prl's WavLM tensor for tensor:"
            f"{listing(sorted(problems))}"
        )
    return weights


def build_checkpoint(source: ExportSource) -> Dict[str, Any]:
    """``{"cfg": ..., "model": ...}`` of ``source``, every tensor named and shaped as s3prl's WavLM
    of that ``cfg`` has them (:func:`map_weights`; :func:`export_to_s3prl` loads the written file
    through s3prl)."""
    from s3prl.upstream.wavlm.WavLM import WavLM, WavLMConfig

    cfg = wavlm_cfg(source)
    return {"cfg": cfg, "model": map_weights(source, cfg, WavLM(WavLMConfig(cfg)).state_dict())}


def export_to_s3prl(
    output: Path,
    model_dir: Optional[Path] = None,
    config: Optional[Path] = None,
    model_file: Optional[Path] = None,
    checkpoint: Optional[Path] = None,
    dictionary: Optional[Path] = None,
) -> Path:
    """Write an ILS-SSL model's encoder as a WavLM checkpoint that s3prl's ``wavlm_local`` loads.

    Args:
        output: The ``.pt`` file to create (must not exist); written only when the whole export
            succeeded, and checked by loading it through s3prl before it is renamed into place.
        model_dir, config, model_file, checkpoint, dictionary: The model
            (:func:`~espnet_ils.export.wavlm_source.load_model`): a pretrained SSL model, a
            fine-tuned model (its SSL encoder), or a fairseq ILS-SSL / HuBERT checkpoint.

    Returns:
        ``output``.

    Raises:
        ValueError: ``output`` exists, an unreadable model, or what WavLM cannot express, named.
    """
    require_package("s3prl")
    from s3prl.upstream.wavlm.hubconf import wavlm_local

    if output.exists():
        raise ValueError(f"--output {output} exists; remove it or pick another")
    model, token_type = load_model(model_dir, config, model_file, checkpoint, dictionary)
    source = export_source(model, token_type)
    contents = build_checkpoint(source)
    output.parent.mkdir(parents=True, exist_ok=True)
    partial = output.with_name(f".{output.name}.partial")
    try:
        torch.save(contents, partial)
        wavlm_local(str(partial))  # s3prl reads the file as written
        partial.rename(output)
    finally:
        partial.unlink(missing_ok=True)
    cfg = contents["cfg"]
    logger.info(
        "wrote %s: %s WavLM of %d blocks from the %s (s3prl's wavlm_local loads it)",
        output,
        "pre-LN" if cfg["layer_norm_first"] else "post-LN",
        cfg["encoder_layers"],
        source.description,
    )
    return output

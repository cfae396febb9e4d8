"""Export ILS-SSL models to Hugging Face ``transformers`` as WavLM (``WavLMModel``, ``WavLMForCTC``).

ILS-SSL's encoder is WavLM's with the gated relative position bias turned off. ``transformers``'
WavLM computes the bucket bias in block 0 (``rel_attn_embed``), passes it to every block, and
each block multiplies it by a gate ``a * (b * gru_rel_pos_const - 1) + 2`` with
``a, b = sigmoid(gru_rel_pos_linear(x))``. WavLM has no switch for the gate, so the export writes
``gru_rel_pos_linear`` weight and bias 0 (``a = b = 1/2``) and ``gru_rel_pos_const = -2``: the
gate is ``0.25 * -2 + 1.5 = 1`` exactly. A model of ours without relative bias (HuBERT,
``relative_position_bias: false``) gets an all-zero bucket table: a bias of exactly 0.
``transformers`` computes the bucket of ``|offset|`` with ``max_exact`` added before truncating,
ours after; both give the same buckets (``tests/test_export_transformers.py`` checks offsets
-20000..20000).

What becomes what (``transformers`` keys of ``WavLMModel``; ``WavLMForCTC`` prefixes them with
``wavlm.`` and adds ``lm_head``):

* post-LN encoders (BASE) -> ``WavLMEncoder``: our LayerNorm before block 1 is its
  ``encoder.layer_norm``, applied to the input of block 1 as ours.
* pre-LN encoders (LARGE) -> ``WavLMEncoderStableLayerNorm``, which always applies
  ``encoder.layer_norm`` to the last block's output (``last_hidden_state``; ``hidden_states[-1]``
  stays the raw block output). Ours has no such norm: it takes the LayerNorm that reads the top
  block in our model, i.e. the top ILS head's input norm of a pretrained model (the original's
  ``post_layer_norm[-1]``, what its ``features_only`` path returns), or the ``after_norm`` of the
  ASR model's ``linear`` encoder. Where there is none, it is written as a plain LayerNorm (weight
  1, bias 0), and ``last_hidden_state`` is the top block normalised without scale or shift.
  WavLM has one ``layer_norm_eps`` for every LayerNorm (ours: 1e-5); ESPnet's ``after_norm`` has
  eps 1e-12, so there a frame whose top block has variance ``v`` over channels comes out
  ``sqrt((v + 1e-12) / (v + 1e-5))`` times ours (about ``5e-6 / v`` less, relative).
* ``hidden_states[k]`` (``output_hidden_states=True``) is our layer k: ``0`` the input of block 1,
  ``k`` the output of block k; :func:`export_to_transformers` loads what it wrote and the tests
  compare every one within 1e-5 of the largest value.
* The conv front ``ils_cnn`` -> ``feature_extractor`` (``feat_extract_norm`` ``group`` or
  ``layer``), ``feature_projection`` -> ``feature_projection``. Ours normalises the GroupNorm
  of BASE over each utterance's own frames; ``transformers`` over the padded batch, so a padded
  batch changes its features of the shorter utterances (ours stay), as for every group-norm
  wav2vec 2.0 model in ``transformers``. Without padding, and with the LayerNorm front (LARGE)
  in any batch, the two agree.
* Waveform normalisation (``normalize_audio``, LARGE) is the feature extractor's ``do_normalize``,
  which divides by ``sqrt(var + 1e-7)`` where ours uses ``1e-5``, as fairseq does: a scale per
  utterance, which the LARGE front's bias-free first conv passes on and its LayerNorm divides
  out, up to that LayerNorm's eps (the tests measure the logits at speech levels).
* The mask embedding -> ``masked_spec_embed``; a fine-tuned model's masks (its ``espnet_ssl``
  front end's ``masking_conf``) become ``mask_time_*`` / ``mask_feature_*``; a pretrained model's
  pretraining masks do not (0.8 of the frames would be masked in fine-tuning), it keeps
  ``transformers``' defaults. ``transformers`` draws its spans its own way: training only.
* The CTC head ``ctc.ctc_lo`` -> ``lm_head``; ESPnet's char token list -> the vocabulary of a
  ``Wav2Vec2CTCTokenizer`` in the same order: ``<blank>`` (id 0) is its pad token (the CTC blank),
  ``<unk>`` its unknown token, ``<space>`` (or ``▁``) its word delimiter, ``<sos/eos>`` its
  begin/end token. It decodes as ESPnet's char tokenizer, except that it strips word breaks at
  either end of the transcript (``convert_tokens_to_string`` ends with ``.strip()``).

Every tensor of the target model is written (ours, or the fixed values above) and every tensor of
ours is used or dropped for a reason stated in :data:`DROPPED` (the ILS heads, step counters);
anything else is an error naming the keys. What WavLM cannot express is refused by name: other
encoders (E-Branchformer, Conformer), other front ends (the mini configs' log-mel front),
feature normalisation, other pre-encoders, depthwise conv blocks, self-conditioned intermediate
CTC, and for ``WavLMForCTC`` a CTC head on anything but the top block as WavLM reads it.
"""

import json
import logging
import re
import tempfile
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Tuple

import torch
from torch import nn

from espnet_ils.data.staging import check_new_directory, staged_directory
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

WAVLM_MODEL = "WavLMModel"
WAVLM_CTC = "WavLMForCTC"
#: ``WavLMForCTC`` keeps its ``WavLMModel`` under this name.
CTC_BASE_PREFIX = "wavlm."

#: The gate of every block: ``a * (b * CONST - 1) + 2`` with ``a = b = sigmoid(0)`` is 1.
GATE_CONST = -2.0
SAMPLE_RATE = 16000
WORD_DELIMITERS = ("<space>", "▁")
BLANK = "<blank>"
UNK = "<unk>"
SOS_EOS = "<sos/eos>"

_BLOCK = r"encoder\.encoders\.(\d+)\."

#: Our key (see :func:`canonical_state`) -> the ``WavLMModel`` key (old -> new in each comment).
KEY_FAMILIES: Tuple[Tuple[str, str], ...] = (
    # frontend.layers.J.conv.{weight,bias} -> feature_extractor.conv_layers.J.conv.{weight,bias}
    (r"frontend\.layers\.(\d+)\.conv\.(weight|bias)", r"feature_extractor.conv_layers.\1.conv.\2"),
    # GroupNorm of block 0 or LayerNorm of every block:
    # frontend.layers.J.layer_norm.* -> feature_extractor.conv_layers.J.layer_norm.*
    (
        r"frontend\.layers\.(\d+)\.layer_norm\.(weight|bias)",
        r"feature_extractor.conv_layers.\1.layer_norm.\2",
    ),
    # preencoder.layer_norm.* -> feature_projection.layer_norm.*
    (r"preencoder\.layer_norm\.(weight|bias)", r"feature_projection.layer_norm.\1"),
    # preencoder.linear.* -> feature_projection.projection.*
    (r"preencoder\.linear\.(weight|bias)", r"feature_projection.projection.\1"),
    # encoder.pos_conv.conv.bias -> encoder.pos_conv_embed.conv.bias
    (r"encoder\.pos_conv\.conv\.bias", "encoder.pos_conv_embed.conv.bias"),
    # weight norm over dim 2, g (1, 1, K) and v (D, D / groups, K), both parametrized:
    # encoder.pos_conv.conv.parametrizations.weight.originalN
    #   -> encoder.pos_conv_embed.conv.parametrizations.weight.originalN
    (
        r"encoder\.pos_conv\.conv\.parametrizations\.weight\.(original[01])",
        r"encoder.pos_conv_embed.conv.parametrizations.weight.\1",
    ),
    # post-LN: the LayerNorm before block 1, encoder.layer_norm.* -> encoder.layer_norm.*
    (r"encoder\.layer_norm\.(weight|bias)", r"encoder.layer_norm.\1"),
    # the one bucket table (num_buckets, H) lives in WavLM's block 0:
    # encoder.relative_bias.embedding.weight -> encoder.layers.0.attention.rel_attn_embed.weight
    (
        r"encoder\.relative_bias\.embedding\.weight",
        "encoder.layers.0.attention.rel_attn_embed.weight",
    ),
    # encoder.encoders.I.self_attn.{q,k,v,out}_proj.* -> encoder.layers.I.attention.{q,k,v,out}_proj.*
    (
        _BLOCK + r"self_attn\.((?:q|k|v|out)_proj\.(?:weight|bias))",
        r"encoder.layers.\1.attention.\2",
    ),
    # encoder.encoders.I.self_attn_layer_norm.* -> encoder.layers.I.layer_norm.*
    (_BLOCK + r"self_attn_layer_norm\.(weight|bias)", r"encoder.layers.\1.layer_norm.\2"),
    # encoder.encoders.I.fc1.* -> encoder.layers.I.feed_forward.intermediate_dense.*
    (_BLOCK + r"fc1\.(weight|bias)", r"encoder.layers.\1.feed_forward.intermediate_dense.\2"),
    # encoder.encoders.I.fc2.* -> encoder.layers.I.feed_forward.output_dense.*
    (_BLOCK + r"fc2\.(weight|bias)", r"encoder.layers.\1.feed_forward.output_dense.\2"),
    # encoder.encoders.I.final_layer_norm.* -> encoder.layers.I.final_layer_norm.*
    (_BLOCK + r"final_layer_norm\.(weight|bias)", r"encoder.layers.\1.final_layer_norm.\2"),
    # util_modules.mask.mask_embedding (D,) -> masked_spec_embed
    (r"util_modules\.mask\.mask_embedding", "masked_spec_embed"),
)

#: ``WavLMForCTC`` only: ctc.ctc_lo.{weight,bias} (V, D) -> lm_head.{weight,bias} (no prefix).
CTC_FAMILY = (r"ctc\.ctc_lo\.(weight|bias)", r"lm_head.\1")

NO_MASK_DROPPED = {
    r"util_modules\.mask\.mask_embedding": "mask embedding of a model fine-tuned without masks: "
    "WavLM has masked_spec_embed only when it masks"
}


def mask_options(source: ExportSource) -> Dict[str, Any]:
    """``transformers``' masking options of a fine-tuned model: those it was fine-tuned with (off
    where it did not mask). A pretrained model keeps ``transformers``' defaults (its pretraining
    masks would hide 0.8 of the frames in fine-tuning)."""
    if source.token_list is None:
        return {}
    mask = source.fine_tuning_mask
    return {
        "mask_time_prob": float(mask.mask_prob) if mask else 0.0,
        "mask_time_length": int(mask.mask_length) if mask else 10,
        "mask_feature_prob": float(mask.mask_channel_prob) if mask else 0.0,
        "mask_feature_length": int(mask.mask_channel_length) if mask else 10,
    }


def wavlm_config(source: ExportSource, ctc: bool) -> Dict[str, Any]:
    """``WavLMConfig`` keyword arguments that rebuild ``source``'s network.

    Args:
        source: From :func:`export_source`.
        ctc: For ``WavLMForCTC`` (vocabulary and blank from the token list).

    Returns:
        The keyword arguments; masking keeps ``transformers``' defaults unless ``source`` sets
        it, and is off where ``source`` has no mask embedding.
    """
    encoder, frontend = source.encoder, source.frontend
    first = encoder.encoders[0]
    convs = [block.conv for block in frontend.layers]
    relative_bias = encoder.relative_bias
    config = {
        "hidden_size": encoder.output_size(),
        "num_hidden_layers": len(encoder.encoders),
        "num_attention_heads": first.self_attn.heads,
        "intermediate_size": first.fc1.out_features,
        "hidden_act": "gelu",
        "hidden_dropout": encoder.dropout.p,
        "attention_dropout": first.self_attn.dropout_rate,
        "activation_dropout": first.activation_dropout.p,
        "feat_proj_dropout": source.preencoder.dropout.p,
        "layerdrop": encoder.layer_drop_rate,
        "layer_norm_eps": first.final_layer_norm.eps,
        "feat_extract_norm": check_frontend(frontend, None),
        "feat_extract_activation": "gelu",
        "conv_dim": [conv.out_channels for conv in convs],
        "conv_kernel": [conv.kernel_size[0] for conv in convs],
        "conv_stride": [conv.stride[0] for conv in convs],
        "conv_bias": convs[0].bias is not None,
        "num_conv_pos_embeddings": encoder.pos_conv.conv.kernel_size[0],
        "num_conv_pos_embedding_groups": encoder.pos_conv.conv.groups,
        "num_buckets": 320 if relative_bias is None else relative_bias.num_buckets,
        "max_bucket_distance": 800 if relative_bias is None else relative_bias.max_distance,
        "do_stable_layer_norm": encoder.normalize_before,
        **mask_options(source),
    }
    if "util_modules.mask.mask_embedding" not in source.state:
        config.update(mask_time_prob=0.0, mask_feature_prob=0.0)
    if ctc:
        tokens = source.token_list
        config.update(
            vocab_size=len(tokens),
            pad_token_id=tokens.index(BLANK),
            bos_token_id=tokens.index(SOS_EOS) if SOS_EOS in tokens else None,
            eos_token_id=tokens.index(SOS_EOS) if SOS_EOS in tokens else None,
            final_dropout=source.ctc_dropout,
        )
    return config


def fixed_weights(source: ExportSource, expected: Mapping[str, torch.Tensor]) -> Dict[str, str]:
    """The WavLM tensors no tensor of ours becomes, and the value each gets (see the module
    docstring): the gates of every block, and where ``source`` lacks them the bucket table and
    the pre-LN ``encoder.layer_norm``.

    Returns:
        WavLM key -> ``"zeros"``, ``"ones"`` or ``"gate_const"``.
    """
    fixed = {}
    for key in expected:
        if re.search(r"\.attention\.gru_rel_pos_linear\.(weight|bias)$", key):
            fixed[key] = "zeros"
        elif key.endswith(".attention.gru_rel_pos_const"):
            fixed[key] = "gate_const"
        elif key.endswith("rel_attn_embed.weight") and source.encoder.relative_bias is None:
            fixed[key] = "zeros"  # HuBERT: a bias of 0 for every offset
        elif (
            re.search(r"(^|\.)encoder\.layer_norm\.(weight|bias)$", key)
            and source.encoder.normalize_before
            and source.top_norm is None
        ):
            fixed[key] = "ones" if key.endswith("weight") else "zeros"
    return fixed


FIXED_VALUES = {
    "zeros": lambda like: torch.zeros_like(like),
    "ones": lambda like: torch.ones_like(like),
    "gate_const": lambda like: torch.full_like(like, GATE_CONST),
}


def map_weights(
    source: ExportSource, expected: Mapping[str, torch.Tensor], ctc: bool
) -> Dict[str, torch.Tensor]:
    """Every tensor of the WavLM model, from ours or fixed, checked both ways.

    Args:
        source: From :func:`export_source`.
        expected: The target model's ``state_dict()`` (keys and shapes).
        ctc: ``WavLMForCTC`` (keys under ``wavlm.``, plus ``lm_head``) or ``WavLMModel``.

    Returns:
        The complete state dict for ``load_state_dict(strict=True)``.

    Raises:
        ValueError: Tensors of ours that map nowhere and are not dropped for a reason, WavLM
            tensors nothing fills, and shape mismatches, all named.
    """
    prefix = CTC_BASE_PREFIX if ctc else ""
    families = [(pattern, prefix + target) for pattern, target in KEY_FAMILIES]
    if source.top_norm is not None:  # before DROPPED, which drops the other ILS head norms
        top = re.escape(source.top_norm) + r"\.(weight|bias)"
        families.insert(0, (top, prefix + r"encoder.layer_norm.\1"))
    if ctc:
        families.append(CTC_FAMILY)
    dropped = dict(DROPPED)
    if not ctc:
        dropped.update(ENCODER_ONLY_DROPPED)
    if prefix + "masked_spec_embed" not in expected:
        dropped.update(NO_MASK_DROPPED)
    compiled = [(re.compile(pattern), target) for pattern, target in families]
    weights, sources, problems = {}, {}, []
    for key, value in source.state.items():
        match = next(((m, t) for m, t in ((p.fullmatch(key), t) for p, t in compiled) if m), None)
        reason = next((why for pattern, why in dropped.items() if re.fullmatch(pattern, key)), None)
        if match is not None:
            target = match[0].expand(match[1])
            weights[target], sources[target] = value, key
        elif reason is not None:
            logger.info("not exported: %s (%s)", key, reason)
        else:
            problems.append(f"ours {key}: no WavLM tensor takes it")
    for key, kind in fixed_weights(source, expected).items():
        if key in weights:
            problems.append(f"{key}: both fixed ({kind}) and from ours {sources[key]}")
        weights[key] = FIXED_VALUES[kind](expected[key])
        sources[key] = kind
    problems += [f"WavLM {key}: nothing of ours fills it" for key in expected if key not in weights]
    problems += [
        f"WavLM has no {key} (from ours {sources[key]})" for key in weights if key not in expected
    ]
    problems += [
        f"shape of {key}: ours {sources[key]} {tuple(weights[key].shape)}, WavLM "
        f"{tuple(expected[key].shape)}"
        for key in weights
        if key in expected and weights[key].shape != expected[key].shape
    ]
    if problems:
        raise ValueError(
            f"the {source.description} does not map onto {WAVLM_CTC if ctc else WAVLM_MODEL} "
            f"tensor for tensor:{listing(sorted(problems))}"
        )
    return weights


#: ``Wav2Vec2CTCTokenizer``'s word delimiter; ESPnet's ``<space>`` / ``▁`` is renamed to it
#: (its tokenizer splits a multi-character delimiter into letters when it encodes text).
HF_WORD_DELIMITER = "|"


def ctc_vocabulary(token_list: List[str]) -> Dict[str, int]:
    """The tokenizer vocabulary of an ESPnet char token list: same ids, the word separator
    renamed to :data:`HF_WORD_DELIMITER`.

    Raises:
        ValueError: No ``<blank>`` at id 0 (ESPnet's CTC blank), no ``<unk>``, duplicates, no
            word separator, or a ``|`` of its own beside a word separator.
    """
    if not token_list or token_list[0] != BLANK:
        raise ValueError(
            f"token list starts with {token_list[:1]}: ESPnet's CTC blank {BLANK} must be id 0"
        )
    if UNK not in token_list:
        raise ValueError(f"token list has no {UNK}")
    duplicates = sorted({token for token in token_list if token_list.count(token) > 1})
    if duplicates:
        raise ValueError(f"token list has duplicates {duplicates}")
    delimiters = [token for token in WORD_DELIMITERS if token in token_list]
    if not delimiters and HF_WORD_DELIMITER not in token_list:
        raise ValueError(
            f"token list has no word separator ({', '.join(WORD_DELIMITERS)} or "
            f"{HF_WORD_DELIMITER}): Wav2Vec2CTCTokenizer needs one between words"
        )
    if (delimiters and HF_WORD_DELIMITER in token_list) or len(delimiters) > 1:
        raise ValueError(
            f"token list has {delimiters + [HF_WORD_DELIMITER]} : which one separates words is "
            "ambiguous"
        )
    return {
        HF_WORD_DELIMITER if token in WORD_DELIMITERS else token: index
        for index, token in enumerate(token_list)
    }


def ctc_processor(token_list: List[str], do_normalize: bool) -> Any:
    """A ``Wav2Vec2Processor``: the feature extractor and a ``Wav2Vec2CTCTokenizer`` of the token
    list (:func:`ctc_vocabulary`), decoding as ESPnet's char tokenizer does."""
    from transformers import Wav2Vec2CTCTokenizer, Wav2Vec2Processor

    vocabulary = ctc_vocabulary(token_list)
    with tempfile.TemporaryDirectory() as workdir:
        vocab_file = Path(workdir) / "vocab.json"
        vocab_file.write_text(json.dumps(vocabulary, ensure_ascii=False), encoding="utf-8")
        tokenizer = Wav2Vec2CTCTokenizer(
            str(vocab_file),
            pad_token=BLANK,  # transformers' CTC blank is the pad token
            unk_token=UNK,
            bos_token=SOS_EOS if SOS_EOS in vocabulary else None,
            eos_token=SOS_EOS if SOS_EOS in vocabulary else None,
            word_delimiter_token=HF_WORD_DELIMITER,
            clean_up_tokenization_spaces=False,
        )
    added = sorted(set(tokenizer.get_vocab()) - set(vocabulary))
    assert not added, f"the tokenizer added tokens {added}"
    return Wav2Vec2Processor(feature_extractor=feature_extractor(do_normalize), tokenizer=tokenizer)


def feature_extractor(do_normalize: bool) -> Any:
    """``Wav2Vec2FeatureExtractor`` for 16 kHz waveforms, with attention masks (our models are
    trained on padded batches with masks)."""
    from transformers import Wav2Vec2FeatureExtractor

    return Wav2Vec2FeatureExtractor(
        feature_size=1,
        sampling_rate=SAMPLE_RATE,
        padding_value=0.0,
        do_normalize=do_normalize,
        return_attention_mask=True,
    )


def build_wavlm(source: ExportSource, ctc: bool) -> nn.Module:
    """The ``transformers`` model of ``source``, every tensor loaded (:func:`map_weights`),
    in eval mode."""
    import transformers

    config = transformers.WavLMConfig(**wavlm_config(source, ctc))
    model_class = transformers.WavLMForCTC if ctc else transformers.WavLMModel
    model = model_class(config)
    model.load_state_dict(map_weights(source, model.state_dict(), ctc), strict=True)
    return model.eval()


def _check_reload(directory: Path, model_class: type) -> None:
    """The written directory loads offline with every tensor from the file."""
    _, info = model_class.from_pretrained(
        directory, local_files_only=True, output_loading_info=True
    )
    problems = [f"{kind} {sorted(info[kind])}" for kind in info if info[kind]]
    assert not problems, f"{directory} reloads with {problems}"


def export_to_transformers(
    output_dir: Path,
    model_dir: Optional[Path] = None,
    config: Optional[Path] = None,
    model_file: Optional[Path] = None,
    checkpoint: Optional[Path] = None,
    dictionary: Optional[Path] = None,
    encoder_only: bool = False,
) -> Path:
    """Write an ILS-SSL model as a ``transformers`` WavLM directory.

    A pretrained SSL model (or ``encoder_only``) becomes ``WavLMModel`` with a feature
    extractor; a fine-tuned CTC model ``WavLMForCTC`` with a ``Wav2Vec2Processor``
    (feature extractor and ``Wav2Vec2CTCTokenizer``), which
    ``pipeline("automatic-speech-recognition", model=output_dir)`` transcribes with.

    Args:
        output_dir: Directory to create (must not exist or be empty); written only when the
            whole export succeeded.
        model_dir, config, model_file, checkpoint, dictionary: The model (:func:`load_model`).
        encoder_only: Export a fine-tuned model's SSL encoder as ``WavLMModel``, without its CTC
            head.

    Returns:
        ``output_dir`` with ``config.json``, ``model.safetensors``, the feature extractor's
        config and, for ``WavLMForCTC``, the tokenizer's files.

    Raises:
        ValueError: transformers missing, an unreadable model, or what WavLM cannot express,
            named.
    """
    require_package("transformers")
    import transformers

    check_new_directory(output_dir, "--output_dir")
    model, token_type = load_model(model_dir, config, model_file, checkpoint, dictionary)
    source = export_source(model, token_type)
    ctc = source.token_list is not None and not encoder_only
    if ctc and source.ctc_refusal is not None:
        raise refuse(
            f"WavLMForCTC for this {source.description}",
            f"{source.ctc_refusal}; --encoder_only exports its SSL encoder as WavLMModel",
        )
    wavlm = build_wavlm(source, ctc)
    do_normalize = bool(source.frontend.normalize_audio)
    with staged_directory(output_dir) as staging:
        wavlm.save_pretrained(staging)
        if ctc:
            ctc_processor(source.token_list, do_normalize).save_pretrained(staging)
        else:
            feature_extractor(do_normalize).save_pretrained(staging)
        _check_reload(staging, type(wavlm))
    logger.info(
        "wrote %s: %s %s of the %s (transformers %s)",
        output_dir,
        "pre-LN" if source.encoder.normalize_before else "post-LN",
        type(wavlm).__name__,
        source.description,
        transformers.__version__,
    )
    return output_dir

"""Convert original ILS-SSL and HuBERT checkpoints (fairseq) to ESPnet model dirs.

No fairseq is needed: the checkpoint is read with ``torch.load(weights_only=True)`` and everything
about the model is taken from the checkpoint's own ``cfg``.

* ``ils_hubert`` (pretrained, BASE post-LN or LARGE pre-LN, with its ILS heads) becomes an
  ``ILSSSLTask`` model: frontend ``ils_cnn``, preencoder ``feature_projection``, encoder
  ``ils_transformer``, loss ``ils``, util ``mask``; ``tokens.txt`` holds the cluster ids
  ``0..C-1``, then ``<unk>``.
* ``hubert`` (fairseq's pretrained HuBERT, e.g. the released ``hubert_base_ls960.pt`` whose
  block 9 gives the paper's LARGE targets) becomes the same ``ILSSSLTask`` model with the relative
  position bias off and HuBERT's one prediction head as the ILS loss on the top block only
  (``layers: [N]``), which is HuBERT's loss (``tests/test_torchaudio_parity.py``).
* ``hubert_ctc`` (fine-tuned: an ``ils_hubert`` encoder plus a CTC head) becomes an ESPnet
  ``ASRTask`` model with the same frontend, preencoder and encoder and CTC only
  (``ctc_weight: 1.0``, no decoder), so it needs no separate SSL model; ``tokens.txt`` holds the
  letters of the head.

Either way ``--outdir`` gets ``config.yaml`` (the task's full config, as ESPnet's training writes
it), ``model.pth`` and ``tokens.txt``.

Both directories load with ``<Task>.build_model_from_file(outdir / "config.yaml", outdir /
"model.pth")`` after ``import espnet_ils``; the ASR one also with ESPnet's ``Speech2Text``.

What the conversion has to get right (checked by ``tests/test_convert_unispeech.py`` against the
original implementation's outputs):

* ``predict_layers`` (a string such as ``"[4,12]"``) are 1-based block outputs, like our loss
  ``layers``; ``final_proj[i]`` and ``label_embs_concat[i]`` belong to ``predict_layers[i]``.
* Every label table has the 4 fairseq special rows ``<s> <pad> </s> <unk>`` first; cluster ``j`` is
  row ``4 + j``. The special rows are dropped (no k-means label ever targets them), so our codeword
  table has ``C = rows - 4`` rows and token id == cluster id.
* Pre-LN models (LARGE) normalise each supervised layer with its own ``post_layer_norm[i]`` (our
  loss ``input_norms[i]``). Their ``encoder.layer_norm`` is never applied by ILS-SSL (neither by the
  heads nor on the CTC path) and is dropped; our pre-LN encoder has no final LayerNorm.
* The fine-tuned pre-LN model feeds the raw final residual stream to its CTC head, as our encoder
  does. Its ``post_layer_norm`` weights (kept by fairseq's ``remove_pretraining_modules``) are unused
  on that path and dropped; so is its ``mask_emb`` (fine-tuning masks only; ESPnet's ASR model has
  no mask embedding and inference never masks).
* ``pos_conv`` weight norm (dim 2) comes as old-style ``weight_g`` / ``weight_v`` or as
  parametrization ``original0`` / ``original1``; both map onto our parametrization, which computes
  ``g * v / ||v||`` itself.
* The fine-tuned head keeps its rows in their order (index 0 = blank). ESPnet names them
  ``<blank> <pad> <sos/eos> <unk>`` and the letters of the fairseq dictionary, the word boundary
  ``|`` as ESPnet's ``<space>``. ESPnet's beam search needs a ``<sos/eos>`` token (it would take the
  last row, a letter, otherwise): fairseq's ``</s>`` row, which is never a CTC target, takes that
  role, so no row is added and the CTC outputs are exactly the original's. (ESPnet's CTC prefix
  scorer reads that row as the end of the hypothesis; as a symbol it never was a CTC target.)

HuBERT (``hubert``) differs from ``ils_hubert`` in its head only (checked by
``tests/test_label_models.py`` against torchaudio's import of the same fairseq keys):

* One head on the encoder output: ``final_proj`` and one label table ``label_embs_concat``, 2-D
  ``(4 + C, final_dim)`` for its one label set (several label sets are refused); the special rows
  are dropped as above.
* The head reads the encoder's output. Post-LN (BASE): block N as is. Pre-LN (LARGE): fairseq
  applies ``encoder.layer_norm`` after the last block when no ``output_layer`` is asked for, i.e.
  for the loss only; it becomes the loss's ``input_norms[0]``, so every block output stays the raw
  residual stream that ``output_layer=k`` (fairseq's feature dumping) returns.

Every checkpoint key is mapped through one of the key families below (:data:`ENCODER_FAMILIES`,
:data:`CONV_NORM_FAMILIES`, :data:`POST_LN_FAMILY`, :data:`PRETRAINING_FAMILIES`,
:data:`HUBERT_FAMILIES`, :data:`HUBERT_PRE_LN_FAMILY`, :data:`CTC_FAMILY`) or dropped for a
documented reason (:data:`DROPPED_FAMILIES`); an unknown key, a missing parameter or a shape that
contradicts the ``cfg`` is an error naming the keys, and nothing is written to ``--outdir`` then.

:func:`build_converted_model` builds the converted model in memory, without writing a directory
(``espnet_ils.targets.label_models`` loads fairseq HuBERT checkpoints as k-means label models that way).
"""

import argparse
import ast
import logging
import pickle
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import torch
from espnet2.tasks.asr import ASRTask
from espnet2.utils.yaml_no_alias_safe_dump import yaml_no_alias_safe_dump

from espnet_ils.converters import MASK_OPTIONS
from espnet_ils.data.labels import cluster_token_list
from espnet_ils.data.staging import check_new_directory, staged_directory
from espnet_ils.train.registration import ENCODER_NAME, FRONTEND_NAME, LOSS_NAME, PREENCODER_NAME
from espnet_ils.train.tasks import UNK, ILSSSLTask

logger = logging.getLogger(__name__)

PRETRAINED = "ils_hubert"
HUBERT = "hubert"
FINE_TUNED = "hubert_ctc"

CONFIG_FILE = "config.yaml"
WEIGHTS_FILE = "model.pth"
TOKEN_LIST_FILE = "tokens.txt"

#: fairseq's ``Dictionary`` puts ``<s> <pad> </s> <unk>`` before the symbols of every label set.
NUM_SPECIAL_ROWS = 4
#: ESPnet's names for those rows in a CTC token list (row 0, ``<s>``, is fairseq's CTC blank).
CTC_SPECIAL_TOKENS = ("<blank>", "<pad>", "<sos/eos>", UNK)
FAIRSEQ_WORD_BOUNDARY = "|"
ESPNET_SPACE = "<space>"

#: Keys of a fine-tuned checkpoint that hold the wrapped ``ils_hubert`` model.
FINE_TUNED_PREFIX = "w2v_encoder.w2v_model."
#: The ESPnet SSL model's step counter: a buffer of ours that no checkpoint key maps to.
MODEL_OWNED_KEYS = frozenset({"global_step"})

_BLOCK = r"encoder\.layers\.(\d+)\."


@dataclass(frozen=True)
class KeyFamily:
    """One family of checkpoint keys and the ESPnet key each one becomes.

    Attributes:
        pattern: Regular expression that fully matches the fairseq key (within ``ils_hubert``).
        target: ``re`` replacement template of our key in the ESPnet model.
    """

    pattern: str
    target: str


#: Encoder keys, shared by pretrained and fine-tuned checkpoints (old -> new in each comment).
ENCODER_FAMILIES: Tuple[KeyFamily, ...] = (
    # feature_extractor.conv_layers.J.0.{weight,bias} -> frontend.layers.J.conv.{weight,bias}
    KeyFamily(
        r"feature_extractor\.conv_layers\.(\d+)\.0\.(weight|bias)", r"frontend.layers.\1.conv.\2"
    ),
    # layer_norm.{weight,bias} (over the conv channels) -> preencoder.layer_norm.{weight,bias}
    KeyFamily(r"layer_norm\.(weight|bias)", r"preencoder.layer_norm.\1"),
    # post_extract_proj.{weight,bias} -> preencoder.linear.{weight,bias}
    KeyFamily(r"post_extract_proj\.(weight|bias)", r"preencoder.linear.\1"),
    # encoder.pos_conv.0.bias -> encoder.pos_conv.conv.bias
    KeyFamily(r"encoder\.pos_conv\.0\.bias", "encoder.pos_conv.conv.bias"),
    # weight-norm magnitude g (1, 1, K):
    # encoder.pos_conv.0.{weight_g,parametrizations.weight.original0}
    #   -> encoder.pos_conv.conv.parametrizations.weight.original0
    KeyFamily(
        r"encoder\.pos_conv\.0\.(?:weight_g|parametrizations\.weight\.original0)",
        "encoder.pos_conv.conv.parametrizations.weight.original0",
    ),
    # weight-norm direction v (D, D / groups, K):
    # encoder.pos_conv.0.{weight_v,parametrizations.weight.original1}
    #   -> encoder.pos_conv.conv.parametrizations.weight.original1
    KeyFamily(
        r"encoder\.pos_conv\.0\.(?:weight_v|parametrizations\.weight\.original1)",
        "encoder.pos_conv.conv.parametrizations.weight.original1",
    ),
    # the bucket table lives in layer 0 only and serves every layer (num_buckets, H):
    # encoder.layers.0.self_attn.relative_attention_bias.weight -> encoder.relative_bias.embedding.weight
    KeyFamily(
        r"encoder\.layers\.0\.self_attn\.relative_attention_bias\.weight",
        "encoder.relative_bias.embedding.weight",
    ),
    # encoder.layers.I.self_attn.{q,k,v,out}_proj.{weight,bias}
    #   -> encoder.encoders.I.self_attn.{q,k,v,out}_proj.{weight,bias}   (k_proj has a bias in both)
    KeyFamily(
        _BLOCK + r"self_attn\.((?:q|k|v|out)_proj\.(?:weight|bias))",
        r"encoder.encoders.\1.self_attn.\2",
    ),
    # encoder.layers.I.{self_attn_layer_norm,fc1,fc2,final_layer_norm}.{weight,bias}
    #   -> encoder.encoders.I.{self_attn_layer_norm,fc1,fc2,final_layer_norm}.{weight,bias}
    KeyFamily(
        _BLOCK + r"((?:self_attn_layer_norm|fc1|fc2|final_layer_norm)\.(?:weight|bias))",
        r"encoder.encoders.\1.\2",
    ),
)

#: Conv-block norms by ``extractor_mode`` (our ``norm_mode``; old -> new in each comment).
CONV_NORM_FAMILIES: Dict[str, KeyFamily] = {
    # GroupNorm of block 0 (extractor_mode default):
    # feature_extractor.conv_layers.0.2.{weight,bias} -> frontend.layers.0.layer_norm.{weight,bias}
    "group_norm": KeyFamily(
        r"feature_extractor\.conv_layers\.(0)\.2\.(weight|bias)",
        r"frontend.layers.\1.layer_norm.\2",
    ),
    # LayerNorm of every block (extractor_mode layer_norm):
    # feature_extractor.conv_layers.J.2.1.{weight,bias} -> frontend.layers.J.layer_norm.{weight,bias}
    "layer_norm": KeyFamily(
        r"feature_extractor\.conv_layers\.(\d+)\.2\.1\.(weight|bias)",
        r"frontend.layers.\1.layer_norm.\2",
    ),
}

#: Post-LN only (BASE): the LayerNorm before block 1.
#: encoder.layer_norm.{weight,bias} -> encoder.layer_norm.{weight,bias}
POST_LN_FAMILY = KeyFamily(r"encoder\.layer_norm\.(weight|bias)", r"encoder.layer_norm.\1")

#: Pretrained checkpoints only: mask embedding and ILS heads (old -> new in each comment).
PRETRAINING_FAMILIES: Tuple[KeyFamily, ...] = (
    # mask_emb (D,) -> util_modules.mask.mask_embedding
    KeyFamily(r"mask_emb", "util_modules.mask.mask_embedding"),
    # separate_label_embeds: final_proj.I.{weight,bias} -> losses.0.heads.I.proj.{weight,bias}
    KeyFamily(r"final_proj\.(\d+)\.(weight|bias)", r"losses.0.heads.\1.proj.\2"),
    # shared head: final_proj.{weight,bias} -> losses.0.heads.0.proj.{weight,bias}
    KeyFamily(r"final_proj\.(weight|bias)", r"losses.0.heads.0.proj.\1"),
    # label_embs_concat[I, 4:] (C, final_dim) -> losses.0.heads.I.codewords; split_label_tables()
    # turns label_embs_concat (L, 4 + C, final_dim) into these per-layer keys first
    KeyFamily(r"label_embs_concat\.(\d+)", r"losses.0.heads.\1.codewords"),
    # pre-LN: post_layer_norm.I.{weight,bias} -> losses.0.input_norms.I.{weight,bias}
    KeyFamily(r"post_layer_norm\.(\d+)\.(weight|bias)", r"losses.0.input_norms.\1.\2"),
)

#: Pretrained HuBERT (``hubert``) only: mask embedding and the one head on block N (old -> new).
HUBERT_FAMILIES: Tuple[KeyFamily, ...] = (
    # mask_emb (D,) -> util_modules.mask.mask_embedding
    KeyFamily(r"mask_emb", "util_modules.mask.mask_embedding"),
    # final_proj.{weight,bias} (final_dim, D) -> losses.0.heads.0.proj.{weight,bias}
    KeyFamily(r"final_proj\.(weight|bias)", r"losses.0.heads.0.proj.\1"),
    # label_embs_concat[4:] (C, final_dim) -> losses.0.heads.0.codewords; hubert_label_table()
    # turns label_embs_concat (4 + C, final_dim) into label_embs_concat.0 first
    KeyFamily(r"label_embs_concat\.0", "losses.0.heads.0.codewords"),
)

#: Pre-LN HuBERT (LARGE): the LayerNorm after block N, applied only to the head's input.
#: encoder.layer_norm.{weight,bias} -> losses.0.input_norms.0.{weight,bias}
HUBERT_PRE_LN_FAMILY = KeyFamily(
    r"encoder\.layer_norm\.(weight|bias)", r"losses.0.input_norms.0.\1"
)

#: Fine-tuned checkpoints only: w2v_encoder.proj.{weight,bias} (V, D) -> ctc.ctc_lo.{weight,bias}
CTC_FAMILY = KeyFamily(r"w2v_encoder\.proj\.(weight|bias)", r"ctc.ctc_lo.\1")

#: Keys consumed without a parameter of ours, with the reason.
DROPPED_FAMILIES: Dict[str, Tuple[Tuple[str, str], ...]] = {
    "pre_ln": (
        (
            r"encoder\.layer_norm\.(weight|bias)",
            "pre-LN encoder.layer_norm is never applied by ILS-SSL (heads use post_layer_norm, "
            "CTC the raw residual stream)",
        ),
    ),
    "fine_tuned": (
        (
            r"mask_emb",
            "fine-tuning mask embedding; ESPnet's ASR model has no mask embedding and inference "
            "never masks",
        ),
        (
            r"post_layer_norm\.(\d+)\.(weight|bias)",
            "pretraining-head LayerNorm kept by remove_pretraining_modules(); the CTC path does "
            "not use it",
        ),
    ),
}


@dataclass
class MappedWeights:
    """Checkpoint weights under our keys.

    Attributes:
        tensors: ESPnet key -> tensor.
        sources: ESPnet key -> the checkpoint key it came from (for error messages).
        dropped: Checkpoint key -> why it has no counterpart.
    """

    tensors: Dict[str, torch.Tensor] = field(default_factory=dict)
    sources: Dict[str, str] = field(default_factory=dict)
    dropped: Dict[str, str] = field(default_factory=dict)


def _listing(items: Sequence[str]) -> str:
    return "\n  " + "\n  ".join(items)


def read_torch_file(path: Path, what: str = "--checkpoint") -> Any:
    """Load a PyTorch file with ``weights_only=True`` (no code from the file is run).

    Args:
        path: The file.
        what: How errors name the file, e.g. the command line option it came from.

    Returns:
        What the file holds (tensors, dicts, lists and plain types only).

    Raises:
        ValueError: The file is missing or unreadable (e.g. truncated), naming it.
    """
    if not path.is_file():
        raise ValueError(f"{what} {path}: no such file")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, pickle.UnpicklingError) as error:
        lines = str(error).splitlines() or [type(error).__name__]
        reason = next((line for line in lines if "Unsupported" in line), lines[0])
        raise ValueError(
            f"{what} {path}: cannot be read as a PyTorch checkpoint (truncated or corrupt "
            "download, not a checkpoint, or Python objects other than tensors and plain types, "
            f"which are not loaded): {reason}"
        ) from error


def is_fairseq_checkpoint(contents: Any) -> bool:
    """Whether a loaded file is a fairseq checkpoint: a ``cfg`` dict with ``model`` and ``task``
    dicts, and a ``model`` state dict."""
    cfg = contents.get("cfg") if isinstance(contents, dict) else None
    return (
        isinstance(cfg, dict)
        and isinstance(cfg.get("model"), dict)
        and isinstance(cfg.get("task"), dict)
        and isinstance(contents.get("model"), dict)
    )


def read_checkpoint(path: Path) -> Dict[str, Any]:
    """Load a fairseq checkpoint with ``weights_only=True`` (no code from the file is run).

    Args:
        path: The ``.pt`` file.

    Returns:
        The checkpoint dict; it has a ``cfg`` dict with ``model`` and ``task`` and a ``model``
        state dict.

    Raises:
        ValueError: The file is missing, unreadable (e.g. truncated) or not a fairseq checkpoint.
    """
    checkpoint = read_torch_file(path)
    if not is_fairseq_checkpoint(checkpoint):
        raise ValueError(
            f"--checkpoint {path}: not a fairseq checkpoint with a 'cfg' (model, task) and a "
            f"'model' state dict; only the original ILS-SSL checkpoints ({PRETRAINED}, "
            f"{FINE_TUNED}) and pretrained HuBERT ({HUBERT}) convert"
        )
    return checkpoint


def _require(section: Mapping[str, Any], name: str, where: str) -> Any:
    if name not in section:
        raise ValueError(
            f"{where}['{name}'] is missing: not a fairseq ILS-SSL (ils_hubert) or HuBERT "
            "(hubert) configuration"
        )
    return section[name]


def _check(section: Mapping[str, Any], name: str, allowed: Sequence[Any], where: str) -> None:
    value = section.get(name, allowed[0])
    if value not in allowed:
        raise ValueError(
            f"{where}['{name}'] = {value!r}: only {list(allowed)} can be converted "
            "(our ILS-SSL modules do not implement the other variant)"
        )


_MAX_REPEAT = 100  # largest "[...] * n" accepted in a layer string


def _eval_layer_spec(node: ast.AST) -> Any:
    """Evaluate literals, ``+`` and ``*`` only (fairseq's layer strings); nothing else runs."""
    if isinstance(node, ast.Expression):
        return _eval_layer_spec(node.body)
    if isinstance(node, (ast.List, ast.Tuple)):
        return [_eval_layer_spec(element) for element in node.elts]
    if isinstance(node, ast.Constant) and isinstance(node.value, int):
        return node.value
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        return _eval_layer_spec(node.left) + _eval_layer_spec(node.right)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mult):
        items, count = _eval_layer_spec(node.left), _eval_layer_spec(node.right)
        if isinstance(items, list) and isinstance(count, int) and 0 <= count <= _MAX_REPEAT:
            return items * count
    raise ValueError(f"unsupported element {ast.unparse(node)!r}")


def parse_conv_feature_layers(text: str) -> List[List[int]]:
    """Parse fairseq's ``conv_feature_layers`` without ``eval``.

    Args:
        text: e.g. ``"[(512,10,5)] + [(512,3,2)] * 4 + [(512,2,2)] * 2"``; only lists, tuples,
            integers, ``+`` and ``*`` are accepted (``ast.literal_eval`` has no ``*``).

    Returns:
        ``[[channels, kernel, stride], ...]``, one entry per conv block.

    Raises:
        ValueError: Anything else, naming the string.
    """
    try:
        layers = _eval_layer_spec(ast.parse(text, mode="eval"))
    except (SyntaxError, ValueError, TypeError) as error:
        raise ValueError(
            f"cfg['model']['conv_feature_layers'] = {text!r} is not a list of "
            f"(channels, kernel, stride) tuples: {error}"
        ) from error
    if not (
        isinstance(layers, list)
        and layers
        and all(isinstance(s, list) and len(s) == 3 and all(v > 0 for v in s) for s in layers)
    ):
        raise ValueError(
            f"cfg['model']['conv_feature_layers'] = {text!r} is not a non-empty list of "
            "positive (channels, kernel, stride) triples"
        )
    return layers


def parse_predict_layers(text: str, num_blocks: int) -> List[int]:
    """Parse ``predict_layers`` (a string such as ``"[4,12]"``) into 1-based supervised blocks.

    Args:
        text: The cfg value.
        num_blocks: ``encoder_layers``.

    Returns:
        Strictly increasing 1-based block indices, all within ``1..num_blocks``.

    Raises:
        ValueError: Not such a list.
    """
    try:
        layers = ast.literal_eval(text)
    except (SyntaxError, ValueError) as error:
        raise ValueError(
            f"cfg['model']['predict_layers'] = {text!r} is not a list literal: {error}"
        ) from error
    if not (
        isinstance(layers, list)
        and layers
        and all(isinstance(layer, int) and 1 <= layer <= num_blocks for layer in layers)
        and layers == sorted(set(layers))
    ):
        raise ValueError(
            f"cfg['model']['predict_layers'] = {text!r}: expected increasing 1-based blocks in "
            f"1..{num_blocks} (encoder_layers), e.g. '[4,12]'"
        )
    return layers


#: fairseq ``extractor_mode`` -> our frontend ``norm_mode``.
_NORM_MODES = {"default": "group_norm", "layer_norm": "layer_norm"}


def encoder_confs(
    model_cfg: Mapping[str, Any], task_cfg: Mapping[str, Any], normalize: bool
) -> Dict[str, Dict[str, Any]]:
    """Constructor arguments of our frontend, preencoder and encoder for an ``ils_hubert`` or
    ``hubert`` cfg.

    Args:
        model_cfg: ``cfg['model']`` of the (wrapped) ``ils_hubert`` model, or of a ``hubert``.
        task_cfg: Its ``cfg['task']`` (``sample_rate``).
        normalize: Per-utterance waveform normalisation (fairseq ``task.normalize``).

    Returns:
        ``{"frontend_conf": ..., "preencoder_conf": ..., "encoder_conf": ...}`` in YAML types.

    Raises:
        ValueError: A cfg value our modules cannot reproduce.
    """
    where = "cfg['model']"
    _check(model_cfg, "activation_fn", ["gelu"], where)
    _check(model_cfg, "extractor_mode", list(_NORM_MODES), where)
    # Options of newer fairseq versions (conformer blocks, batch-norm or stacked positional convs)
    _check(model_cfg, "layer_type", ["transformer"], where)
    _check(model_cfg, "conv_pos_batch_norm", [False], where)
    _check(model_cfg, "pos_conv_depth", [1], where)
    shapes = parse_conv_feature_layers(_require(model_cfg, "conv_feature_layers", where))
    embed_dim = _require(model_cfg, "encoder_embed_dim", where)
    if shapes[-1][0] == embed_dim:
        raise ValueError(
            f"{where}: conv width {shapes[-1][0]} equals encoder_embed_dim, so the checkpoint has "
            "no post_extract_proj; our feature_projection preencoder always projects"
        )
    return {
        "frontend_conf": {
            "norm_mode": _NORM_MODES[model_cfg.get("extractor_mode", "default")],
            "conv_mode": "standard",
            "bias": bool(_require(model_cfg, "conv_bias", where)),
            "shapes": shapes,
            "fs": int(_require(task_cfg, "sample_rate", "cfg['task']")),
            "normalize_audio": bool(normalize),
            "feature_grad_mult": float(_require(model_cfg, "feature_grad_mult", where)),
        },
        "preencoder_conf": {
            "input_size": shapes[-1][0],
            "output_size": embed_dim,
            "dropout_rate": float(_require(model_cfg, "dropout_input", where)),
        },
        "encoder_conf": {
            "output_size": embed_dim,
            "attention_heads": _require(model_cfg, "encoder_attention_heads", where),
            "linear_units": _require(model_cfg, "encoder_ffn_embed_dim", where),
            "num_blocks": _require(model_cfg, "encoder_layers", where),
            "dropout_rate": float(_require(model_cfg, "dropout", where)),
            "attention_dropout_rate": float(_require(model_cfg, "attention_dropout", where)),
            "activation_dropout_rate": float(_require(model_cfg, "activation_dropout", where)),
            "layer_drop_rate": float(_require(model_cfg, "encoder_layerdrop", where)),
            "normalize_before": bool(_require(model_cfg, "layer_norm_first", where)),
            "conv_pos_kernel": _require(model_cfg, "conv_pos", where),
            "conv_pos_groups": _require(model_cfg, "conv_pos_groups", where),
            "relative_position_bias": bool(model_cfg.get("relative_position_embedding", False)),
            "num_buckets": model_cfg.get("num_buckets", 320),
            "max_distance": model_cfg.get("max_distance", 800),
        },
    }


def _supervised_layers(model_cfg: Mapping[str, Any]) -> Tuple[List[int], bool]:
    """1-based supervised blocks and whether they share one head, by the cfg's model name.

    ``ils_hubert``: ``predict_layers``, shared unless ``separate_label_embeds``. ``hubert``: the
    top block only (``encoder_layers``), with its one head.
    """
    where = "cfg['model']"
    num_blocks = _require(model_cfg, "encoder_layers", where)
    if model_cfg.get("_name") == HUBERT:
        return [num_blocks], False
    layers = parse_predict_layers(_require(model_cfg, "predict_layers", where), num_blocks)
    return layers, not model_cfg.get("separate_label_embeds", False)


def ssl_config(cfg: Mapping[str, Any], num_classes: int) -> Dict[str, Any]:
    """The ``ILSSSLTask`` config of a pretrained ``ils_hubert`` or ``hubert`` checkpoint.

    Args:
        cfg: The checkpoint's ``cfg``.
        num_classes: k-means clusters C (label table rows minus the 4 special rows).

    Returns:
        Config keys in YAML types (the task parser fills in the rest).

    Raises:
        ValueError: A cfg value the ILS loss cannot reproduce.
    """
    model_cfg, task_cfg, criterion_cfg = cfg["model"], cfg["task"], cfg.get("criterion") or {}
    where = "cfg['model']"
    for name in ("target_glu", "separate_layer_targets", "weighted_sum"):
        _check(model_cfg, name, [False], where)
    labels = task_cfg.get("labels", ["km"])
    if len(labels) != 1:
        raise ValueError(
            f"cfg['task']['labels'] = {labels}: one label set per model is supported (the ILS "
            "loss has one codeword table per supervised layer)"
        )
    layers, share_heads = _supervised_layers(model_cfg)
    loss_weights = criterion_cfg.get("loss_weights") or [0.0]
    if len(loss_weights) != 1:
        raise ValueError(
            f"cfg['criterion']['loss_weights'] = {loss_weights}: expected one weight, for the "
            "feature penalty"
        )
    final_dim = _require(model_cfg, "final_dim", where)
    # HuBERT's skip_masked / skip_nomask leave that term out of the loss
    masked_weight = float(criterion_cfg.get("pred_masked_weight", 1.0))
    unmasked_weight = float(criterion_cfg.get("pred_nomask_weight", 0.0))
    return {
        "frontend": FRONTEND_NAME,
        "preencoder": PREENCODER_NAME,
        "encoder": ENCODER_NAME,
        "normalize": None,
        **encoder_confs(model_cfg, task_cfg, bool(_require(task_cfg, "normalize", "cfg['task']"))),
        "loss": [
            {
                "name": LOSS_NAME,
                "conf": {
                    "num_classes": num_classes,
                    "layers": layers,
                    "final_dim": final_dim if final_dim > 0 else model_cfg["encoder_embed_dim"],
                    "logit_temp": float(_require(model_cfg, "logit_temp", where)),
                    "share_heads": share_heads,
                    "layer_norm_inputs": bool(model_cfg["layer_norm_first"]),
                    "masked_weight": 0.0 if model_cfg.get("skip_masked") else masked_weight,
                    "unmasked_weight": 0.0 if model_cfg.get("skip_nomask") else unmasked_weight,
                    "feature_penalty_weight": float(loss_weights[0]),
                },
            }
        ],
        "util": [
            {
                "name": "mask",
                "conf": {name: model_cfg[name] for name in MASK_OPTIONS if name in model_cfg},
            }
        ],
    }


def asr_config(cfg: Mapping[str, Any]) -> Dict[str, Any]:
    """The ``ASRTask`` config (CTC only) of a fine-tuned ``hubert_ctc`` checkpoint.

    Args:
        cfg: The checkpoint's ``cfg``; ``cfg['model']['w2v_args']`` holds the wrapped
            ``ils_hubert`` cfg with fairseq's fine-tuning overrides (dropouts, layerdrop,
            ``feature_grad_mult``) already applied.

    Returns:
        Config keys in YAML types (the task parser fills in the rest).

    Raises:
        ValueError: The wrapped model is not ``ils_hubert``, or the two ``normalize`` disagree.
    """
    model_cfg = cfg["model"]
    w2v_args = _require(model_cfg, "w2v_args", "cfg['model']")
    if not isinstance(w2v_args, dict) or (w2v_args.get("model") or {}).get("_name") != PRETRAINED:
        raise ValueError(
            "cfg['model']['w2v_args']['model']['_name'] must be 'ils_hubert': only fine-tuned "
            "ILS-SSL models convert"
        )
    normalize = bool(_require(model_cfg, "normalize", "cfg['model']"))
    wrapped_normalize = bool(w2v_args["task"].get("normalize", False))
    if normalize != wrapped_normalize:
        raise ValueError(
            f"cfg['model']['normalize'] = {normalize} but cfg['model']['w2v_args']['task']"
            f"['normalize'] = {wrapped_normalize}: the original refuses this checkpoint too"
        )
    return {
        "frontend": FRONTEND_NAME,
        "preencoder": PREENCODER_NAME,
        "encoder": ENCODER_NAME,
        "normalize": None,
        "specaug": None,
        **encoder_confs(w2v_args["model"], w2v_args["task"], normalize),
        "ctc_conf": {"dropout_rate": float(model_cfg.get("final_dropout", 0.0))},
        "model_conf": {"ctc_weight": 1.0},
        "token_type": "char",
    }


def split_label_tables(state_dict: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """Replace ``label_embs_concat`` (L, 4 + C, F) by per-layer keys ``label_embs_concat.I`` (C, F).

    The 4 fairseq special rows of every table are dropped: token id == cluster id afterwards.

    Args:
        state_dict: A pretrained checkpoint's state dict (not modified).

    Returns:
        The state dict with the split tables.

    Raises:
        ValueError: ``label_embs_concat`` is missing or has no cluster rows.
    """
    tables = state_dict.get("label_embs_concat")
    if tables is None or tables.ndim != 3 or tables.size(1) <= NUM_SPECIAL_ROWS:
        shape = None if tables is None else tuple(tables.shape)
        raise ValueError(
            f"label_embs_concat has shape {shape}: expected (layers, {NUM_SPECIAL_ROWS} special "
            "rows + clusters, final_dim)"
        )
    split = {key: value for key, value in state_dict.items() if key != "label_embs_concat"}
    for index, table in enumerate(tables):
        split[f"label_embs_concat.{index}"] = table[NUM_SPECIAL_ROWS:]
    return split


def hubert_label_table(state_dict: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """Replace HuBERT's ``label_embs_concat`` (4 + C, F) by ``label_embs_concat.0`` (C, F).

    HuBERT concatenates the tables of its label sets along the rows; with the one label set that
    converts, it is one table with the 4 fairseq special rows first, which are dropped as in
    :func:`split_label_tables`.

    Args:
        state_dict: A ``hubert`` checkpoint's state dict (not modified).

    Returns:
        The state dict with the table under ``label_embs_concat.0``.

    Raises:
        ValueError: ``label_embs_concat`` is missing (a model saved for fine-tuning only) or is
            not 2-D with cluster rows.
    """
    table = state_dict.get("label_embs_concat")
    if table is None or table.ndim != 2 or table.size(0) <= NUM_SPECIAL_ROWS:
        shape = None if table is None else tuple(table.shape)
        raise ValueError(
            f"label_embs_concat has shape {shape}: a pretrained HuBERT has ({NUM_SPECIAL_ROWS} "
            "special rows + clusters, final_dim)"
        )
    return split_label_tables({**state_dict, "label_embs_concat": table[None]})  # (1, 4 + C, F)


@dataclass(frozen=True)
class Layout:
    """What decides which keys a checkpoint has.

    Attributes:
        kind: :data:`PRETRAINED`, :data:`HUBERT` or :data:`FINE_TUNED`.
        norm_mode: Conv-block norms, ``group_norm`` (extractor_mode default) or ``layer_norm``.
        pre_ln: ``layer_norm_first``.
    """

    kind: str
    norm_mode: str
    pre_ln: bool


def key_families(layout: Layout) -> Tuple[List[KeyFamily], List[Tuple[str, str]]]:
    """The key families and the dropped families ``(pattern, reason)`` of a checkpoint layout.

    Patterns match whole checkpoint keys (fine-tuned ones with the ``w2v_encoder.w2v_model.``
    prefix).
    """
    encoder = list(ENCODER_FAMILIES) + [CONV_NORM_FAMILIES[layout.norm_mode]]
    if layout.kind == HUBERT:  # pre-LN: its encoder.layer_norm normalises the head's input
        return encoder + [HUBERT_PRE_LN_FAMILY if layout.pre_ln else POST_LN_FAMILY] + list(
            HUBERT_FAMILIES
        ), []
    encoder += [] if layout.pre_ln else [POST_LN_FAMILY]
    dropped = list(DROPPED_FAMILIES["pre_ln"]) if layout.pre_ln else []
    if layout.kind == PRETRAINED:
        return encoder + list(PRETRAINING_FAMILIES), dropped
    prefix = re.escape(FINE_TUNED_PREFIX)
    families = [KeyFamily(prefix + family.pattern, family.target) for family in encoder]
    dropped = [(prefix + pattern, reason) for pattern, reason in dropped]
    dropped += [(prefix + pattern, reason) for pattern, reason in DROPPED_FAMILIES["fine_tuned"]]
    return families + [CTC_FAMILY], dropped


def map_keys(state_dict: Mapping[str, torch.Tensor], layout: Layout) -> MappedWeights:
    """Rename every checkpoint key to our key, or drop it for its documented reason.

    Args:
        state_dict: The checkpoint's ``model`` (label tables already split for ``ils_hubert``
            and ``hubert``).
        layout: From the checkpoint's cfg.

    Returns:
        The mapped weights (tensors are shared, not copied).

    Raises:
        ValueError: Keys that match no family, naming all of them.
    """
    families, dropped_families = key_families(layout)
    compiled = [(re.compile(family.pattern), family.target) for family in families]
    compiled_dropped = [(re.compile(pattern), reason) for pattern, reason in dropped_families]
    mapped = MappedWeights()
    unknown = []
    for key, value in state_dict.items():
        matches = [pattern.fullmatch(key) for pattern, _ in compiled]
        target = next((m.expand(new) for m, (_, new) in zip(matches, compiled) if m), None)
        reason = next((why for pattern, why in compiled_dropped if pattern.fullmatch(key)), None)
        if target is not None:
            mapped.tensors[target] = value
            mapped.sources[target] = key
        elif reason is not None:
            mapped.dropped[key] = reason
        else:
            unknown.append(key)
    if unknown:
        raise ValueError(
            f"Checkpoint keys not in the ILS-SSL layout that the cfg describes ({layout}); "
            f"either the cfg contradicts the weights or the model is another variant:"
            f"{_listing(sorted(unknown))}"
        )
    return mapped


def load_mapped(model: torch.nn.Module, mapped: MappedWeights) -> None:
    """Load mapped weights into a model built from the checkpoint's cfg: every key, every shape.

    Args:
        model: The ESPnet model built from the converted config.
        mapped: Output of :func:`map_keys`.

    Raises:
        ValueError: Parameters no checkpoint key fills, checkpoint keys the model lacks, and
            shape mismatches; all of them mean the cfg contradicts the weights.
    """
    expected = model.state_dict()
    problems = [
        f"missing {key}: no checkpoint key maps to it"
        for key in sorted(set(expected) - set(mapped.tensors) - MODEL_OWNED_KEYS)
    ]
    problems += [
        f"unexpected {mapped.sources[key]} -> {key}: the model built from the cfg has no such "
        "parameter"
        for key in sorted(set(mapped.tensors) - set(expected))
    ]
    problems += [
        f"shape mismatch {mapped.sources[key]} {tuple(mapped.tensors[key].shape)} -> {key}: the "
        f"cfg gives {tuple(expected[key].shape)}"
        for key in sorted(set(mapped.tensors) & set(expected))
        if mapped.tensors[key].shape != expected[key].shape
    ]
    if problems:
        raise ValueError(
            "The checkpoint's weights contradict its own cfg (layer counts, widths, "
            f"extractor_mode, layer_norm_first, predict_layers, ...):{_listing(problems)}"
        )
    owned = {key: expected[key] for key in MODEL_OWNED_KEYS if key in expected}
    model.load_state_dict({**owned, **mapped.tensors}, strict=True)


def letter_token_list(dictionary: Path, num_rows: int) -> List[str]:
    """ESPnet token list of a fairseq CTC head: same rows, same order, ESPnet's names.

    Args:
        dictionary: fairseq ``dict.ltr.txt`` (``SYMBOL COUNT`` per line, in row order from row 4).
        num_rows: Rows of the CTC head (``w2v_encoder.proj.weight.size(0)``).

    Returns:
        ``<blank> <pad> <sos/eos> <unk>``, then the dictionary's symbols with ``|`` as ``<space>``.

    Raises:
        ValueError: Missing file, malformed or duplicate symbols, or a row count other than
            ``num_rows``.
    """
    if not dictionary.is_file():
        raise ValueError(
            f"--dict {dictionary}: no such file; a fine-tuned checkpoint does not store its "
            "letter dictionary, pass the dict.ltr.txt it was trained with"
        )
    symbols = []
    for number, line in enumerate(dictionary.read_text(encoding="utf-8").splitlines(), start=1):
        fields = line.split()
        if len(fields) not in (2, 3) or not fields[1].lstrip("-").isdigit():
            raise ValueError(f"{dictionary}:{number}: expected 'SYMBOL COUNT', got {line!r}")
        symbols.append(ESPNET_SPACE if fields[0] == FAIRSEQ_WORD_BOUNDARY else fields[0])
    tokens = list(CTC_SPECIAL_TOKENS) + symbols
    duplicates = sorted({token for token in tokens if tokens.count(token) > 1})
    if duplicates:
        raise ValueError(f"{dictionary}: symbols {duplicates} collide with other tokens")
    if len(tokens) != num_rows:
        raise ValueError(
            f"{dictionary}: {len(symbols)} symbols + {NUM_SPECIAL_ROWS} special rows = "
            f"{len(tokens)} tokens, but the CTC head w2v_encoder.proj has {num_rows} rows; pass "
            "the dictionary the model was fine-tuned with"
        )
    return tokens


def build_converted_model(
    task: type, config: Dict[str, Any], tokens: List[str], mapped: MappedWeights
) -> Tuple[torch.nn.Module, argparse.Namespace]:
    """Build the ESPnet model from ``config`` and load the converted weights; nothing is kept on
    disk.

    Args:
        task: ``ILSSSLTask`` or ``ASRTask``.
        config: Config keys (the task parser fills in its defaults).
        tokens: The token list.
        mapped: Output of :func:`map_keys`.

    Returns:
        The model (in training mode, on the CPU) and the task's full arguments, as ESPnet's
        training writes them to ``config.yaml``.

    Raises:
        ValueError: From :func:`load_mapped`.
    """
    with tempfile.TemporaryDirectory() as workdir:
        draft = Path(workdir) / "draft.yaml"
        with draft.open("w", encoding="utf-8") as f:
            yaml_no_alias_safe_dump(config, f, indent=4, sort_keys=False)
        args = task.get_parser().parse_args(["--config", str(draft)])
    args.config = None
    args.token_list = tokens
    model = task.build_model(args)
    load_mapped(model, mapped)
    return model, args


def write_model_dir(
    staging: Path,
    task: type,
    config: Dict[str, Any],
    tokens: List[str],
    mapped: MappedWeights,
) -> None:
    """Build the ESPnet model from ``config``, load the weights and write the three files.

    Args:
        staging: Empty directory to write into.
        task: ``ILSSSLTask`` or ``ASRTask``.
        config: Config keys (the task parser fills in its defaults).
        tokens: The token list.
        mapped: Output of :func:`map_keys`.
    """
    model, args = build_converted_model(task, config, tokens, mapped)
    with (staging / CONFIG_FILE).open("w", encoding="utf-8") as f:
        yaml_no_alias_safe_dump(vars(args), f, indent=4, sort_keys=False)
    torch.save(model.state_dict(), staging / WEIGHTS_FILE)
    (staging / TOKEN_LIST_FILE).write_text("".join(f"{t}\n" for t in tokens), encoding="utf-8")


def prepare(
    checkpoint: Dict[str, Any], dictionary: Optional[Path]
) -> Tuple[type, Dict[str, Any], List[str], MappedWeights]:
    """Everything needed to write the model directory, validated; nothing is written.

    Args:
        checkpoint: Output of :func:`read_checkpoint`.
        dictionary: fairseq letter dictionary (fine-tuned checkpoints only).

    Returns:
        ``(task, config, tokens, mapped)`` for :func:`write_model_dir`.

    Raises:
        ValueError: Unsupported model, cfg values or keys.
    """
    cfg, state_dict = checkpoint["cfg"], checkpoint["model"]
    kind = cfg["model"].get("_name")
    if kind in (PRETRAINED, HUBERT):
        split = split_label_tables if kind == PRETRAINED else hubert_label_table
        state_dict = split(state_dict)
        num_classes = state_dict["label_embs_concat.0"].size(0)
        config = ssl_config(cfg, num_classes)
        task, tokens = ILSSSLTask, cluster_token_list(num_classes)
    elif kind == FINE_TUNED:
        config = asr_config(cfg)
        head = state_dict.get("w2v_encoder.proj.weight")
        if head is None:
            raise ValueError(
                "w2v_encoder.proj.weight is missing: a hubert_ctc model has a CTC head"
            )
        if dictionary is None:
            raise ValueError("--dict is required for a fine-tuned (hubert_ctc) checkpoint")
        task, tokens = ASRTask, letter_token_list(dictionary, head.size(0))
    else:
        raise ValueError(
            f"cfg['model']['_name'] = {kind!r}: only {PRETRAINED!r} (pretrained ILS-SSL), "
            f"{HUBERT!r} (pretrained HuBERT) and {FINE_TUNED!r} (fine-tuned ILS-SSL) "
            "checkpoints convert"
        )
    layout = Layout(
        kind, config["frontend_conf"]["norm_mode"], config["encoder_conf"]["normalize_before"]
    )
    mapped = map_keys(state_dict, layout)
    for key, reason in sorted(mapped.dropped.items()):
        logger.info("dropped %s: %s", key, reason)
    logger.info(
        "%s checkpoint: %d keys mapped, %d dropped", kind, len(mapped.tensors), len(mapped.dropped)
    )
    return task, config, tokens, mapped


def default_dictionary(checkpoint_path: Path, checkpoint: Dict[str, Any]) -> Optional[Path]:
    """``dict.<label>.txt`` next to a fine-tuned checkpoint (fairseq's name), else None."""
    if checkpoint["cfg"]["model"].get("_name") != FINE_TUNED:
        return None
    labels = checkpoint["cfg"]["task"].get("labels") or ["ltr"]
    return checkpoint_path.parent / f"dict.{labels[0]}.txt"


def convert_unispeech_checkpoint(
    checkpoint_path: Path, outdir: Path, dictionary: Optional[Path] = None
) -> Path:
    """Convert an original ILS-SSL or a pretrained HuBERT checkpoint into an ESPnet model directory.

    Args:
        checkpoint_path: ``ils_hubert`` (pretrained), ``hubert`` (pretrained HuBERT) or
            ``hubert_ctc`` (fine-tuned ILS-SSL) ``.pt``.
        outdir: Directory to create; it must not exist or be empty. Written only when the whole
            conversion succeeded (files go to a temporary directory first, renamed at the end).
        dictionary: fairseq letter dictionary of a fine-tuned checkpoint; default
            ``dict.<label>.txt`` next to the checkpoint.

    Returns:
        ``outdir``, holding ``config.yaml``, ``model.pth`` and ``tokens.txt``.

    Raises:
        ValueError: Unreadable or unsupported checkpoint, or weights that contradict the cfg.
    """
    check_new_directory(outdir, "--outdir")
    checkpoint = read_checkpoint(checkpoint_path)
    if dictionary is None:
        dictionary = default_dictionary(checkpoint_path, checkpoint)
    task, config, tokens, mapped = prepare(checkpoint, dictionary)
    with staged_directory(outdir) as staging:
        write_model_dir(staging, task, config, tokens, mapped)
    logger.info("wrote %s (%s for %s)", outdir, CONFIG_FILE, task.__name__)
    return outdir

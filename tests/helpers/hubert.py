"""Tiny HuBERT models: torchaudio's ``wav2vec2_model`` arguments (``tiny_torchaudio_kwargs``) and a
fairseq checkpoint of the same sizes (``fairseq_hubert_checkpoint``); ``perturb_`` moves a
torchaudio HuBERT's weights off their defaults so that a mapping mistake shows."""

from typing import Dict, List

import torch
from torch import nn

from helpers.corpus import NUM_CLASSES

# A tiny fairseq HuBERT checkpoint (a ``hubert`` model as hubert_base_ls960.pt, at tiny sizes): its
# keys written out from fairseq's names, its weights those of a torchaudio model of the same sizes.
HUBERT_CONV = [(16, 10, 5)] + [(16, 3, 2)] * 4 + [(16, 2, 2)] * 2
HUBERT_WIDTH = 32
HUBERT_BLOCKS = 3
HUBERT_FINAL_DIM = 8


def tiny_torchaudio_kwargs(pre_ln: bool = False) -> Dict:
    """``wav2vec2_model`` arguments of a tiny HuBERT (BASE-like, or LARGE-like when pre-LN)."""
    return dict(
        extractor_mode="layer_norm" if pre_ln else "group_norm",
        extractor_conv_layer_config=HUBERT_CONV,
        extractor_conv_bias=False,
        encoder_embed_dim=HUBERT_WIDTH,
        encoder_projection_dropout=0.1,
        encoder_pos_conv_kernel=8,
        encoder_pos_conv_groups=4,
        encoder_num_layers=HUBERT_BLOCKS,
        encoder_num_heads=4,
        encoder_attention_dropout=0.1,
        encoder_ff_interm_features=64,
        encoder_ff_interm_dropout=0.0,
        encoder_dropout=0.1,
        encoder_layer_norm_first=pre_ln,
        encoder_layer_drop=0.05,
        aux_num_out=None,
    )


def fairseq_encoder_keys(pre_ln: bool) -> List[str]:
    """fairseq HubertModel's encoder keys for the tiny sizes (fairseq's names, written out)."""
    params = ("weight", "bias")
    keys = [f"feature_extractor.conv_layers.{j}.0.weight" for j in range(len(HUBERT_CONV))]
    if pre_ln:  # extractor_mode layer_norm: a LayerNorm in every conv block
        keys += [
            f"feature_extractor.conv_layers.{j}.2.1.{p}"
            for j in range(len(HUBERT_CONV))
            for p in params
        ]
    else:  # extractor_mode default: a GroupNorm in block 0
        keys += [f"feature_extractor.conv_layers.0.2.{p}" for p in params]
    keys += [f"{module}.{p}" for module in ("layer_norm", "post_extract_proj") for p in params]
    keys += [f"encoder.pos_conv.0.{p}" for p in ("bias", "weight_g", "weight_v")]
    keys += [f"encoder.layer_norm.{p}" for p in params]
    modules = [f"self_attn.{name}_proj" for name in ("k", "v", "q", "out")]
    modules += ["self_attn_layer_norm", "fc1", "fc2", "final_layer_norm"]
    keys += [
        f"encoder.layers.{i}.{module}.{p}"
        for i in range(HUBERT_BLOCKS)
        for module in modules
        for p in params
    ]
    return keys


def torchaudio_name(key: str) -> str:
    """torchaudio's key for a fairseq key, as its state dict names weight-norm tensors."""
    from torchaudio.models.wav2vec2.utils.import_fairseq import _map_key

    key = _map_key(key)
    return key.replace("weight_g", "parametrizations.weight.original0").replace(
        "weight_v", "parametrizations.weight.original1"
    )


def hubert_cfg(pre_ln: bool) -> Dict:
    """The cfg of a fairseq ``hubert`` checkpoint of the tiny sizes (BASE- or LARGE-like)."""
    return {
        "_name": None,
        "model": {
            "_name": "hubert",
            "label_rate": 50.0,
            "extractor_mode": "layer_norm" if pre_ln else "default",
            "encoder_layers": HUBERT_BLOCKS,
            "encoder_embed_dim": HUBERT_WIDTH,
            "encoder_ffn_embed_dim": 64,
            "encoder_attention_heads": 4,
            "activation_fn": "gelu",
            "layer_type": "transformer",
            "dropout": 0.1,
            "attention_dropout": 0.1,
            "activation_dropout": 0.0,
            "encoder_layerdrop": 0.05,
            "dropout_input": 0.1,
            "dropout_features": 0.1,
            "final_dim": HUBERT_FINAL_DIM,
            "untie_final_proj": False,
            "layer_norm_first": pre_ln,
            "conv_feature_layers": "[(16,10,5)] + [(16,3,2)] * 4 + [(16,2,2)] * 2",
            "conv_bias": False,
            "logit_temp": 0.1,
            "target_glu": False,
            "feature_grad_mult": 0.1,
            "mask_length": 10,
            "mask_prob": 0.8,
            "mask_selection": "static",
            "mask_other": 0.0,
            "no_mask_overlap": False,
            "mask_min_space": 1,
            "mask_channel_length": 10,
            "mask_channel_prob": 0.0,
            "mask_channel_selection": "static",
            "mask_channel_other": 0.0,
            "no_mask_channel_overlap": False,
            "mask_channel_min_space": 1,
            "conv_pos": 8,
            "conv_pos_groups": 4,
            "conv_pos_batch_norm": False,
            "latent_temp": [2.0, 0.5, 0.999995],
            "skip_masked": False,
            "skip_nomask": False,
            "checkpoint_activations": False,
            "required_seq_len_multiple": 2,
        },
        "task": {
            "_name": "hubert_pretraining",
            "labels": ["km"],
            "label_rate": 50.0,
            "sample_rate": 16000,
            "normalize": pre_ln,
            "max_sample_size": 250000,
            "min_sample_size": 32000,
        },
        "criterion": {
            "_name": "hubert",
            "pred_masked_weight": 1.0,
            "pred_nomask_weight": 0.0,
            "loss_weights": [10.0],
        },
    }


def fairseq_hubert_checkpoint(source: Dict[str, torch.Tensor], pre_ln: bool) -> Dict:
    """A tiny fairseq ``hubert`` checkpoint ``{"cfg", "model"}`` with the weights of ``source``
    (the state dict of ``wav2vec2_model(**tiny_torchaudio_kwargs(pre_ln))``) under fairseq's keys,
    plus a random head (``final_proj``, ``label_embs_concat`` over ``NUM_CLASSES`` clusters)."""
    names = {key: torchaudio_name(key) for key in fairseq_encoder_keys(pre_ln)}
    assert sorted(names.values()) == sorted(source), "fairseq keys do not cover torchaudio's"
    state = {key: source[name].clone() for key, name in names.items()}
    generator = torch.Generator().manual_seed(7)
    state["mask_emb"] = torch.rand(HUBERT_WIDTH, generator=generator)
    state["final_proj.weight"] = 0.2 * torch.randn(
        HUBERT_FINAL_DIM, HUBERT_WIDTH, generator=generator
    )
    state["final_proj.bias"] = 0.1 * torch.randn(HUBERT_FINAL_DIM, generator=generator)
    state["label_embs_concat"] = torch.rand(4 + NUM_CLASSES, HUBERT_FINAL_DIM, generator=generator)
    return {"cfg": hubert_cfg(pre_ln), "model": state}


def perturb_(model: nn.Module, seed: int) -> None:
    """Move every norm and bias off its default, sharpen attention, decouple ``g`` from ``||v||``."""
    generator = torch.Generator().manual_seed(seed)

    def normal_(tensor: torch.Tensor, mean: float, std: float) -> None:
        tensor.copy_(mean + std * torch.randn(tensor.shape, generator=generator))

    with torch.no_grad():
        for name, module in model.named_modules():
            if isinstance(module, (nn.LayerNorm, nn.GroupNorm)):
                normal_(module.weight, 1.0, 0.5)
                normal_(module.bias, 0.0, 0.5)
            elif isinstance(module, (nn.Linear, nn.Conv1d)) and module.bias is not None:
                normal_(module.bias, 0.0, 0.1)
            if name.endswith(("attention.q_proj", "attention.k_proj")):
                normal_(module.weight, 0.0, 0.05)  # attention far from uniform
        for name, parameter in model.named_parameters():
            if name.endswith("pos_conv_embed.conv.parametrizations.weight.original0"):
                parameter.mul_(0.5 + torch.rand(parameter.shape, generator=generator))  # g

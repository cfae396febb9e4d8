"""Tiny models: an ILS encoder built directly, a tiny SSL training config (``tiny_config``) and a
model of any config saved with random weights as ESPnet training saves it (``write_model``)."""

from pathlib import Path
from typing import Dict, List, Optional

import torch
from espnet2.utils.yaml_no_alias_safe_dump import yaml_no_alias_safe_dump
from torch import nn

from espnet_ils.model.encoder import ILSTransformerEncoder


def tiny_encoder(input_size: Optional[int] = None, **overrides) -> ILSTransformerEncoder:
    """A 4-block, width-32 encoder without dropout (deterministic in train mode)."""
    conf = dict(
        output_size=32,
        attention_heads=4,
        linear_units=64,
        num_blocks=4,
        dropout_rate=0.0,
        attention_dropout_rate=0.0,
        conv_pos_kernel=8,
        conv_pos_groups=4,
    )
    conf.update(overrides)
    return ILSTransformerEncoder(input_size or conf["output_size"], **conf)


# A tiny ILS-SSL model: conv front of 7 blocks (total stride 320, receptive field 400), 3 blocks of 32.
SHAPES = [[16, 10, 5]] + [[16, 3, 2]] * 4 + [[16, 2, 2]] * 2
ENCODER = dict(output_size=32, attention_heads=4, linear_units=64, num_blocks=3, conv_pos_kernel=8)


def tiny_config(norm_mode: str, pre_ln: bool) -> Dict:
    """A tiny SSL training config (what ``ssl_train`` reads); ``norm_mode`` "fbank": log-mel front."""
    if norm_mode == "fbank":  # as the mini configs: 50 Hz log-mel, utterance mean/variance norm
        front = {"frontend": "default", "normalize": "utterance_mvn"}
        front["frontend_conf"] = dict(n_fft=400, hop_length=320, center=False, n_mels=16)
    else:
        front = {"frontend": "ils_cnn", "normalize": None}
        front["frontend_conf"] = dict(norm_mode=norm_mode, shapes=SHAPES, normalize_audio=pre_ln)
    return {
        **front,
        "preencoder": "feature_projection",
        "preencoder_conf": {"output_size": 32},
        "encoder": "ils_transformer",
        "encoder_conf": dict(ENCODER, conv_pos_groups=4, normalize_before=pre_ln),
        "loss": [{"name": "ils", "conf": {"num_classes": 5, "layers": [2, 3], "final_dim": 8}}],
        "util": [{"name": "mask", "conf": {"mask_prob": 0.5}}],
    }


def write_model(task, config: Dict, tokens: List[str], outdir: Path) -> Path:
    """Build ``config`` with random weights and save it as ESPnet training does; returns weights."""
    outdir.mkdir(parents=True)
    draft = outdir / "draft.yaml"
    with draft.open("w") as f:
        yaml_no_alias_safe_dump(config, f)
    args = task.get_parser().parse_args(["--config", str(draft)])
    args.token_list = tokens
    model = task.build_model(args)
    with torch.no_grad():  # move the norms off their defaults so that a mistake shows
        for module in model.modules():
            if isinstance(module, (nn.LayerNorm, nn.GroupNorm)):
                module.weight.normal_(1.0, 0.3)
                module.bias.normal_(0.0, 0.3)
    with (outdir / "config.yaml").open("w") as f:
        yaml_no_alias_safe_dump(vars(args), f)
    torch.save(model.state_dict(), outdir / "valid.loss.best.pth")
    return outdir / "valid.loss.best.pth"

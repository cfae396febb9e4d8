"""Build-time checks of our tasks: exact keys for the SSL model in the ASR front end, and
intermediate CTC refused in pretraining, working where the encoder is the ASR encoder."""

import re
from pathlib import Path
from typing import Optional

import pytest
import torch
import yaml
from helpers.corpus import ASR_CONFIG, SSL_CONFIG
from helpers.ssl_model import ssl_args

from espnet_ils.model.strict_loading import StateDictKeyError
from espnet_ils.train.tasks import ILSASRTask, ILSSSLTask, check_ssl_frontend_keys

MASK_EMBEDDING = "util_modules.mask.mask_embedding"


def asr_args(root: Path, ssl_model_file: Optional[Path], **overrides):
    """Fine-tuning arguments; with ``ssl_model_file``, through ``frontend: espnet_ssl``."""
    (root / "asr.yaml").write_text(yaml.safe_dump(dict(ASR_CONFIG, **overrides)))
    cmd = ["--config", str(root / "asr.yaml"), "--token_list", str(root / "char_tokens.txt")]
    if ssl_model_file is not None:
        cmd += ["--frontend_conf", f"frontend_conf.path_or_url={ssl_model_file}"]
    return ILSASRTask.get_parser().parse_args(cmd)


def test_ssl_front_end_loads_every_key_and_guards_later_loads(ssl_dir):
    model = ILSASRTask.build_model(asr_args(ssl_dir, ssl_dir / "model.pth"))
    state = model.state_dict()
    state["frontend.upstream.mask_embedding"] = state.pop(f"frontend.upstream.{MASK_EMBEDDING}")
    with pytest.raises(StateDictKeyError, match=f"missing keys .*{MASK_EMBEDDING}"):
        model.load_state_dict(state, strict=False)  # as ESPnet loads ASR checkpoints


def test_renamed_mask_embedding_fails_to_load(ssl_dir):
    state = torch.load(ssl_dir / "model.pth")
    state["util_modules.mask.embedding"] = state.pop(MASK_EMBEDDING)
    torch.save(state, ssl_dir / "renamed.pth")
    with pytest.raises(
        StateDictKeyError,
        match=f"missing keys \\[{MASK_EMBEDDING}\\], unexpected keys \\[util_modules.mask.embedding",
    ):
        ILSASRTask.build_model(asr_args(ssl_dir, ssl_dir / "renamed.pth"))


def test_ssl_front_end_by_model_zoo_name_is_refused(ssl_dir):
    model = ILSASRTask.build_model(asr_args(ssl_dir, ssl_dir / "model.pth"))
    with pytest.raises(ValueError, match="frontend_conf.path_or_url='espnet/hubert'"):
        check_ssl_frontend_keys(model.frontend, "espnet/hubert")


@pytest.mark.parametrize(
    "encoder_conf", [dict(interctc_layer_idx=[2]), dict(interctc_use_conditioning=True)]
)
def test_intermediate_ctc_in_pretraining_raises(ssl_dir, encoder_conf):
    ((option, value),) = encoder_conf.items()
    with pytest.raises(
        ValueError, match=re.escape(f"encoder_conf.{option}={value!r} in a pretraining config")
    ):
        ILSSSLTask.build_model(ssl_args(ssl_dir, **encoder_conf))


def test_intermediate_ctc_acts_where_the_encoder_is_the_asr_encoder(ssl_dir):
    """ILS-FT's place: ``encoder: ils_transformer`` in the ASR task (a converted model's layout)."""
    args = asr_args(
        ssl_dir,
        None,
        **{key: SSL_CONFIG[key] for key in ("frontend", "frontend_conf", "preencoder")},
        preencoder_conf=dict(SSL_CONFIG["preencoder_conf"], input_size=32),  # the conv width
        encoder="ils_transformer",
        encoder_conf=dict(
            SSL_CONFIG["encoder_conf"], interctc_layer_idx=[2], interctc_use_conditioning=True
        ),
        model_conf=dict(ASR_CONFIG["model_conf"], interctc_weight=0.5),
    )
    model = ILSASRTask.build_model(args)
    speech = torch.randn(2, 16000)
    text = torch.tensor([[2, 3, 4], [5, 6, 0]])
    _, stats, _ = model(speech, torch.tensor([16000, 12000]), text, torch.tensor([3, 2]))
    assert torch.isfinite(stats["loss_interctc_layer2"])

import importlib
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from espnet2.tasks import asr, cls, ssl
from helpers.models import tiny_encoder

import espnet_ils
from espnet_ils.bin.count_params import build_from_config, count_parameters
from espnet_ils.data.labels import write_token_list
from espnet_ils.model.encoder import ILSTransformerEncoder
from espnet_ils.model.loss import ILSLoss
from espnet_ils.model.probe_frontend import FrozenSSLFrontend
from espnet_ils.model.strict_loading import StateDictKeyError
from espnet_ils.train import registration
from espnet_ils.train.tasks import ILSSSLTask

CONF = Path(__file__).resolve().parents[1] / "egs2/librispeech_ils/ssl1/conf/tuning"


def test_registration_is_idempotent_and_complete():
    importlib.reload(espnet_ils)
    registration.register()
    registration.register_into(ssl)
    registration.register_into(asr)
    registration.register_into(cls)
    for task in (ssl, asr, cls):
        assert task.encoder_choices.get_class("ils_transformer") is ILSTransformerEncoder
        assert "ils_cnn" in task.frontend_choices.choices()
        assert "feature_projection" in task.preencoder_choices.choices()
    assert ssl.loss_choices.get_class("ils") is ILSLoss
    for task in (asr, cls):
        assert "linear" in task.encoder_choices.choices()
        assert task.frontend_choices.get_class("frozen_ssl") is FrozenSSLFrontend


# In a fresh interpreter: ``import espnet_ils`` alone, then ESPnet imported the way Speech2Text users
# and our asr_inference entry point do it (espnet2.bin.asr_inference imports the ASR task, which
# imports the SSL task while it runs).
FRESH_PROCESS = textwrap.dedent(
    """
    import sys
    import espnet_ils
    assert not {"torch", "espnet2"} & set(sys.modules), "import espnet_ils must stay fast"
    from espnet2.bin.asr_inference import Speech2Text
    from espnet2.tasks import asr, ssl
    assert ssl.frontend_choices.get_class("ils_cnn").__name__ == "ILSCNNFrontend"
    assert ssl.loss_choices.get_class("ils").__name__ == "ILSLoss"
    assert asr.encoder_choices.get_class("ils_transformer").__name__ == "ILSTransformerEncoder"
    assert asr.encoder_choices.get_class("linear").__name__ == "LinearEncoder"
    from espnet2.tasks import cls
    assert cls.frontend_choices.get_class("frozen_ssl").__name__ == "FrozenSSLFrontend"
    assert "g2p_en.g2p" not in sys.modules, "ESPnet imported g2p_en, which reaches for NLTK data"
    """
)


@pytest.mark.slow
def test_import_is_fast_registers_into_espnet_imported_after_it_and_stays_offline():
    result = subprocess.run(
        [sys.executable, "-c", FRESH_PROCESS], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "nltk_data" not in result.stderr + result.stdout


def test_registration_never_overwrites_another_class():
    with pytest.raises(RuntimeError, match="'transformer' is already taken"):
        registration._add(ssl.encoder_choices, "transformer", ILSTransformerEncoder)


def test_loading_refuses_missing_and_unexpected_keys_even_when_not_strict():
    encoder = tiny_encoder()
    state = encoder.state_dict()
    missing = {k: v for k, v in state.items() if "relative_bias" not in k}
    with pytest.raises(StateDictKeyError, match="missing keys.*relative_bias.embedding.weight"):
        encoder.load_state_dict(missing, strict=False)
    extra = dict(state, **{"encoders.0.self_attn.rotary.weight": torch.zeros(1)})
    with pytest.raises(StateDictKeyError, match="unexpected keys.*rotary"):
        encoder.load_state_dict(extra, strict=False)
    encoder.load_state_dict(state)  # the exact set loads


def test_loading_checks_keys_under_a_parent_prefix():
    parent = torch.nn.ModuleDict({"encoder": tiny_encoder()})
    state = {k: v for k, v in parent.state_dict().items() if not k.endswith("fc1.bias")}
    with pytest.raises(StateDictKeyError, match="at 'encoder.'"):
        parent.load_state_dict(state, strict=False)


@pytest.mark.parametrize(
    "name", ["train_ssl_hubert_base_it1", "train_ssl_ils_base_it2", "train_ssl_ils_mini"]
)
def test_ssl_configs_build(name):
    model = build_from_config(str(CONF / f"{name}.yaml"))
    assert isinstance(model.encoder, ILSTransformerEncoder)
    assert [type(loss) for loss in model.losses] == [ILSLoss]


def test_base_parameter_count_matches_the_paper():
    counts = count_parameters(build_from_config(str(CONF / "train_ssl_ils_base_it2.yaml")))
    assert counts["without_heads"] == pytest.approx(94.68e6, rel=0.005)  # paper table 2
    assert counts["heads"] == 2 * (768 * 256 + 256 + 500 * 256)  # two separate heads


def test_large_config_is_pre_ln_with_normalised_heads():
    args = ILSSSLTask.get_parser().parse_args(["--config", str(CONF / "train_ssl_ils_large.yaml")])
    assert args.encoder_conf["normalize_before"] is True
    assert args.loss[0]["conf"]["layers"] == [9, 24]
    assert args.loss[0]["conf"]["layer_norm_inputs"] is True
    assert args.frontend_conf["norm_mode"] == "layer_norm"


@pytest.mark.parametrize("name", ["base_1h", "base_10h", "base_100h", "large_960h"])
def test_finetune_configs_parse(name):
    args = asr.ASRTask.get_parser().parse_args(
        ["--config", str(CONF / f"train_asr_ctc_{name}.yaml")]
    )
    assert args.frontend == "espnet_ssl" and args.model_conf["ctc_weight"] == 1.0
    assert args.freeze_param == ["frontend.upstream.frontend"]
    assert args.scheduler == "tristagelr"


def test_large_finetune_config_fits_the_large_model():
    """What check_configs (ils.sh, before stage 1; 30-60 s for LARGE) would refuse, read from the
    YAML: the CTC projection's width, and a channel mask ESPnet's Masking can draw (at least one
    span of mask_channel_length in mask_channel_prob x width channels)."""
    ssl = ILSSSLTask.get_parser().parse_args(["--config", str(CONF / "train_ssl_ils_large.yaml")])
    ft = asr.ASRTask.get_parser().parse_args(
        ["--config", str(CONF / "train_asr_ctc_large_960h.yaml")]
    )
    width = ssl.encoder_conf["output_size"]
    assert ft.encoder_conf["output_size"] == width == 1024
    masking = ft.frontend_conf["masking_conf"]
    assert masking["mask_channel_prob"] * width / masking["mask_channel_length"] >= 1


def mini_args(**loss_conf):
    args = ILSSSLTask.get_parser().parse_args(["--config", str(CONF / "train_ssl_ils_mini.yaml")])
    args.loss[0]["conf"].update(loss_conf)
    args.token_list = [str(i) for i in range(100)] + ["<unk>"]
    return args


def test_the_cluster_count_comes_from_the_token_list(tmp_path):
    """As ESPnet's tasks take the vocabulary size from --token_list: a config without num_classes
    takes the token list's; one that states another is refused, naming both and their sources."""
    args = mini_args()
    del args.loss[0]["conf"]["num_classes"]
    write_token_list(tmp_path / "tokens.txt", 7)
    args.token_list = str(tmp_path / "tokens.txt")
    model = ILSSSLTask.build_model(args)
    assert model.losses[0].num_classes == 7 and args.loss[0]["conf"]["num_classes"] == 7
    assert model.losses[0].heads[0].codewords.shape[0] == 7
    args = mini_args(num_classes=50)
    match = (
        r"num_classes=50 \(in .*train_ssl_ils_mini.yaml\) but the token list \(101 tokens\) "
        "holds 100 cluster ids"
    )
    with pytest.raises(ValueError, match=match):
        ILSSSLTask.build_model(args)
    args = mini_args()
    args.token_list = args.token_list[:-1]
    with pytest.raises(ValueError, match=r"ends with \['99'\]: an SSL token list"):
        ILSSSLTask.build_model(args)


def test_supervised_layer_beyond_the_encoder_raises():
    with pytest.raises(ValueError, match="block 5 does not exist, the encoder has num_blocks=4"):
        ILSSSLTask.build_model(mini_args(layers=[2, 5]))

"""The ils loss with ESPnet's own encoders, ``e_branchformer`` and ``conformer`` (README: "Encoders").

ESPnet's SSL model hands the loss every block output of these encoders, the top one after the
encoder's final LayerNorm: the head of supervised layer k reads block k and trains blocks 1..k only.
Pretraining through ``ssl_train`` and CTC fine-tuning through ``ESPnetSSLFrontend`` run in this
process (ESPnet is imported once) on the generated tone corpus of tests/test_training.py, with its
configs and another encoder. The layer-feature tools and the torchaudio converter refuse these
encoders by name, our task refuses their layer drop, and the recipe's configs for them build as
the recipe builds them.
"""

import copy
import re
from pathlib import Path
from typing import Dict, List

import numpy as np
import pytest
import soundfile as sf
import torch
import torchaudio
import yaml
from espnet2.bin.asr_inference import Speech2Text
from espnet2.ssl.espnet_model import ESPnetSSLModel
from espnet2.tasks.asr import ASRTask
from espnet2.tasks.ssl import SSLTask
from helpers.corpus import ASR_CONFIG, NUM_CLASSES, SSL_CONFIG, data_args, write_corpus
from torch.nn import functional as F

from espnet_ils.bin import asr_train, ssl_train
from espnet_ils.bin.count_params import build_from_config
from espnet_ils.converters.torchaudio_hubert import load_torchaudio_hubert
from espnet_ils.data.labels import cluster_token_list
from espnet_ils.model.probe_frontend import FrozenSSLFrontend
from espnet_ils.recipe.config_check import check_pipeline_configs
from espnet_ils.targets.layer_features import LayerFeatureExtractor

CONF = Path(__file__).resolve().parents[1] / "egs2/librispeech_ils/ssl1/conf/tuning"

# Tiny versions of the recipe's configs: width 64 as SSL_CONFIG's ils_transformer, no dropout,
# 50 Hz kept (input_layer null: the feature projection feeds the blocks), rel-pos attention.
ENCODER_CONFS: Dict[str, dict] = {
    "e_branchformer": {
        "output_size": 64,
        "attention_heads": 4,
        "rel_pos_type": "latest",
        "cgmlp_linear_units": 128,
        "cgmlp_conv_kernel": 15,
        "use_ffn": True,
        "macaron_ffn": True,
        "linear_units": 128,
        "merge_conv_kernel": 3,
        "num_blocks": 4,
        "dropout_rate": 0.0,
        "positional_dropout_rate": 0.0,
        "attention_dropout_rate": 0.0,
        "input_layer": None,
    },
    "conformer": {
        "output_size": 64,
        "attention_heads": 4,
        "rel_pos_type": "latest",
        "linear_units": 128,
        "macaron_style": True,
        "cnn_module_kernel": 15,
        "normalize_before": True,
        "num_blocks": 4,
        "dropout_rate": 0.0,
        "positional_dropout_rate": 0.0,
        "attention_dropout_rate": 0.0,
        "input_layer": None,
    },
}
CLASS_NAMES = {"e_branchformer": "EBranchformerEncoder", "conformer": "ConformerEncoder"}
ENCODERS = list(ENCODER_CONFS)
NUM_BLOCKS = 4
LAYERS = (2, 4)  # SSL_CONFIG's supervised blocks


def ssl_config(encoder: str, **encoder_overrides) -> dict:
    config = copy.deepcopy(SSL_CONFIG)
    config.update(encoder=encoder, encoder_conf={**ENCODER_CONFS[encoder], **encoder_overrides})
    # Two epochs of 3 steps; no plots (drawing a figure per stat took a third of so short a run).
    config.update(max_epoch=2, num_iters_per_epoch=3, use_matplotlib=False, use_tensorboard=False)
    return config


def build_model(tmp_path: Path, config: dict) -> ESPnetSSLModel:
    """The SSL model of ``config``, built as ``ssl_train`` builds it (``ILSSSLTask``)."""
    path = tmp_path / "ssl.yaml"
    path.write_text(yaml.safe_dump(config))
    return build_from_config(str(path))


def build_with_espnet_task(tmp_path: Path, config: dict) -> ESPnetSSLModel:
    """The SSL model of ``config``, built by ESPnet's own ``SSLTask`` (``espnet2.bin.ssl_train``,
    ``SSLTask.build_model_from_file``): the ils loss is registered there too, without our checks."""
    path = tmp_path / "ssl.yaml"
    path.write_text(yaml.safe_dump(config))
    args = SSLTask.get_parser().parse_args(["--config", str(path)])
    args.token_list = cluster_token_list(NUM_CLASSES)
    return SSLTask.build_model(args)


def batch(seconds: float = 1.0, size: int = 2) -> tuple:
    """Random waveforms ``(B, N)`` and random targets ``(B, T)`` at 50 Hz, with their lengths."""
    samples = int(seconds * 16000)
    frames = (samples - 400) // 320 + 1
    speech = 0.1 * torch.randn(size, samples)
    text = torch.randint(0, NUM_CLASSES, (size, frames))
    return speech, torch.full((size,), samples), text, torch.full((size,), frames)


def block_outputs(model: ESPnetSSLModel) -> List[torch.Tensor]:
    """Hook every block; after a forward pass the list holds their outputs ``(B, T, D)``, in order."""
    outputs = []
    for block in model.encoder.encoders:
        # ESPnet's blocks return ((x, pos_emb), mask) with relative positions, else (x, mask).
        block.register_forward_hook(
            lambda module, args, out: outputs.append(
                out[0][0] if isinstance(out[0], tuple) else out[0]
            )
        )
    return outputs


@pytest.mark.parametrize("encoder", ENCODERS)
def test_the_loss_reads_block_k_and_the_top_block_after_the_final_norm(encoder, tmp_path):
    model = build_model(tmp_path, ssl_config(encoder))
    with torch.no_grad():  # blocks end in a LayerNorm: make after_norm far from the identity
        model.encoder.after_norm.weight.fill_(2.0)
        model.encoder.after_norm.bias.fill_(0.5)
    blocks = block_outputs(model)
    loss = model.losses[0]
    read = {}
    for index, layer in enumerate(loss.layers):
        loss.input_norms[index].register_forward_pre_hook(
            lambda module, args, layer=layer: read.__setitem__(layer, args[0])
        )
    model(*batch())
    assert len(blocks) == NUM_BLOCKS and sorted(read) == list(LAYERS)
    assert torch.equal(read[2], blocks[1])
    # Every block ends in a LayerNorm (at init: mean 0, std 1), so no head needs its own.
    torch.testing.assert_close(
        blocks[1].mean(-1), torch.zeros(blocks[1].shape[:2]), atol=1e-5, rtol=0
    )
    torch.testing.assert_close(
        blocks[1].std(-1, unbiased=False), torch.ones(blocks[1].shape[:2]), atol=1e-3, rtol=0
    )
    # ESPnet's SSL model swaps the top block for the encoder's output, after its after_norm
    torch.testing.assert_close(read[4], model.encoder.after_norm(blocks[3]), rtol=0, atol=0)
    assert not torch.allclose(read[4], blocks[3], atol=0.1)


@pytest.mark.parametrize("encoder", ENCODERS)
def test_the_head_of_block_2_trains_blocks_1_and_2_only(encoder, tmp_path):
    model = build_model(tmp_path, ssl_config(encoder))
    speech, speech_lengths, text, _ = batch()
    encoder_output = model.encode(speech, speech_lengths)["encoder_output"]
    logits = model.losses[0].layer_logits(encoder_output, LAYERS.index(2))  # (B, T, C)
    F.cross_entropy(logits.flatten(0, 1), text.flatten()).backward()
    for number, block in enumerate(model.encoder.encoders, start=1):
        grads = [p.grad for p in block.parameters()]
        if number <= 2:
            assert all(g is not None and g.abs().sum() > 0 for g in grads), f"block {number}"
        else:
            assert all(g is None for g in grads), f"block {number} got a gradient from block 2"


@pytest.mark.parametrize("encoder", ENCODERS)
def test_training_steps_lower_the_loss_on_a_repeated_batch(encoder, tmp_path):
    config = ssl_config(encoder)
    model = build_model(tmp_path, config)
    optimizer = torch.optim.Adam(model.parameters(), **config["optim_conf"])
    fixed = batch()
    losses = []  # per step, the masked cross-entropy of each supervised block
    for _ in range(8):
        torch.manual_seed(0)  # the same masks at every step (ESPnet's Masking draws from torch)
        loss, stats, _ = model(*fixed)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append([float(stats[f"ils_loss_m_{layer}"]) for layer in LAYERS])
    first, last = np.array(losses[0]), np.array(losses[-1])
    assert np.isfinite(losses).all() and (last < first - 0.3).all(), losses


def test_a_subsampling_input_layer_is_refused_by_the_loss(tmp_path):
    config = ssl_config("e_branchformer")
    del config["encoder_conf"]["input_layer"]  # ESPnet's default: conv2d, 4x fewer frames
    model = build_model(tmp_path, config)
    with pytest.raises(
        ValueError, match=r"49 masked input frames into 11 output .*input_layer: null"
    ):
        model(*batch())


LAYER_DROP_FLAWS = {
    "e_branchformer": "leaves dropped blocks out of the block outputs the ILS heads read",
    "conformer": "accepts layer_drop_rate and ignores it",
}


@pytest.mark.parametrize("encoder", ENCODERS)
def test_layer_drop_is_refused_when_the_model_is_built(encoder, tmp_path):
    """Neither encoder keeps block k at index k - 1 of its block outputs while it drops blocks:
    e_branchformer leaves them out and conformer never drops any."""
    with pytest.raises(
        ValueError,
        match=rf"encoder_conf.layer_drop_rate=0.1 with the ils loss: {CLASS_NAMES[encoder]} "
        rf"{LAYER_DROP_FLAWS[encoder]}(?s:.*)Set encoder_conf.layer_drop_rate: 0, or use encoder: "
        "ils_transformer",
    ):
        build_model(tmp_path, ssl_config(encoder, layer_drop_rate=0.1))
    model = build_model(tmp_path, ssl_config(encoder, layer_drop_rate=0.0))
    assert type(model.encoder).__name__ == CLASS_NAMES[encoder]


def test_ils_transformer_layer_drop_is_allowed(tmp_path):
    """Its dropped blocks pass their input through and keep their place in the block outputs."""
    config = copy.deepcopy(SSL_CONFIG)
    config["encoder_conf"]["layer_drop_rate"] = 0.1
    assert build_model(tmp_path, config).encoder.layer_drop_rate == 0.1


def test_e_branchformer_layer_drop_is_named_when_blocks_go_missing(tmp_path):
    """ESPnet's own task builds the model unchecked; the loss names the missing blocks where it
    can tell (the ones above a dropped block move down)."""
    model = build_with_espnet_task(tmp_path, ssl_config("e_branchformer", layer_drop_rate=0.25))
    errors = []
    for seed in range(8):
        torch.manual_seed(seed)
        try:
            model(*batch())
        except ValueError as error:
            errors.append(str(error))
    assert errors, "no seed dropped a block"
    assert re.search(r"returned only [1-3] blocks.*layer_drop_rate: 0", errors[0]), errors[0]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("espnet_encoders")
    write_corpus(root)
    return root


@pytest.fixture(scope="module", params=ENCODERS)
def ssl_exp(request, corpus) -> Path:
    """Pretraining through ``ssl_train``'s entry point: 2 epochs of 3 steps, 4 utterances each."""
    exp = corpus / "exp" / f"ssl_{request.param}"
    config = corpus / f"ssl_{request.param}.yaml"
    config.write_text(yaml.safe_dump(ssl_config(request.param)))
    ssl_train.main(
        [
            *("--config", str(config), "--output_dir", str(exp), "--ngpu", "0"),
            *("--token_list", str(corpus / "km_tokens.txt"), "--token_type", "word"),
            *map(str, data_args(corpus, "labels")),
        ]
    )
    return exp


def test_pretraining_reports_the_loss_of_both_supervised_blocks(ssl_exp):
    config = yaml.safe_load((ssl_exp / "config.yaml").read_text())
    assert ssl_exp.name == f"ssl_{config['encoder']}" and config["loss"][0]["name"] == "ils"
    assert (ssl_exp / "valid.loss.best.pth").exists()
    stats = torch.load(ssl_exp / "checkpoint.pth", weights_only=False)["reporter"]["stats"]
    for epoch in (1, 2):
        for mode in ("train", "valid"):
            for layer in LAYERS:
                value = stats[epoch][mode][f"ils_loss_m_{layer}"]
                assert np.isfinite(value) and value > 0, (epoch, mode, layer, value)


def test_layer_features_refuse_the_model_by_name_as_it_depends_on_padding(ssl_exp, corpus):
    encoder = ssl_exp.name.removeprefix("ssl_")
    with pytest.raises(
        ValueError,
        match=rf"encoder is {CLASS_NAMES[encoder]} \(encoder: {encoder}\): layer features need"
        r"(?s:.*)convolutions run over the padding(?s:.*)targets from an ils_transformer model",
    ):
        LayerFeatureExtractor.from_files(ssl_exp / "valid.loss.best.pth")
    # The reason given: block 1 of an utterance changes when a longer one pads it in a batch.
    model, _ = SSLTask.build_model_from_file(
        ssl_exp / "config.yaml", ssl_exp / "valid.loss.best.pth"
    )
    model.eval()
    wave = torch.from_numpy(sf.read(corpus / "wav" / "utt0.flac", dtype="float32")[0])
    padded = torch.stack(
        [torch.cat([wave, torch.zeros(8000)]), 0.1 * torch.randn(wave.numel() + 8000)]
    )
    with torch.no_grad():
        _, alone, _ = model.inference_encode(wave[None], torch.tensor([wave.numel()]))
        _, in_batch, _ = model.inference_encode(
            padded, torch.tensor([wave.numel(), len(padded[1])])
        )
    frames = alone[0].size(1)
    assert not torch.allclose(in_batch[0][0, :frames], alone[0][0], atol=1e-3)  # block 1


@pytest.mark.parametrize("encoder", ENCODERS)
def test_torchaudio_weights_are_refused_for_these_encoders(encoder, tmp_path):
    model = build_model(tmp_path, ssl_config(encoder))
    hubert = torchaudio.models.wav2vec2_model(  # SSL_CONFIG's front and width
        extractor_mode="group_norm",
        extractor_conv_layer_config=[(32, 10, 5)] + [(32, 3, 2)] * 4 + [(32, 2, 2)] * 2,
        extractor_conv_bias=False,
        encoder_embed_dim=64,
        encoder_projection_dropout=0.0,
        encoder_pos_conv_kernel=16,
        encoder_pos_conv_groups=4,
        encoder_num_layers=NUM_BLOCKS,
        encoder_num_heads=4,
        encoder_attention_dropout=0.0,
        encoder_ff_interm_features=128,
        encoder_ff_interm_dropout=0.0,
        encoder_dropout=0.0,
        encoder_layer_norm_first=False,
        encoder_layer_drop=0.0,
        aux_num_out=None,
    )
    modules = {"frontend": model.frontend, "preencoder": model.preencoder, "encoder": model.encoder}
    with pytest.raises(
        ValueError,
        match=rf"encoder: {CLASS_NAMES[encoder]} cannot take torchaudio's Transformer weights, "
        r"which convert into ILSTransformerEncoder \(encoder: ils_transformer\) only",
    ):
        load_torchaudio_hubert(hubert.state_dict(), modules)


def test_the_probe_front_end_weighs_every_block_of_these_encoders(ssl_exp):
    """Stage 7's probes: ``frozen_ssl`` takes one weight per block, and its weighted sum (uniform
    at the start) is the mean of the blocks as the hooks see them leave."""
    frontend = FrozenSSLFrontend({"path_or_url": str(ssl_exp / "valid.loss.best.pth")})
    frontend.train()
    assert frontend.featurizer.weights.numel() == NUM_BLOCKS
    outputs = block_outputs(frontend.upstream)
    speech, lengths, _, _ = batch()
    features, _ = frontend(speech, lengths)
    assert len(outputs) == NUM_BLOCKS
    expected = torch.stack(outputs).mean(dim=0)
    torch.testing.assert_close(features, expected)


@pytest.fixture(scope="module")
def asr_exp(ssl_exp, corpus) -> Path:
    """CTC fine-tuning through ``asr_train``'s entry point with ``frontend: espnet_ssl``."""
    exp = ssl_exp.parent / ssl_exp.name.replace("ssl_", "asr_")
    config = corpus / "asr.yaml"
    config.write_text(
        yaml.safe_dump({**ASR_CONFIG, "use_matplotlib": False, "use_tensorboard": False})
    )
    asr_train.main(
        [
            *("--config", str(config), "--output_dir", str(exp), "--ngpu", "0"),
            *("--token_list", str(corpus / "char_tokens.txt"), "--token_type", "char"),
            *("--frontend_conf", f"frontend_conf.path_or_url={ssl_exp / 'valid.loss.best.pth'}"),
            *map(str, data_args(corpus, "text")),
        ]
    )
    return exp


def test_fine_tuning_trains_the_pretrained_encoder_and_the_model_decodes(asr_exp, ssl_exp, corpus):
    asr_model, _ = ASRTask.build_model_from_file(
        asr_exp / "config.yaml", asr_exp / "valid.loss.best.pth"
    )
    pretrained = torch.load(ssl_exp / "valid.loss.best.pth", map_location="cpu")
    upstream = asr_model.frontend.upstream.state_dict()
    encoder = ssl_exp.name.removeprefix("ssl_")
    assert type(asr_model.frontend.upstream.encoder).__name__ == CLASS_NAMES[encoder]
    front = [name for name in pretrained if name.startswith("frontend.")]
    assert front and all(torch.equal(upstream[name], pretrained[name]) for name in front)  # frozen
    block = [name for name in pretrained if name.startswith("encoder.encoders.0.")]
    assert any(not torch.equal(upstream[name], pretrained[name]) for name in block)  # trained

    speech2text = Speech2Text(
        asr_train_config=asr_exp / "config.yaml",
        asr_model_file=asr_exp / "valid.loss.best.pth",
        ctc_weight=1.0,
        lm_weight=0.0,
        beam_size=2,
        nbest=1,
    )
    wave = sf.read(corpus / "wav" / "utt0.flac", dtype="float32")[0]
    (text, tokens, token_ids, hyp), *_ = speech2text(wave)
    assert isinstance(text, str) and np.isfinite(float(hyp.score))


def test_fine_tuning_reads_the_top_block_before_the_final_norm(asr_exp, corpus):
    """``ESPnetSSLFrontend`` with ``layer: -1`` passes the top block's own output on, not the
    encoder's after_norm output that the top ILS head was trained on."""
    asr_model, _ = ASRTask.build_model_from_file(
        asr_exp / "config.yaml", asr_exp / "valid.loss.best.pth"
    )
    asr_model.eval()
    blocks = block_outputs(asr_model.frontend.upstream)
    wave = torch.from_numpy(sf.read(corpus / "wav" / "utt1.flac", dtype="float32")[0])
    with torch.no_grad():
        features, _ = asr_model.frontend(wave[None], torch.tensor([wave.numel()]))
    assert torch.equal(features, blocks[-1])


@pytest.mark.parametrize("encoder", ENCODERS)
def test_the_mini_configs_build_as_the_recipe_builds_them_and_train_every_parameter(encoder):
    config = CONF / f"train_ssl_ils_{encoder.replace('_', '')}_mini.yaml"
    check_pipeline_configs(
        CONF / "train_ssl_hubert_mini_it1.yaml", 100, config, 100, CONF / "train_asr_ctc_mini.yaml"
    )
    model = build_from_config(str(config))
    speech, speech_lengths, _, frames = batch(seconds=2.0)
    loss, _, _ = model(speech, speech_lengths, torch.randint(0, 100, (2, int(frames[0]))), frames)
    loss.backward()
    # what their unused_parameters: false (DDP without the search for unused ones) relies on
    assert [name for name, p in model.named_parameters() if p.grad is None] == []

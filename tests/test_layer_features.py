"""Layer features: any block of an ILS-SSL model, batched == one by one, ark/scp shards."""

import json
import logging
from pathlib import Path
from typing import Dict, List

import kaldiio
import numpy as np
import pytest
import soundfile
import torch
from espnet2.asr.frontend.cnn import CNNFrontend
from espnet2.tasks.asr import ASRTask
from helpers.images import png_size
from helpers.models import tiny_config, write_model
from helpers.shared_data import SHARED_DATA
from torch import nn

import espnet_ils  # noqa: F401  (registers our classes)
from espnet_ils.bin import cluster_quality, extract_layer_features
from espnet_ils.converters.unispeech import convert_unispeech_checkpoint
from espnet_ils.data.kaldi_files import write_key_file
from espnet_ils.data.shards import shard
from espnet_ils.targets.kmeans import fit_kmeans
from espnet_ils.targets.layer_features import LayerFeatureExtractor
from espnet_ils.train.tasks import ILSSSLTask

REFERENCE = SHARED_DATA / "ils_reference"
NUM_SAMPLES = (5000, 9000, 6400)


def tiny_asr_config() -> Dict:
    """A tiny CTC config in the layout ``convert_unispeech`` writes for fine-tuned models."""
    config = tiny_config("group_norm", pre_ln=False)
    del config["loss"], config["util"]
    config["preencoder_conf"]["input_size"] = 16
    config.update(model_conf={"ctc_weight": 1.0}, token_type="char", specaug=None)
    return config


@pytest.fixture(
    scope="module", params=[("group_norm", False), ("layer_norm", True), ("fbank", False)]
)
def model_file(request, tmp_path_factory) -> Path:
    torch.manual_seed(0)
    config = tiny_config(*request.param)
    outdir = tmp_path_factory.mktemp("ssl") / "exp"
    return write_model(ILSSSLTask, config, [str(c) for c in range(5)] + ["<unk>"], outdir)


@pytest.fixture(scope="module")
def waveforms() -> List[torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    return [0.1 * torch.randn(n, generator=generator) for n in NUM_SAMPLES]


def test_batched_equals_one_by_one(model_file, waveforms):
    extractor = LayerFeatureExtractor.from_files(model_file)
    batched = extractor.extract_layers(waveforms)
    for wave, states in zip(waveforms, batched):
        alone = extractor.extract_layers([wave])[0]
        assert states.shape == (4, (wave.numel() - 400) // 320 + 1, 32)  # layers 0..3
        torch.testing.assert_close(states, alone, atol=1e-5, rtol=1e-4)


@torch.no_grad()
def test_layers_are_the_block_outputs_and_layer_0_the_block_1_input(model_file, waveforms):
    extractor = LayerFeatureExtractor.from_files(model_file)
    wave = waveforms[1][None]
    projected, lengths = wave, torch.tensor([wave.shape[1]])
    for module in extractor.front:  # frontend, normalisation (if any), projection
        projected, lengths = module(projected, lengths)
    (_, blocks), _, _ = extractor.encoder(projected, lengths, return_all_hs=True)
    states = extractor.extract_layers([wave[0]])[0]
    for k, block in enumerate(blocks, start=1):
        torch.testing.assert_close(states[k], block[0])
    encoder = extractor.encoder
    block_1_input = projected + encoder.pos_conv(projected)
    if encoder.layer_norm is not None:  # post-LN: the LayerNorm before block 1
        block_1_input = encoder.layer_norm(block_1_input)
    torch.testing.assert_close(states[0], block_1_input[0])


def test_only_the_blocks_up_to_the_requested_layer_run(model_file, waveforms, monkeypatch):
    extractor = LayerFeatureExtractor.from_files(model_file)
    expected = extractor.extract_layers(waveforms)

    def block_3(*args):
        raise AssertionError("block 3 ran for layer 2")

    monkeypatch.setattr(extractor.encoder.encoders[2], "forward", block_3)
    for got, states in zip(extractor.extract(waveforms, layer=2), expected):
        torch.testing.assert_close(got, states[2], rtol=0, atol=0)


@pytest.mark.parametrize("layers", [[4], [-1], []])
def test_layers_outside_the_model_raise(model_file, waveforms, layers):
    extractor = LayerFeatureExtractor.from_files(model_file)
    with pytest.raises(ValueError, match=r"valid layers are 0 \(input of block 1\) to 3"):
        extractor.extract_layers(waveforms, layers)


def test_a_model_without_the_ils_encoder_is_refused():
    espnet = CNNFrontend(norm_mode="group_norm", conv_mode="standard", bias=False)
    with pytest.raises(ValueError, match="encoder is Linear: layer features need"):
        LayerFeatureExtractor(espnet, None, nn.Linear(512, 32))


def test_a_ctc_model_directory_loads_too(tmp_path, waveforms):
    tokens = ["<blank>", "<pad>", "<sos/eos>", "<unk>", "<space>", "A", "B"]
    weights = write_model(ASRTask, tiny_asr_config(), tokens, tmp_path / "asr")
    extractor = LayerFeatureExtractor.from_files(weights)
    assert extractor.num_layers == 3
    assert extractor.extract(waveforms[:1], layer=3)[0].shape == (15, 32)


@pytest.mark.parametrize("num_keys", range(6))
@pytest.mark.parametrize("nj", [1, 2, 4])
def test_shards_partition_the_sorted_keys(num_keys, nj):
    keys = [f"utt{i}" for i in reversed(range(num_keys))]
    shards = [shard(sorted(keys), job, nj) for job in range(1, nj + 1)]
    assert sum(shards, []) == sorted(keys)


def write_wav_scp(directory: Path, waveforms: List[torch.Tensor], rate: int = 16000) -> Path:
    directory.mkdir()
    lines = []
    for index, wave in reversed(list(enumerate(waveforms))):  # unsorted on purpose
        path = directory / f"utt{index}.wav"
        soundfile.write(path, wave.numpy(), rate, subtype="FLOAT")
        lines.append(f"utt{index} {path}\n")
    (directory / "wav.scp").write_text("".join(lines))
    return directory / "wav.scp"


def test_command_line_writes_sharded_ark_scp(model_file, waveforms, tmp_path):
    wav_scp = write_wav_scp(tmp_path / "data", waveforms)
    out_dir = tmp_path / "feats"
    for job in (1, 2):
        extract_layer_features.main(
            [
                *("--model_file", str(model_file), "--wav_scp", str(wav_scp)),
                *("--layer", "2", "--out_dir", str(out_dir), "--nj", "2", "--job", str(job)),
                *("--batch_size", "2"),
            ]
        )
    assert sorted(p.name for p in out_dir.iterdir()) == [
        ".done.1",
        ".done.2",
        "feats.1.ark",
        "feats.1.scp",
        "feats.2.ark",
        "feats.2.scp",
        "utt2num_samples.1",
        "utt2num_samples.2",
    ]
    shards = [kaldiio.load_scp(str(out_dir / f"feats.{job}.scp")) for job in (1, 2)]
    assert [sorted(shard) for shard in shards] == [["utt0"], ["utt1", "utt2"]]
    expected = LayerFeatureExtractor.from_files(model_file).extract(waveforms, layer=2)
    for index, wave in enumerate(expected):
        shard = shards[0] if index == 0 else shards[1]
        torch.testing.assert_close(torch.tensor(shard[f"utt{index}"]), wave)


def test_command_line_refuses_another_sampling_rate(model_file, waveforms, tmp_path):
    wav_scp = write_wav_scp(tmp_path / "data", waveforms[:1], rate=8000)
    with pytest.raises(
        SystemExit, match="utterance utt0: .* is sampled at 8000 Hz; expected 16000 Hz"
    ):
        extract_layer_features.main(
            [
                *("--model_file", str(model_file), "--wav_scp", str(wav_scp)),
                *("--layer", "1", "--out_dir", str(tmp_path / "feats")),
            ]
        )
    assert not (tmp_path / "feats" / "feats.1.scp").exists()


def test_a_retrained_model_at_the_same_path_recomputes_the_shard(waveforms, tmp_path, caplog):
    """The shard marker holds the model file's checksum, not its path."""
    caplog.set_level(logging.INFO)
    model_file = write_model(
        ILSSSLTask,
        tiny_config("fbank", False),
        [str(c) for c in range(5)] + ["<unk>"],
        tmp_path / "exp",
    )
    wav_scp = write_wav_scp(tmp_path / "data", waveforms)
    args = ["--model_file", str(model_file), "--wav_scp", str(wav_scp)]
    args += ["--layer", "2", "--out_dir", str(tmp_path / "feats")]
    extract_layer_features.main(args)
    stamp = (tmp_path / "feats" / "feats.1.ark").stat().st_mtime_ns
    extract_layer_features.main(args)
    assert "skipped: done with the same options and inputs" in caplog.text
    assert (tmp_path / "feats" / "feats.1.ark").stat().st_mtime_ns == stamp

    state = torch.load(model_file)
    torch.save({k: v + 0.1 if v.is_floating_point() else v for k, v in state.items()}, model_file)
    extract_layer_features.main(args)
    assert "recomputing: input model changed" in caplog.text
    features = kaldiio.load_scp(str(tmp_path / "feats" / "feats.1.scp"))
    extractor = LayerFeatureExtractor.from_files(model_file)
    for index, wave in enumerate(waveforms):  # the command line's batches of 1
        expected = extractor.extract([wave], layer=2)[0]
        torch.testing.assert_close(torch.tensor(features[f"utt{index}"]), expected)


@pytest.mark.skipif(not REFERENCE.is_dir(), reason=f"parity fixtures not found at {REFERENCE}")
@pytest.mark.parametrize("config", ["base-like", "large-like"])
def test_a_padded_batch_reproduces_the_original_layers(config, tmp_path):
    """The three fixture utterances in one padded batch give the original's per-utterance layers."""
    outdir = convert_unispeech_checkpoint(REFERENCE / config / "checkpoint.pt", tmp_path / "m")
    extractor = LayerFeatureExtractor.from_files(outdir / "model.pth")
    inputs = torch.load(REFERENCE / config / "inputs.pt", weights_only=True)
    expected = torch.load(REFERENCE / config / "expected.pt", weights_only=True)["utts"]
    for states, reference in zip(extractor.extract_layers(inputs["wavs"]), expected):
        for layer in range(5):
            target = reference[f"layer_{layer}"]
            error = float((states[layer] - target).abs().max() / target.abs().max())
            assert error <= 1e-5, (reference["name"], layer, error)


def test_cluster_quality_scores_every_layer(model_file, waveforms, tmp_path):
    """Phones equal to layer 2's own k-means clusters: layer 2 scores PNMI 1 (in a tiny random
    pre-LN model the other layers may cluster alike, so they are only bounded); fitting on a data
    directory holding the same audio gives the same table, on a subset of it another protocol."""
    write_wav_scp(tmp_path / "data", waveforms)
    write_key_file(
        tmp_path / "data" / "utt2num_samples",
        {f"utt{i}": str(len(w)) for i, w in enumerate(waveforms)},
    )
    extractor = LayerFeatureExtractor.from_files(model_file)
    layer2 = {
        utt: extractor.extract([wave], layer=2)[0].numpy()
        for utt, wave in zip(("utt0", "utt1", "utt2"), waveforms)
    }
    kmeans = fit_kmeans(np.concatenate(list(layer2.values())), 4, 0, {"n_init": 1})
    write_key_file(
        tmp_path / "data" / "phone_alignment",
        {utt: " ".join(f"p{c}" for c in kmeans.predict(frames)) for utt, frames in layer2.items()},
    )
    args = [
        *("layers", "--model", f"a={model_file.parent}", "--model", f"b={model_file.parent}"),
        *(
            "--score_dir",
            str(tmp_path / "data"),
            "--n_clusters",
            "4",
            "--n_init",
            "1",
            "--seed",
            "0",
        ),
    ]
    cluster_quality.main([*args, "--outdir", str(tmp_path / "cq")])
    table = (tmp_path / "cq" / "cluster_quality.tsv").read_text()
    rows = [line.split("\t") for line in table.splitlines()]
    assert rows[0] == ["model", "layer", "phone_purity", "cluster_purity", "pnmi"]
    assert [row[:2] for row in rows[1:]] == [[m, str(k)] for m in "ab" for k in range(4)]
    assert [row[1:] for row in rows[1:5]] == [row[1:] for row in rows[5:]]
    assert float(rows[3][4]) == 1.0 and float(rows[3][2]) == 1.0
    assert all(0 <= float(value) <= 1 for row in rows[1:] for value in row[2:])
    assert png_size(tmp_path / "cq" / "cluster_quality.png") == (1440, 384)  # 3 panels, 120 dpi

    fit_args = ["--fit_dir", str(tmp_path / "data"), "--outdir", str(tmp_path / "fit")]
    cluster_quality.main([*args, *fit_args])
    assert (tmp_path / "fit" / "cluster_quality.tsv").read_text() == table
    cluster_quality.main([*args, *fit_args, "--fit_hours", "0.0001"])  # 0.36 s: one utterance
    protocol = json.loads((tmp_path / "fit" / "protocol.json").read_text())
    assert protocol["fit_utterances"] == 1 and protocol["scored_utterances"] == 3


def test_cluster_quality_names_a_missing_model_and_an_unaligned_utterance(
    model_file, waveforms, tmp_path
):
    write_wav_scp(tmp_path / "data", waveforms[:1])
    write_key_file(tmp_path / "data" / "phone_alignment", {"utt0": "a " * 14, "utt9": "a"})
    args = ["layers", "--score_dir", str(tmp_path / "data")]
    with pytest.raises(ValueError, match=r"without audio in the wav.scp: \['utt9'\]"):
        cluster_quality.main([*args, "--model", f"a={model_file.parent}", "--outdir", "o"])
    write_key_file(tmp_path / "data" / "phone_alignment", {"utt0": "a " * 14})
    with pytest.raises(ValueError, match=r"utterances already scored: \['utt0'\]"):
        cluster_quality.main(
            [*args, *args[1:], "--model", f"a={model_file.parent}", "--outdir", "o"]
        )
    with pytest.raises(FileNotFoundError, match=r"missing/valid.loss.best.pth does not exist"):
        cluster_quality.main([*args, "--model", f"a={tmp_path}/missing", "--outdir", "o"])

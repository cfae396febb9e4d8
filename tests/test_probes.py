"""Frozen probes: the probe front end (frozen, eval mode, weighted sum), both probe models through
our ESPnet tasks, their data (phone transcripts, per-speaker split) and their scores."""

import math
from pathlib import Path
from typing import Dict

import pytest
import torch
import yaml
from helpers.models import tiny_config, write_model

from espnet_ils.analysis.comparison import Run
from espnet_ils.analysis.probes import (
    LAYER_WEIGHTS_KEY,
    accuracy,
    layer_weights,
    phone_error_rate,
    phone_sequence,
    score_probes,
    split_by_speaker,
)
from espnet_ils.bin import prepare_probes
from espnet_ils.data.kaldi_files import read_key_file, write_key_file
from espnet_ils.model.probe_frontend import FrozenSSLFrontend
from espnet_ils.train.tasks import ILSASRTask, ILSCLSTask, ILSSSLTask

CONF = Path(__file__).resolve().parents[1] / "egs2/librispeech_ils/ssl1/conf/tuning"
NUM_BLOCKS = 3  # tiny_config's encoder


@pytest.fixture(scope="module")
def ssl_model(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    config = tiny_config("group_norm", pre_ln=False)
    config["encoder_conf"].update(dropout_rate=0.3, layer_drop_rate=0.5)  # visible in train mode
    outdir = tmp_path_factory.mktemp("ssl") / "exp"
    return write_model(ILSSSLTask, config, [str(c) for c in range(5)] + ["<unk>"], outdir)


def probe_model(task, config_name: str, ssl_model: Path, tokens) -> torch.nn.Module:
    """A probe config of the recipe, on the tiny SSL model (its width, 32, for the encoder's)."""
    config = yaml.safe_load((CONF / config_name).read_text())
    config["encoder_conf"]["output_size"] = 32
    config["frontend_conf"] = {"frontend_conf": {"path_or_url": str(ssl_model)}}
    args = task.get_parser().parse_args([])
    for key, value in config.items():
        setattr(args, key, value)
    args.token_list = list(tokens)
    return task.build_model(args)


def test_frontend_is_frozen_in_eval_mode_and_weighs_every_block(ssl_model):
    frontend = FrozenSSLFrontend(frontend_conf={"path_or_url": str(ssl_model)})
    frontend.train()
    assert not frontend.upstream.training  # no dropout, layer drop or masking while a probe trains
    trainable = [name for name, p in frontend.named_parameters() if p.requires_grad]
    assert trainable == ["featurizer.weights"]
    speech = 0.1 * torch.randn(2, 8000, generator=torch.Generator().manual_seed(0))
    lengths = torch.tensor([8000, 6000])
    with torch.no_grad():
        frontend.featurizer.weights.copy_(torch.tensor([0.0, 1.0, 2.0]))
    features, frames = frontend(speech, lengths)
    again, _ = frontend(speech, lengths)
    assert torch.equal(features, again)  # deterministic in train mode
    with torch.no_grad():
        _, layers, _ = frontend.upstream.inference_encode(speech, lengths, False)
    assert len(layers) == NUM_BLOCKS
    weights = torch.softmax(torch.tensor([0.0, 1.0, 2.0]), dim=0)
    expected = sum(w * layer for w, layer in zip(weights, layers))
    torch.testing.assert_close(features, expected)
    torch.testing.assert_close(frontend.layer_weights(), weights)
    assert features.requires_grad and frames.tolist()[0] == features.shape[1]


def test_frontend_refuses_other_sampling_rates(ssl_model):
    with pytest.raises(ValueError, match="frontend_conf.fs=8000"):
        FrozenSSLFrontend(frontend_conf={"path_or_url": str(ssl_model)}, fs=8000)


@pytest.mark.parametrize(
    "task, config, tokens, batch",
    [
        (ILSASRTask, "train_probe_pr_mini.yaml", ["<blank>", "<unk>", "aa", "b", "<sos/eos>"],
         dict(text=torch.tensor([[2, 3, 2], [3, 2, -1]]), text_lengths=torch.tensor([3, 2]))),
        (ILSCLSTask, "train_probe_sid_mini.yaml", ["spk1", "spk2", "<unk>"],
         dict(label=torch.tensor([[0], [1]]), label_lengths=torch.tensor([1, 1]))),
    ],
)  # fmt: skip
def test_probe_learns_only_its_weights_and_head(ssl_model, tmp_path, task, config, tokens, batch):
    """One step of each probe config through our tasks: the SSL model does not change, the layer
    weights do, and they are where ``layer_weights`` reads them in the checkpoint."""
    torch.manual_seed(0)
    model = probe_model(task, config, ssl_model, tokens)
    if task is ILSCLSTask:  # ESPnet's classifier leaves the last token, <unk>, out of its classes
        assert model.decoder.linear_out.out_features == len(tokens) - 1
    model.train()
    frozen = {k: v.clone() for k, v in model.frontend.upstream.state_dict().items()}
    weights = model.frontend.featurizer.weights.detach().clone()
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=0.1)
    speech = 0.1 * torch.randn(2, 8000, generator=torch.Generator().manual_seed(1))
    loss, _, _ = model(speech=speech, speech_lengths=torch.tensor([8000, 7000]), **batch)
    assert math.isfinite(loss.item())
    loss.backward()
    optimizer.step()
    for key, value in model.frontend.upstream.state_dict().items():
        assert torch.equal(value, frozen[key]), key
    assert not torch.equal(model.frontend.featurizer.weights, weights)
    torch.save(model.state_dict(), tmp_path / "probe.pth")
    assert layer_weights(tmp_path / "probe.pth") == pytest.approx(
        model.frontend.layer_weights().tolist()
    )


def test_layer_weights_name_a_checkpoint_that_is_not_a_probe(ssl_model):
    with pytest.raises(KeyError, match=f"no {LAYER_WEIGHTS_KEY}"):
        layer_weights(ssl_model)


def test_phone_sequence_merges_runs_and_drops_silence():
    frames = "sil sil k k ae ae sil t t t sil ae".split()
    assert phone_sequence(frames) == ["k", "ae", "t", "ae"]


def write_set(root: Path, utt2spk: Dict[str, str], alignment: Dict[str, str]) -> Path:
    root.mkdir(parents=True)
    write_key_file(root / "wav.scp", {utt: f"/audio/{utt}.flac" for utt in utt2spk})
    write_key_file(root / "speech_shape", {utt: "16000" for utt in utt2spk})
    write_key_file(root / "utt2spk", utt2spk)
    write_key_file(root / "phone_alignment", alignment)
    return root


def test_prepare_probes_writes_phone_transcripts_and_token_list(tmp_path):
    train = write_set(
        tmp_path / "train", {"a1": "a", "a2": "a"}, {"a1": "sil k k ae", "a2": "t t sil"}
    )
    dev = write_set(tmp_path / "dev", {"b1": "b"}, {"b1": "sil z sil"})
    out = tmp_path / "probe"
    prepare_probes.main(["pr", "--set", str(train), str(out / "train"), "--set", str(dev),
                         str(out / "dev"), "--token_list", str(out / "tokens.txt")])  # fmt: skip
    assert read_key_file(out / "train" / "text") == {"a1": "k ae", "a2": "t"}
    assert read_key_file(out / "dev" / "text") == {"b1": "z"}
    assert read_key_file(out / "dev" / "wav.scp") == {"b1": "/audio/b1.flac"}
    # the training set's phones; another set's unseen phone is read as <unk>
    assert (out / "tokens.txt").read_text().split() == ["<blank>", "<unk>", "ae", "k", "t", "<sos/eos>"]  # fmt: skip
    silent = write_set(tmp_path / "silent", {"c1": "c"}, {"c1": "sil sil"})
    with pytest.raises(ValueError, match="utterance c1 is aligned to silence only"):
        prepare_probes.main(["pr", "--set", str(silent), str(out / "silent"),
                             "--token_list", str(tmp_path / "t.txt")])  # fmt: skip


def test_speakers_split_into_disjoint_held_out_sets_the_same_way_each_time(tmp_path):
    utt2spk = {f"{spk}-{i:02d}": spk for spk in ("s1", "s2", "s3") for i in range(20)}
    utt2spk.update({f"s4-{i}": "s4" for i in range(3)})
    splits = split_by_speaker(utt2spk, held_out=0.1, seed=0)
    assert splits == split_by_speaker(utt2spk, held_out=0.1, seed=0)
    assert splits != split_by_speaker(utt2spk, held_out=0.1, seed=1)
    assert sorted(u for split in splits.values() for u in split) == sorted(utt2spk)
    for spk in ("s1", "s2", "s3"):
        assert [sum(s == spk for s in splits[n].values()) for n in ("train", "valid", "test")] == [
            16, 2, 2
        ]  # fmt: skip
    assert [sum(s == "s4" for s in splits[n].values()) for n in ("train", "valid", "test")] == [
        1, 1, 1
    ]  # fmt: skip
    with pytest.raises(ValueError, match="speaker s5 has 2 utterance"):
        split_by_speaker({"x": "s5", "y": "s5"}, held_out=0.1, seed=0)
    with pytest.raises(ValueError, match="held_out=0.5"):
        split_by_speaker(utt2spk, held_out=0.5, seed=0)
    src = write_set(tmp_path / "train", utt2spk, {utt: "k" for utt in utt2spk})
    prepare_probes.main(["sid", "--src", str(src), "--outdir", str(tmp_path / "sid")])
    assert read_key_file(tmp_path / "sid" / "test" / "text") == splits["test"]
    assert (tmp_path / "sid" / "tokens.txt").read_text().split() == [
        "s1",
        "s2",
        "s3",
        "s4",
        "<unk>",
    ]


def test_scores_count_missing_outputs_as_errors_and_refuse_strangers(tmp_path):
    write_key_file(tmp_path / "ref", {"u1": "k ae t", "u2": "d ao g"})
    (tmp_path / "hyp").write_text("u1 k ae t\nu2\n")  # an empty hypothesis
    assert phone_error_rate(tmp_path / "ref", tmp_path / "hyp") == pytest.approx(50.0)
    write_key_file(tmp_path / "spk", {"u1": "s1", "u2": "s2", "u3": "s1"})
    write_key_file(tmp_path / "pred", {"u1": "s1", "u2": "s1"})
    assert accuracy(tmp_path / "spk", tmp_path / "pred") == pytest.approx(100 / 3)
    write_key_file(tmp_path / "pred", {"u9": "s1"})
    with pytest.raises(ValueError, match="u9"):
        accuracy(tmp_path / "spk", tmp_path / "pred")


def test_score_probes_names_a_probe_that_was_not_decoded(tmp_path):
    runs = [Run("ils_seed0", "ils", 0, tmp_path / "asr")]
    write_key_file(tmp_path / "ref", {"u1": "s1"})
    with pytest.raises(FileNotFoundError, match="sid probe of ils_seed0 is not decoded"):
        score_probes(runs, tmp_path, {"sid": {"test": tmp_path / "ref"}}, "valid.loss.best.pth")

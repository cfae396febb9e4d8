"""Frozen probes: the probe front end (frozen, eval mode, weighted sum), both probe models through
our ESPnet tasks, their data (phone transcripts, per-speaker split) and their scores."""

import math
import subprocess
import sys
from pathlib import Path
from typing import Dict

import pytest
import torch
import yaml
from helpers.images import png_size
from helpers.models import tiny_config, write_model

from espnet_ils.analysis.comparison import Run
from espnet_ils.analysis.probes import (
    LAYER_WEIGHTS_KEY,
    SID_SPLITS,
    ProbeLayout,
    accuracy,
    layer_weights,
    phone_error_rate,
    phone_sequence,
    score_probes,
    split_by_speaker,
)
from espnet_ils.bin import prepare_probes, probe_report
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
    outdirs = [a for name in SID_SPLITS for a in ("--split", name, str(tmp_path / "sid" / name))]
    tokens = ["--token_list", str(tmp_path / "sid" / "tokens.txt")]
    prepare_probes.main(["sid", "--src", str(src), *outdirs, *tokens])
    assert read_key_file(tmp_path / "sid" / "test" / "text") == splits["test"]
    assert (tmp_path / "sid" / "tokens.txt").read_text().split() == [
        "s1",
        "s2",
        "s3",
        "s4",
        "<unk>",
    ]
    with pytest.raises(SystemExit, match=r"--split \['train', 'valid', 'valid'\]: give each of"):
        prepare_probes.main(["sid", "--src", str(src), *outdirs[:6], *outdirs[3:6], *tokens])


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


def write_in_place(path: Path, entries: Dict[str, str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_key_file(path, entries)


def test_score_probes_names_a_probe_that_was_not_decoded(tmp_path):
    runs = [Run("ils_seed0", "ils", 0, tmp_path / "asr")]
    layout = ProbeLayout(tmp_path / "probe", tmp_path / "probes")
    write_in_place(layout.reference("sid", "test"), {"u1": "s1"})
    with pytest.raises(FileNotFoundError, match="sid probe of ils_seed0 is not decoded"):
        score_probes(runs, layout, {"sid": ["test"]}, "valid.loss.best.pth")


def probe_layout_keys(*args: str) -> Dict[str, str]:
    command = [sys.executable, "-m", "espnet_ils.bin.probe_layout", *args]
    result = subprocess.run(command, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return dict(line.split("\t") for line in result.stdout.splitlines())


def test_the_recipe_reads_its_probe_paths_from_the_layout_without_torch(tmp_path):
    """ils.sh's probe_path[...] (espnet_ils.bin.probe_layout) are ProbeLayout's paths, in a
    process that imports neither torch nor ESPnet."""
    roots = ["--dumpdir", "dump", "--expdir", "exp", "--it2_tag", "it2_L2_km100"]
    sets = ["--pr_train_set", "train", "--valid_set", "dev", "--test_sets", "test_a test_b"]
    keys = probe_layout_keys(*roots, "--probe_tasks", "pr sid", "--runs", "ils_seed0", *sets)
    layout = ProbeLayout.of_recipe(Path("dump"), Path("exp"), "it2_L2_km100")
    assert layout == ProbeLayout(Path("dump/probe"), Path("exp/probes_it2_L2_km100"))
    assert keys["results"] == "exp/probes_it2_L2_km100/probes.tsv" == str(layout.results)
    assert keys["pr/sets"] == "train dev test_a test_b" and keys["pr/tests"] == "test_a test_b"
    assert keys["pr/train"] == keys["pr/set/train"] == "dump/probe/pr/train"
    assert (
        keys["pr/valid"] == "dump/probe/pr/dev" and keys["pr/tokens"] == "dump/probe/pr/tokens.txt"
    )
    assert keys["sid/sets"] == " ".join(SID_SPLITS) and keys["sid/tests"] == "test"
    assert keys["sid/set/test"] == str(layout.set_dir("sid", "test")) == "dump/probe/sid/test"
    assert keys["sid/done"] == "dump/probe/sid/.done"
    assert keys["sid/exp/ils_seed0"] == "exp/probes_it2_L2_km100/sid_ils_seed0"
    decode = keys["pr/decode/ils_seed0/test_b"]
    assert decode == "exp/probes_it2_L2_km100/pr_ils_seed0/decode_test_b"
    assert str(layout.hypotheses("pr", "ils_seed0", "test_b")) == decode + "/text"
    code = "import sys, espnet_ils.bin.probe_layout; print(*sorted(sys.modules))"
    loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()
    assert "espnet_ils.analysis.probes" in loaded and not {"torch", "espnet2"} & set(loaded)
    with pytest.raises(subprocess.CalledProcessError):
        subprocess.run([sys.executable, "-m", "espnet_ils.bin.probe_layout", *roots,
                        "--probe_tasks", "pr asr"], check=True, capture_output=True)  # fmt: skip


def test_probe_report_scores_every_run_from_the_layout(tmp_path):
    layout = ProbeLayout.of_recipe(tmp_path / "dump", tmp_path / "exp", "it2_L2_km100")
    runs = tmp_path / "exp" / "runs.tsv"
    runs.parent.mkdir()
    runs.write_text(
        "run\tarm\tseed\titeration\tssl_exp\tasr_exp\n"
        "ils_seed0\tils\t0\tit2\ts\ta\nhubert_seed0\thubert\t0\tit2\ts\ta\n"
    )
    write_in_place(layout.reference("pr", "test"), {"u1": "k ae t", "u2": "d ao g"})
    write_in_place(layout.reference("sid", "test"), {"u1": "s1", "u2": "s2"})
    for run in ("ils_seed0", "hubert_seed0"):
        write_in_place(layout.hypotheses("pr", run, "test"), {"u1": "k ae t", "u2": "d ao"})
        write_in_place(layout.hypotheses("sid", run, "test"), {"u1": "s1", "u2": "s1"})
        for task in ("pr", "sid"):
            weights = {LAYER_WEIGHTS_KEY: torch.tensor([0.0, 1.0, 2.0])}
            torch.save(weights, layout.probe_exp(task, run) / "valid.loss.best.pth")
    probe_report.main(["--runs", str(runs), "--dumpdir", str(tmp_path / "dump"), "--expdir",
                       str(tmp_path / "exp"), "--it2_tag", "it2_L2_km100", "--probe_tasks",
                       "pr sid", "--test_sets", "test"])  # fmt: skip
    rows = [line.split("\t") for line in layout.results.read_text().splitlines()[1:]]
    assert {(r[0], r[2], float(r[3])) for r in rows} == {
        (run, metric, value)
        for run in ("ils_seed0", "hubert_seed0")
        for metric, value in (("PER test (%)", 16.6667), ("SID accuracy test (%)", 50.0))  # 1 of 6
    }
    assert len(layout.weights_table.read_text().splitlines()) == 1 + 2 * 2 * 3
    assert png_size(layout.weights_plot) == (1080, 384)  # a panel per task

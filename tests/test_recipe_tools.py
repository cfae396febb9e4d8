"""The recipe's data preparation, formatting, scoring and option checking."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from helpers.shared_data import LIBRISPEECH_SAMPLE, needs_sample

from espnet_ils.bin.derive_baseline_config import baseline_config
from espnet_ils.bin.merge_decoding import merge_decoding
from espnet_ils.bin.score import main as score_main
from espnet_ils.data.datadir import format_data_dir
from espnet_ils.data.kaldi_files import read_key_file
from espnet_ils.decoding.scoring import count_errors

RECIPE = Path(__file__).resolve().parents[1] / "egs2/librispeech_ils/ssl1"


def prepare(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(RECIPE / "local/prepare_librispeech.py"), *args],
        capture_output=True,
        text=True,
    )


@needs_sample
def test_librispeech_preparation_on_real_files(tmp_path):
    dst = tmp_path / "dev_clean"
    result = prepare("--src", str(LIBRISPEECH_SAMPLE / "dev-clean"), "--dst", str(dst))
    assert result.returncode == 0, result.stderr
    wav = read_key_file(dst / "wav.scp")
    text = read_key_file(dst / "text")
    assert len(wav) == 10 and list(wav) == list(text) == sorted(wav)
    assert text["1988-24833-0000"] == "THE TWO STRAY KITTENS GRADUALLY MAKE THEMSELVES AT HOME"
    assert all(Path(p).is_file() and p.endswith(".flac") for p in wav.values())
    assert read_key_file(dst / "utt2spk")["2412-153948-0002"] == "2412-153948"
    spk2utt = read_key_file(dst / "spk2utt")
    assert sorted(spk2utt) == ["1988-24833", "2412-153948", "3752-4944"]
    assert int(read_key_file(dst / "utt2num_samples")["1988-24833-0000"]) == 53120
    assert (dst / ".done").is_file()


@needs_sample
def test_librispeech_sets_merge_and_refuse_orphans(tmp_path):
    merged = tmp_path / "merged"
    assert (
        prepare(
            "--src",
            str(LIBRISPEECH_SAMPLE / "dev-clean"),
            "--src",
            str(LIBRISPEECH_SAMPLE / "test-clean"),
            "--dst",
            str(merged),
        ).returncode
        == 0
    )
    assert len(read_key_file(merged / "wav.scp")) == 14

    broken = tmp_path / "broken" / "1988" / "24833"
    broken.mkdir(parents=True)
    source = LIBRISPEECH_SAMPLE / "dev-clean" / "1988" / "24833"
    (broken / "1988-24833.trans.txt").write_text((source / "1988-24833.trans.txt").read_text())
    for flac in sorted(source.glob("*.flac"))[:-1]:  # the last transcript line has no audio
        (broken / flac.name).symlink_to(flac)
    result = prepare("--src", str(tmp_path / "broken"), "--dst", str(tmp_path / "out"))
    assert result.returncode != 0
    assert "utterance 1988-24833-0003 has no audio file" in result.stderr
    assert not (tmp_path / "out" / ".done").exists()

    missing = prepare("--src", str(tmp_path / "nowhere"), "--dst", str(tmp_path / "out2"))
    assert missing.returncode != 0 and "nowhere: no such directory" in missing.stderr


@needs_sample
def test_format_data_dir_filters_by_duration(tmp_path):
    src = tmp_path / "src"
    assert (
        prepare("--src", str(LIBRISPEECH_SAMPLE / "dev-clean"), "--dst", str(src)).returncode == 0
    )
    durations = {u: float(d) for u, d in read_key_file(src / "utt2dur").items()}
    kept = format_data_dir(src, tmp_path / "dst", min_duration=5.0, max_duration=20.0)
    shape = read_key_file(tmp_path / "dst" / "speech_shape")
    assert kept == len(shape) == sum(5.0 <= d <= 20.0 for d in durations.values())
    assert set(read_key_file(tmp_path / "dst" / "text")) == set(shape)
    assert (tmp_path / "dst" / ".done").is_file()
    with pytest.raises(ValueError, match="no utterance of 100.0-200.0 s"):
        format_data_dir(src, tmp_path / "none", 100.0, 200.0)


def test_format_data_dir_names_an_utterance_missing_from_a_keyed_file(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "wav.scp").write_text("a x.flac\nb y.flac\n")
    (src / "utt2num_samples").write_text("a 16000\nb 16000\n")
    (src / "text").write_text("a HELLO\n")
    with pytest.raises(ValueError, match="no entry for utterance b"):
        format_data_dir(src, tmp_path / "dst", 0.0, 100.0)
    assert not (tmp_path / "dst" / ".done").exists()


def test_baseline_config_differs_only_in_the_supervised_layers():
    ils = yaml.safe_load((RECIPE / "conf/tuning/train_ssl_ils_base_it2.yaml").read_text())
    hubert = baseline_config(ils)
    assert hubert["loss"][0]["conf"]["layers"] == [12]
    hubert["loss"][0]["conf"]["layers"] = ils["loss"][0]["conf"]["layers"]
    assert hubert == ils


def test_scoring_counts_and_results_md(tmp_path):
    counts = count_errors({"a": "THE CAT SAT", "b": "HI"}, {"a": "THE BAT SAT ON"}, "word")
    assert (counts.tokens, counts.substitutions, counts.deletions, counts.insertions) == (
        4,
        1,
        1,
        1,
    )
    assert counts.error_rate == pytest.approx(75.0)
    assert count_errors({"a": "AB C"}, {"a": "AC C"}, "char").substitutions == 1

    refs = tmp_path / "raw" / "test"
    refs.mkdir(parents=True)
    (refs / "text").write_text("u1 THE CAT\nu2 A DOG\n")
    decode = tmp_path / "exp" / "asr_x" / "decode_greedy" / "test"
    for job, line in ((1, "u1 THE CAT"), (2, "u2 A")):
        (decode / f"output.{job}" / "1best_recog").mkdir(parents=True)
        (decode / f"output.{job}" / "1best_recog" / "text").write_text(line + "\n")
        (decode / "split").mkdir(exist_ok=True)
        (decode / "split" / f"keys.{job}").write_text(line.split()[0] + " x.flac\n")
    merge_decoding(decode, 2, decode / "text")
    score_main(
        ["--ref_dir", str(tmp_path / "raw"), "--results", str(tmp_path / "RESULTS.md"), str(decode)]
    )
    results = (tmp_path / "RESULTS.md").read_text()
    assert "|decode_greedy/test|2|4|75.0|0.0|25.0|0.0|25.0|50.0|" in results
    assert (decode / "score_cer" / "result.txt").is_file()


def test_merge_decoding_names_undecoded_utterances(tmp_path):
    (tmp_path / "split").mkdir()
    (tmp_path / "split" / "keys.1").write_text("u1 x\nu2 y\n")
    (tmp_path / "output.1" / "1best_recog").mkdir(parents=True)
    (tmp_path / "output.1" / "1best_recog" / "text").write_text("u1 HI\n")
    with pytest.raises(ValueError, match=r"no hypothesis for \['u2'\]"):
        merge_decoding(tmp_path, 1, tmp_path / "text")


def run_pipeline(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["./ils.sh", *args], cwd=RECIPE, capture_output=True, text=True)


def test_help_lists_every_stage():
    result = run_pipeline("--help")
    assert result.returncode == 0
    for stage in range(1, 13):
        assert re.search(rf"^ *{stage}: \S", result.stdout, re.MULTILINE), (
            f"stage {stage} not listed"
        )
    assert "--it2_layer [6]" in result.stdout
    options = re.findall(r"^  --(\w+) \[", result.stdout, re.MULTILINE)
    assert options[0] == "stage" and options[-1] == "hf_repo" and len(options) == len(set(options))
    assert not {"runs", "it1_exp", "help_message", "option_names"} & set(options)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--stage", "13"], "--stage 13: stages are 1..12"),
        (["--stage", "x"], "--stage must be a non-negative integer"),
        (["--stage", "5", "--stop_stage", "4"], "--stage 5 is after --stop_stage 4"),
        (
            ["--it2_config", "conf/tuning/nope.yaml"],
            "--it2_config conf/tuning/nope.yaml: no such file",
        ),
        (["--corpus", "timit"], "--corpus timit: librispeech or mini"),
        (
            ["--quality_fit_hours", "1h"],
            "--quality_fit_hours must be a non-negative number, got '1h'",
        ),
        (["--num_nodes", "2"], "--num_nodes 2: training on several nodes needs a scheduler"),
        (
            ["--num_splits_ssl", "0"],
            "--num_splits_ssl must be an integer >= 1 (1: no split), got '0'",
        ),
        (
            ["--num_splits_asr", "4x"],
            "--num_splits_asr must be an integer >= 1 (1: no split), got '4x'",
        ),
        (["--train_jobs", "0"], "--train_jobs must be a positive integer, got '0'"),
        (["--beam_size", "-1"], "--beam_size must be a positive integer, got '-1'"),
        (["--nj", "two"], "--nj must be a positive integer, got 'two'"),
        (["--seed", "1.5"], "--seed must be a non-negative integer, got '1.5'"),
        (["--kmeans_portion", "0"], "--kmeans_portion must be a positive number, got '0'"),
        (["--kmeans_portion", "0e3"], "--kmeans_portion must be a positive number, got '0e3'"),
        (["--mini_hours", "1h"], "--mini_hours must be a positive number, got '1h'"),
        (["--hf_upload", "yes"], "--hf_upload yes: true or false"),
        (["--hf_transformers", "no"], "--hf_transformers no: true or false"),
        (["--hf_repo", "ils_base"], "--hf_repo ils_base: a Hugging Face repository is user/name"),
        (["--bogus", "1"], "Unknown option --bogus"),
        # Variables of the script that are not options are refused, not overwritten.
        (["--runs", "x"], "Unknown option --runs"),
        (["--help_message", "x"], "Unknown option --help_message"),
        (["--it1_exp", "x"], "Unknown option --it1_exp"),
        (["--nj", "2", "--stage"], "Option --stage needs a value"),
        # These four build every config (15 s of ESPnet's import) first: the full suite only.
        pytest.param(
            ["--it1_n_clusters", "50"],
            "with the token list of --it1_n_clusters 50: ValueError: loss conf num_classes=100 "
            "(in conf/tuning/train_ssl_hubert_base_it1.yaml) but the token list (51 tokens) holds "
            "50 cluster ids",
            marks=pytest.mark.slow,
        ),
        pytest.param(
            ["--asr_config", "conf/tuning/train_ssl_ils_mini.yaml"],
            "--asr_config conf/tuning/train_ssl_ils_mini.yaml is a pretraining (SSL task) config",
            marks=pytest.mark.slow,
        ),
        pytest.param(  # stage 12 could not export the log-mel front to transformers
            [
                "--hf_repo",
                "user/ils_mini",
                "--asr_config",
                "conf/tuning/train_asr_ctc_mini.yaml",
                "--it1_config",
                "conf/tuning/train_ssl_hubert_mini_it1.yaml",
                "--it2_config",
                "conf/tuning/train_ssl_ils_mini.yaml",
                "--it2_n_clusters",
                "100",
            ],
            "front end DefaultFrontend: WavLM cannot express it",
            marks=pytest.mark.slow,
        ),  # fmt: skip
        pytest.param(
            ["--stage", "2", "--stop_stage", "2", "--datadir", "/nonexistent"],
            "/nonexistent/dev_clean does not exist: run the stage that makes it (stage 1)",
            marks=pytest.mark.slow,
        ),
    ],
)
def test_bad_options_stop_before_any_work(args, message, tmp_path):
    result = run_pipeline(
        "--expdir", str(tmp_path / "exp"), "--dumpdir", str(tmp_path / "dump"), *args
    )
    assert result.returncode != 0
    assert message in result.stderr
    assert not (tmp_path / "dump").exists() and not (tmp_path / "exp").exists()


@pytest.mark.parametrize("args", [["--profile"], ["--profile", "--nj", "2"]])
def test_run_mini_profile_without_a_value_is_named(args):
    result = subprocess.run(["./run_mini.sh", *args], cwd=RECIPE, capture_output=True, text=True)
    assert result.returncode != 0
    assert "--profile needs a value: ci, mini or small" in result.stderr


def test_run_mini_passes_only_options_of_ils_sh(tmp_path):
    result = subprocess.run(
        ["./run_mini.sh", "--profile", "ci", "--expdir", str(tmp_path / "exp"), "--runs", "x"],
        cwd=RECIPE,
        capture_output=True,
        text=True,
    )
    assert result.returncode != 0 and "Unknown option --runs" in result.stderr
    assert not (tmp_path / "exp").exists()


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs 2 cores")
def test_local_runner_uses_every_core_even_with_omp_num_threads_1(tmp_path):
    """path.sh exports OMP_NUM_THREADS=1, which GNU nproc obeys; the runner must not."""
    # Each job waits for the other one's marker: they only both succeed when they run at once.
    wait_for_both = (
        f"touch {tmp_path}/started.JOB; for i in $(seq 100); do "
        f"[ -e {tmp_path}/started.1 ] && [ -e {tmp_path}/started.2 ] && exit 0; sleep 0.1; done; "
        "exit 1"
    )
    result = subprocess.run(
        ["utils/run.sh", "JOB=1:2", f"{tmp_path}/log.JOB", "bash", "-c", wait_for_both],
        cwd=RECIPE,
        env=dict(os.environ, OMP_NUM_THREADS="1"),
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr


def test_a_step_alone_gets_the_cores_and_trainings_at_once_share_them(tmp_path):
    """steps/common.sh with a stand-in python that records the OMP_NUM_THREADS each training was
    started with (and leaves the checkpoint launch_training looks for); path.sh's 1 is overridden
    for a training alone, shared by the trainings each_run starts at once, and solo gives a lone
    job cmd.sh's train_cmd_threads."""
    python = tmp_path / "python"
    python.write_text(
        "#!/usr/bin/env bash\n"
        'while [ "$1" != --output_dir ]; do shift; done\n'
        'echo "${OMP_NUM_THREADS}" > "$2/threads"; touch "$2/model.pth"\n'
    )
    python.chmod(0o755)
    script = f"""
        set -euo pipefail
        log() {{ :; }}
        source steps/common.sh
        cores=4 python={python} train_threads=0 ngpu=0 num_nodes=1 seed=0 cuda_cmd=run
        train() {{ launch_training "{tmp_path}/$1" model.pth module; }}
        train_jobs=2
        train alone
        runs="a b c" each_run train
        runs="one" each_run train
        train_cmd_threads=3
        solo bash -c 'echo "${{OMP_NUM_THREADS}}" > {tmp_path}/solo'
    """
    result = subprocess.run(
        ["bash", "-c", script],
        cwd=RECIPE,
        env=dict(os.environ, OMP_NUM_THREADS="1"),
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    threads = {
        run: (tmp_path / run / "threads").read_text().strip() for run in "alone a b c one".split()
    }
    assert threads == {"alone": "4", "a": "2", "b": "2", "c": "2", "one": "4"}
    assert (tmp_path / "solo").read_text().strip() == "3"

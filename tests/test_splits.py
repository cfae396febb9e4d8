"""A training set cut into parts for ESPnet's split iterator (``ils.sh --num_splits_ssl/_asr``):
every utterance in exactly one part, in the same part of wav.scp, text and speech_shape; files
that disagree refused naming the utterances; an SSL training through ``--multiple_iterator true``
on the parts; the memory benchmark's manifest cut as the recipe cuts it."""

from pathlib import Path
from typing import Dict

import pytest
import yaml
from helpers.corpus import SSL_CONFIG, run_module, write_corpus
from helpers.scripts import load_module

from espnet_ils.bin.split_scps import main as split_main
from espnet_ils.data.kaldi_files import read_key_file
from espnet_ils.data.splits import split_keyed_files

bench_manifest_memory = load_module(
    Path(__file__).resolve().parents[1] / "bench" / "bench_manifest_memory.py"
)

FILES = ("wav.scp", "text", "speech_shape")


def write_data_dir(root: Path, utterances: int = 40) -> Dict[str, Dict[str, str]]:
    """wav.scp, text and speech_shape of ``utterances`` utterances, each file in another order."""
    keys = [f"spk{i % 3}-utt{i:03d}" for i in range(utterances)]
    entries = {
        "wav.scp": {k: f"/corpus/{k}.flac" for k in keys},
        "text": {k: " ".join(str((i * 7 + j) % 500) for j in range(5)) for i, k in enumerate(keys)},
        "speech_shape": {k: str(16000 + 320 * i) for i, k in enumerate(keys)},
    }
    root.mkdir(parents=True, exist_ok=True)
    orders = {
        "wav.scp": sorted(keys),
        "text": sorted(keys)[::-1],
        "speech_shape": keys[1::2] + keys[::2],
    }
    for name, values in entries.items():
        (root / name).write_text("".join(f"{k} {values[k]}\n" for k in orders[name]))
    return entries


def read_parts(split_dir: Path, name: str, num_splits: int) -> list:
    return [read_key_file(split_dir / name / f"split.{i}") for i in range(num_splits)]


@pytest.mark.parametrize("num_splits", [2, 3, 5])
def test_every_utterance_lands_once_in_the_same_part_of_every_file(tmp_path, num_splits):
    entries = write_data_dir(tmp_path / "data")
    split_dir = tmp_path / f"split{num_splits}"
    split_main(
        ["--scps", *(str(tmp_path / "data" / n) for n in FILES), "--num_splits", str(num_splits)]
        + ["--output_dir", str(split_dir)]
    )
    parts = {name: read_parts(split_dir, name, num_splits) for name in FILES}
    for name in FILES:
        assert (split_dir / name / "num_splits").read_text().strip() == str(num_splits)
        merged = {k: v for part in parts[name] for k, v in part.items()}
        assert merged == entries[name]  # the union, values unchanged
        assert sum(len(part) for part in parts[name]) == len(entries[name])  # no key twice
        assert all(parts[name]), "a part is empty"
    for i in range(num_splits):
        assert set(parts["wav.scp"][i]) == set(parts["text"][i]) == set(parts["speech_shape"][i])


@pytest.mark.parametrize(
    "spoil, num_splits, message",
    [
        (
            lambda d: d["text"].pop("spk1-utt007"),
            2,
            r"wav.scp lists 1 utterance\(s\) .*spk1-utt007",
        ),
        (
            lambda d: d["wav.scp"].update({"spk9-utt999": "/x.flac"}),
            2,
            r"wav.scp lists 1 .*spk9-utt999",
        ),
        (lambda d: None, 0, "num_splits=0: must be >= 1"),
        (lambda d: None, 200, "num_splits=200: part .* gets no utterance .*use fewer parts"),
    ],
    ids=["missing_in_text", "extra_in_wav_scp", "zero_parts", "more_parts_than_utterances"],
)
def test_files_that_disagree_or_too_many_parts_are_refused(tmp_path, spoil, num_splits, message):
    entries = write_data_dir(tmp_path / "data")
    spoil(entries)
    for name, values in entries.items():
        (tmp_path / "data" / name).write_text("".join(f"{k} {v}\n" for k, v in values.items()))
    with pytest.raises(ValueError, match=message):
        split_keyed_files([tmp_path / "data" / n for n in FILES], num_splits, tmp_path / "split")
    assert not list((tmp_path / "split").glob("*/num_splits"))  # never marked complete


def test_an_utterance_repeated_in_one_file_is_refused(tmp_path):
    write_data_dir(tmp_path / "data")
    with (tmp_path / "data" / "text").open("a") as f:
        f.write("spk1-utt004 1 2 3\n")
    with pytest.raises(ValueError, match="the same utterances but not equally often"):
        split_keyed_files([tmp_path / "data" / n for n in FILES], 3, tmp_path / "split")


@pytest.mark.slow
def test_ssl_training_reads_every_part_through_the_multiple_iterator(tmp_path):
    """ils.sh's training arguments with --num_splits_ssl 2: ESPnet builds one iterator per part."""
    write_corpus(tmp_path)
    split_dir = tmp_path / "split2"
    counts = split_keyed_files(
        [tmp_path / "wav.scp", tmp_path / "labels", tmp_path / "speech_shape"], 2, split_dir
    )
    config = dict(SSL_CONFIG, batch_size=2, max_epoch=1, num_iters_per_epoch=2, keep_nbest_models=1)
    (tmp_path / "ssl.yaml").write_text(yaml.safe_dump(config))
    exp = tmp_path / "exp"
    result = run_module(
        "espnet_ils.bin.ssl_train",
        [
            "--config", tmp_path / "ssl.yaml", "--output_dir", exp, "--ngpu", 0,
            "--token_list", tmp_path / "km_tokens.txt", "--token_type", "word",
            "--multiple_iterator", "true",
            "--train_data_path_and_name_and_type", f"{split_dir / 'wav.scp'},speech,sound",
            "--train_data_path_and_name_and_type", f"{split_dir / 'labels'},text,text",
            "--train_shape_file", split_dir / "speech_shape",
            "--valid_data_path_and_name_and_type", f"{tmp_path / 'wav.scp'},speech,sound",
            "--valid_data_path_and_name_and_type", f"{tmp_path / 'labels'},text,text",
            "--valid_shape_file", tmp_path / "speech_shape",
        ],
        tmp_path,
    )  # fmt: skip
    assert counts == [4, 4]
    for part in (0, 1):  # both parts' iterators were built, in the epoch's order
        assert f"Building {part}th iter-factory" in result.stderr
        assert f"{split_dir / 'labels'}/split.{part}" in result.stderr
    assert (exp / "valid.loss.best.pth").is_file()
    assert yaml.safe_load((exp / "config.yaml").read_text())["multiple_iterator"] is True


def test_the_benchmark_manifest_is_consistent_and_cut_as_the_recipe_cuts_it(tmp_path):
    """bench_manifest_memory at a tiny size: its parts are those split_scps makes of the whole."""
    whole = bench_manifest_memory.write_manifest(tmp_path / "whole", hours=0.2)
    files = {name: read_key_file(tmp_path / "whole" / name) for name in FILES}
    assert whole.utterances == whole.written == 36 == len(files["wav.scp"])
    assert list(files["wav.scp"]) == list(files["text"]) == list(files["speech_shape"])
    for utt, labels in files["text"].items():
        samples = int(files["speech_shape"][utt])
        assert len(labels.split()) == (samples - 400) // 320 + 1  # 50 Hz
        assert 16 * 16000 <= samples <= 24 * 16000
        assert all(0 <= int(label) < 500 for label in labels.split())
        assert files["wav.scp"][utt].endswith(".flac")

    split_keyed_files([tmp_path / "whole" / n for n in FILES], 4, tmp_path / "recipe")
    parts = bench_manifest_memory.write_manifest(
        tmp_path / "parts", 0.2, num_splits=4, parts=(0, 1)
    )
    assert parts.written == sum(len(read_parts(tmp_path / "recipe", "text", 4)[i]) for i in (0, 1))
    for name in FILES:
        for i in (0, 1):
            written = (tmp_path / "parts" / name / f"split.{i}").read_text()
            assert written == (tmp_path / "recipe" / name / f"split.{i}").read_text()
        assert (tmp_path / "parts" / name / "split.3").resolve().name == "split.0"

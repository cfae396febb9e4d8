"""The embedded mini corpus: grammar, phone mapping, frame alignment, and a tiny build end to end."""

import hashlib
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Dict, List

import numpy as np
import pytest
import soundfile as sf
from helpers.scripts import load_module

from espnet_ils.data.audio import ENCODER_HOP, MFCC_HOP
from espnet_ils.data.kaldi_files import read_key_file

RECIPE_LOCAL = Path(__file__).parents[1] / "egs2/librispeech_ils/ssl1/local"
load_module(RECIPE_LOCAL / "mini_corpus")  # recipe-local, not part of espnet_ils: imported below

from mini_corpus import voices  # noqa: E402
from mini_corpus.mini_corpus import (  # noqa: E402
    MARKER,
    SETS,
    CorpusOptions,
    build_mini_corpus,
)
from mini_corpus.phones import (  # noqa: E402
    ESPEAK_RHOTIC,
    ESPEAK_TO_COMMON,
    FESTIVAL_TO_COMMON,
    INVENTORY,
    PhoneSegment,
    espeak_phone_map,
    to_common,
)
from mini_corpus.sentences import TRANSCRIPT_PATTERN, generate_sentences  # noqa: E402
from mini_corpus.tts import parse_flite_segments  # noqa: E402

INSTALL_SCRIPT = RECIPE_LOCAL / "install_tts.sh"
TINY = CorpusOptions(seconds=60, seed=0)


def tree_state(root: Path) -> Dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in root.rglob("*")}


# ----------------------------------------------------------------------------------------------
# Units: no engine needed
# ----------------------------------------------------------------------------------------------
def test_sentences_are_deterministic_unique_and_librispeech_style():
    first = [s for _, s in zip(range(300), generate_sentences(seed=3))]
    again = [s for _, s in zip(range(300), generate_sentences(seed=3))]
    other = [s for _, s in zip(range(300), generate_sentences(seed=4))]
    assert first == again
    assert [s.transcript for s in first] != [s.transcript for s in other]
    assert len({s.transcript for s in first}) == len(first)
    assert all(TRANSCRIPT_PATTERN.match(s.transcript) for s in first)
    assert any("'" in s.transcript for s in first)


def test_mapping_tables_only_produce_the_common_inventory():
    for table in (FESTIVAL_TO_COMMON, ESPEAK_TO_COMMON, ESPEAK_RHOTIC):
        for labels in table.values():
            assert set(labels) <= set(INVENTORY)
    assert len(INVENTORY) == 40 and INVENTORY[0] == "sil"
    assert espeak_phone_map("en-us+m1")["A@"] == ("aa", "r")
    assert espeak_phone_map("en+f1")["A@"] == ("aa",)


def test_to_common_splits_merges_and_rejects_unknown_phones():
    segments = [
        PhoneSegment("_:", 0.0, 0.1),
        PhoneSegment("A@", 0.1, 0.3),
        PhoneSegment(";", 0.3, 0.35),
        PhoneSegment("i:", 0.35, 0.5),
    ]
    mapped = to_common(segments, espeak_phone_map("en-us"), "test")
    assert [s.label for s in mapped] == ["sil", "aa", "r", "iy"]
    assert mapped[1].end == pytest.approx(0.2) and mapped[2].end == pytest.approx(0.35)
    with pytest.raises(RuntimeError, match="engine phone 'qq'.*phones.py"):
        to_common([PhoneSegment("qq", 0.0, 0.1)], FESTIVAL_TO_COMMON, "festival voice x")


def test_flite_timings_parse_and_split_output_is_refused():
    segments = parse_flite_segments("pau:0.220 dh:0.254 ax:0.292 \n", "flite")
    assert [(s.label, s.start, s.end) for s in segments] == [
        ("pau", 0.0, 0.22),
        ("dh", 0.22, 0.254),
        ("ax", 0.254, 0.292),
    ]
    with pytest.raises(RuntimeError, match="one line"):
        parse_flite_segments("pau:0.1\npau:0.1\n", "flite")


def test_bad_options_raise():
    with pytest.raises(ValueError, match="--hours or --minutes"):
        CorpusOptions(seconds=0, seed=0)
    with pytest.raises(ValueError, match="--ft_fraction"):
        CorpusOptions(seconds=60, seed=0, ft_fraction=0)


def test_install_script_installs_every_needed_package():
    line = re.search(r"^packages=\((.*)\)$", INSTALL_SCRIPT.read_text(), re.M)
    assert line is not None and sorted(line.group(1).split()) == voices.all_packages()


def test_speaker_table_is_disjoint_by_source_and_large_enough():
    sources = {}
    for speaker in voices.SPEAKERS:
        assert sources.setdefault(speaker.source, speaker.split) == speaker.split
    assert len(voices.SPEAKERS) >= 8
    named = {s.voice for s in voices.SPEAKERS if s.engine != voices.ESPEAK}
    for voice in ("kal", "ked", "slt", "awb", "rms"):
        assert any(voice in name for name in named)


def test_missing_engine_names_the_packages(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no festival, no flite
    monkeypatch.setattr(voices, "find_espeak_library", lambda: None)
    with pytest.raises(RuntimeError, match="apt-get install -y espeak-ng festival flite") as error:
        build_mini_corpus(tmp_path / "corpus", TINY, nj=1)
    assert "install_tts.sh" in str(error.value)
    assert not (tmp_path / "corpus").exists()


# ----------------------------------------------------------------------------------------------
# A tiny corpus (~1 minute of audio), built once per module
# ----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def engines() -> None:
    missing = voices.missing_packages()
    if missing and os.geteuid() == 0 and shutil.which("apt-get"):
        subprocess.run(["bash", str(INSTALL_SCRIPT)], check=False)
        missing = voices.missing_packages()
    if missing:
        pytest.skip(
            f"speech synthesisers missing ({', '.join(sorted(missing))}) and not installable "
            f"here (needs root and apt-get): run {INSTALL_SCRIPT} as root"
        )


@pytest.fixture(scope="module")
def corpus(engines, tmp_path_factory) -> Path:
    outdir = tmp_path_factory.mktemp("mini") / "corpus"
    build_mini_corpus(outdir, TINY, nj=2)
    return outdir


def set_speakers(corpus: Path, name: str) -> List[str]:
    return sorted(set(read_key_file(corpus / name / "utt2spk").values()))


def test_sets_are_disjoint_by_speaker_and_source(corpus):
    source = {spk: info.split()[2] for spk, info in read_key_file(corpus / "speakers").items()}
    held = {name: set(set_speakers(corpus, name)) for name in ("train", "dev", "test")}
    assert held["train"] and held["dev"] and held["test"]
    assert not held["train"] & held["dev"] and not held["train"] & held["test"]
    assert not held["dev"] & held["test"]
    sources = {name: {source[spk] for spk in spks} for name, spks in held.items()}
    assert not sources["train"] & sources["dev"] and not sources["train"] & sources["test"]
    assert not sources["dev"] & sources["test"]
    finetune = read_key_file(corpus / "train_ft" / "utt2spk")
    assert set(finetune) <= set(read_key_file(corpus / "train" / "utt2spk"))
    assert set(finetune.values()) == held["train"]


@pytest.mark.parametrize("name", SETS)
def test_data_dir_files_are_sorted_and_consistent(corpus, name):
    data = corpus / name
    for file in ("wav.scp", "text", "utt2spk", "spk2utt", "utt2dur", "phone_alignment"):
        keys = [line.split(" ", 1)[0] for line in (data / file).read_text().splitlines()]
        assert keys == sorted(keys) and len(keys) == len(set(keys)), file
    utt2spk = read_key_file(data / "utt2spk")
    spk2utt = {spk: utts.split() for spk, utts in read_key_file(data / "spk2utt").items()}
    assert {utt: spk for spk, utts in spk2utt.items() for utt in utts} == utt2spk
    assert all(utt.startswith(spk + "-") for utt, spk in utt2spk.items())
    for utt, text in read_key_file(data / "text").items():
        assert TRANSCRIPT_PATTERN.match(text), (utt, text)


@pytest.mark.parametrize("name", ("train", "dev", "test"))
def test_audio_is_16k_mono_flac_matching_utt2dur_and_alignments(corpus, name):
    data = corpus / name
    durations = read_key_file(data / "utt2dur")
    alignments = {
        hop: {utt: labels.split() for utt, labels in read_key_file(data / file).items()}
        for hop, file in ((ENCODER_HOP, "phone_alignment"), (MFCC_HOP, "phone_alignment_100hz"))
    }
    for utt, path in read_key_file(data / "wav.scp").items():
        info = sf.info(path)
        assert (info.format, info.samplerate, info.channels) == ("FLAC", 16000, 1), utt
        wave, _ = sf.read(path, dtype="float32")
        assert len(wave) == info.frames and np.abs(wave).max() > 0.01
        assert float(durations[utt]) == pytest.approx(info.frames / 16000, abs=1e-4)
        for hop, labels in alignments.items():
            assert len(labels[utt]) == (info.frames - 400) // hop + 1, (utt, hop)
            assert set(labels[utt]) <= set(INVENTORY), utt
            assert len(set(labels[utt]) - {"sil"}) >= 5, utt


def test_same_seed_gives_the_same_corpus(corpus, tmp_path):
    build_mini_corpus(tmp_path / "again", TINY, nj=1)
    for name in SETS:
        for file in ("text", "utt2dur", "phone_alignment", "phone_alignment_100hz"):
            assert (tmp_path / "again" / name / file).read_text() == (
                corpus / name / file
            ).read_text(), (name, file)
    digests = []
    for root in (corpus, tmp_path / "again"):
        files = sorted((root / "wav").rglob("*.flac"))
        digests.append(
            [hashlib.sha1(sf.read(f, dtype="int16")[0].tobytes()).hexdigest() for f in files]
        )
    assert digests[0] == digests[1]


def test_second_run_does_nothing_and_a_partial_run_is_rebuilt(corpus, tmp_path):
    before = tree_state(corpus)
    build_mini_corpus(corpus, TINY, nj=2)
    assert tree_state(corpus) == before

    partial = tmp_path / "partial"
    shutil.copytree(corpus, partial)
    (partial / MARKER).unlink()
    removed = sorted((partial / "wav").rglob("*.flac"))[0]
    removed.unlink()
    (partial / "wav" / "stale.flac").write_bytes(b"")
    build_mini_corpus(partial, TINY, nj=2)
    assert removed.is_file() and not (partial / "wav" / "stale.flac").exists()
    assert (partial / MARKER).is_file()

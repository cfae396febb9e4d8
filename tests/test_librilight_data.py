"""Stage 1 on Libri-Light (local/prepare_librilight.py, local/data.sh): utterances cut by the VAD
JSONs, equal to the slices of the source FLAC sample for sample; shards skipped on re-run and cut
again when a file changes; each bad input named with its file; the download stops offline naming
the subset, and a tarball with another md5 is removed.

The corpus is Libri-Light's layout (``<subset>/<speaker>/<book>/<file>.flac`` + ``<file>.json``)
made of the real LibriSpeech files in ../shared/data/librispeech_sample with VAD JSONs written here;
the tests of bad input and downloads use generated audio and run without it.
"""

import logging
import os
import shutil
import subprocess
import tarfile
import time
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import soundfile as sf
from helpers.librilight import SUBSET_OF_SPEAKER, write_json, write_librilight
from helpers.scripts import load_module
from helpers.shared_data import needs_sample

from espnet_ils.data.audio import load_waveform
from espnet_ils.data.datadir import format_data_dir
from espnet_ils.data.kaldi_files import read_key_file

RECIPE = Path(__file__).resolve().parents[1] / "egs2/librispeech_ils/ssl1"
load_module(RECIPE / "local" / "prepare_librilight.py")  # recipe-local, not in espnet_ils

from prepare_librilight import (  # noqa: E402
    END_TOLERANCE_S,
    cut_shard,
    merge_shards,
    plan_utterances,
    shard_of,
    vad_ranges,
)

SR = 16000


def write_generated(root: Path, seconds=(3.0, 2.0)) -> Path:
    """A subset ``root/small`` of generated noise, one speaker, one book, one VAD stretch each."""
    rng = np.random.default_rng(0)
    for index, duration in enumerate(seconds):
        flac = root / "small" / "100" / "book_a" / f"chapter_{index}.flac"
        flac.parent.mkdir(parents=True, exist_ok=True)
        sf.write(str(flac), rng.uniform(-0.5, 0.5, int(duration * SR)), SR, "PCM_16")
        write_json(flac, [[0.1, duration - 0.1]])
    return root / "small"


def cut_all(src: Path, out: Path, nj: int, segment_max_s: float) -> None:
    for job in range(1, nj + 1):
        cut_shard(src, out, nj, job, segment_max_s)


@pytest.mark.parametrize(
    "ranges, expected",
    [
        # joined while the sum stays within 10 (the gaps are dropped); 25 > 10 -> three pieces
        ([(0, 5), (6, 9), (10, 14), (20, 45)],
         [[(0, 5), (6, 9)], [(10, 14)], [(20, 28)], [(28, 36)], [(36, 45)]]),
        ([(0, 4), (7, 13), (13, 20)], [[(0, 4), (7, 13)], [(13, 20)]]),  # exactly 10 fits
        ([(100, 121)], [[(100, 107)], [(107, 114)], [(114, 121)]]),  # 21 -> 7 + 7 + 7
        ([(0, 12), (12, 14)], [[(0, 6)], [(6, 12), (12, 14)]]),  # a last piece joins the next
        ([], []),
    ],
)  # fmt: skip
def test_vad_segments_join_up_to_the_maximum_and_a_longer_one_is_cut_into_equal_pieces(
    ranges, expected
):
    utterances = plan_utterances(ranges, max_samples=10)
    assert utterances == expected
    assert all(sum(e - s for s, e in utt) <= 10 for utt in utterances)
    pieces = [piece for utt in utterances for piece in utt]
    assert sum(e - s for s, e in pieces) == sum(e - s for s, e in ranges)  # every sample kept


def test_vad_seconds_become_samples_and_an_end_within_the_tolerance_is_cut_at_the_file_end(
    tmp_path,
):
    flac = tmp_path / "f.flac"
    write_json(flac, [[0.5, 1.0], [1.0, 1.0], [1.2, 2.0 + END_TOLERANCE_S / 2]])
    assert vad_ranges(flac.with_suffix(".json"), 2 * SR) == [(8000, 16000), (19200, 32000)]


def test_the_shard_of_a_file_depends_on_its_path_alone_and_all_shards_get_files():
    keys = [f"100/book/chapter_{i}" for i in range(200)]
    shards = [shard_of(key, 4) for key in keys]
    assert set(shards) == {1, 2, 3, 4} and shards == [shard_of(key, 4) for key in keys]


@needs_sample
def test_cut_utterances_are_the_vad_slices_of_the_flac_sample_for_sample(tmp_path):
    root = write_librilight(tmp_path / "librilight")
    out, dst = tmp_path / "audio" / "medium", tmp_path / "data" / "unlab_medium"
    cut_all(root / "medium", out, nj=2, segment_max_s=4.0)
    count = merge_shards([out], 2, 4.0, dst)

    wav_scp, sources = read_key_file(dst / "wav.scp"), read_key_file(dst / "utt2source")
    lengths = read_key_file(dst / "utt2num_samples")
    assert count == len(wav_scp) == len(sources) == len(lengths) > 7  # 7 files, several each
    from espnet2.fileio.sound_scp import SoundScpReader  # ESPnet's "sound" type in training

    espnet_reader = SoundScpReader(str(dst / "wav.scp"), dtype="float32")
    covered = {}
    for utt, value in sources.items():
        source, *spans = value.split()
        ranges = [tuple(map(int, span.split(":"))) for span in spans]
        original = sf.read(str(root / source), dtype="float32")[0]
        expected = np.concatenate([original[start:end] for start, end in ranges])
        assert np.array_equal(load_waveform(wav_scp[utt], utt), expected), utt
        rate, array = espnet_reader[utt]
        assert rate == SR and np.array_equal(array, expected), utt
        assert int(lengths[utt]) == len(expected) <= 4 * SR
        covered.setdefault(source, []).extend(ranges)
        speaker, book = Path(source).parts[1:3]
        assert utt.startswith(f"{speaker}-{book}-{Path(source).stem}-")
    assert len(covered) == 7
    for source, ranges in covered.items():  # the VAD's speech, each sample once, nothing else
        meta = (root / source).with_suffix(".json")
        want = vad_ranges(meta, sf.info(str(root / source)).frames)
        assert sum(e - s for s, e in sorted(ranges)) == sum(e - s for s, e in want)
        assert all(any(ws <= s and e <= we for ws, we in want) for s, e in ranges)
    utt2spk = read_key_file(dst / "utt2spk")
    assert set(utt2spk.values()) == {"1988", "2412"}
    assert set(read_key_file(dst / "utt2book").values()) == {"24833", "153948"}
    spk2utt = read_key_file(dst / "spk2utt")
    assert {spk: sorted(utts.split()) for spk, utts in spk2utt.items()} == {
        spk: sorted(u for u in utt2spk if utt2spk[u] == spk) for spk in ("1988", "2412")
    }
    # Stage 2 takes the directory as it is (no transcripts): the pretraining's 2 s floor
    kept = format_data_dir(dst, tmp_path / "dump" / "unlab_medium", 2.0, 30.0)
    assert kept == sum(int(n) >= 2 * SR for n in lengths.values()) > 0


@needs_sample
def test_a_rerun_skips_done_shards_and_cuts_again_only_the_shard_of_a_changed_file(
    tmp_path, caplog
):
    root = write_librilight(tmp_path / "librilight")
    src, out, dst = root / "medium", tmp_path / "audio" / "medium", tmp_path / "data" / "set"
    caplog.set_level(logging.INFO)
    cut_all(src, out, nj=3, segment_max_s=20.0)
    merge_shards([out], 3, 20.0, dst)
    before = read_key_file(dst / "utt2source")

    caplog.clear()
    cut_all(src, out, nj=3, segment_max_s=20.0)
    merge_shards([out], 3, 20.0, dst)
    assert caplog.text.count("skipped: done with the same options and inputs") == 4

    changed = src / "1988" / "24833" / "1988-24833-0001.json"
    write_json(changed, [[0.3, 0.9], [1.1, 1.6]])  # another VAD: one utterance, two ranges
    job = shard_of("1988/24833/1988-24833-0001", 3)
    stale_flacs = sorted((out / str(job)).rglob("*.flac"))
    caplog.clear()
    cut_all(src, out, nj=3, segment_max_s=20.0)
    merge_shards([out], 3, 20.0, dst)
    assert f"shard {job}/3 of {src}: recomputing: input listing changed" in caplog.text
    assert caplog.text.count("skipped: done with the same options and inputs") == 2
    after = read_key_file(dst / "utt2source")
    assert after["1988-24833-1988-24833-0001-0000"].split()[1:] == ["4800:14400", "17600:25600"]
    assert {u: v for u, v in after.items() if "-0001-" not in u} == {
        u: v for u, v in before.items() if "-0001-" not in u
    }
    assert sorted((out / str(job)).rglob("*.flac")) == stale_flacs  # same names, new audio
    assert (
        len(sf.read(str(out / str(job) / "1988/24833/1988-24833-1988-24833-0001-0000.flac"))[0])
        == 17600
    )

    caplog.clear()
    cut_all(src, out, nj=2, segment_max_s=20.0)  # fewer jobs: shard 3's files go away
    merge_shards([out], 2, 20.0, dst)
    assert not (out / "3").exists() and not (out / ".done.3").exists()
    assert read_key_file(dst / "utt2source") == after


def corrupt_json(text: str) -> Callable[[Path], None]:
    return lambda flac: flac.with_suffix(".json").write_text(text)


BAD_INPUTS = {
    "no JSON": (lambda flac: flac.with_suffix(".json").unlink(), r"chapter_0.flac: no VAD file"),
    "no FLAC": (lambda flac: flac.unlink(), r"chapter_0.json: no audio file chapter_0.flac"),
    "not JSON": (corrupt_json("{voice"), r"chapter_0.json: cannot read it as JSON"),
    "no voice_activity": (corrupt_json('{"speaker": "100"}'), r"chapter_0.json: no 'voice_activity'"),
    "not numbers": (
        corrupt_json('{"voice_activity": [["0.1", 1.0]]}'),
        r"chapter_0.json: voice_activity\[0\] is \['0.1', 1.0\]; expected \[start, end\], two numbers",
    ),
    "overlapping": (
        corrupt_json('{"voice_activity": [[0.1, 1.0], [0.5, 2.0]]}'),
        r"chapter_0.json: voice_activity\[1\] .* must be in time order",
    ),
    "past the end": (
        corrupt_json('{"voice_activity": [[0.1, 3.5]]}'),
        r"chapter_0.json: voice_activity\[0\] ends at 3.5 s, past the end of chapter_0.flac \(3.000 s\)",
    ),
    "unreadable FLAC": (lambda flac: flac.write_bytes(b"fLaC, but no audio"), r"chapter_0.flac: cannot read the audio file"),
}  # fmt: skip


@pytest.mark.parametrize("kind", list(BAD_INPUTS))
def test_bad_input_is_named_with_its_file_and_nothing_is_marked_done(tmp_path, kind):
    src = write_generated(tmp_path / "librilight")
    spoil, message = BAD_INPUTS[kind]
    spoil(src / "100" / "book_a" / "chapter_0.flac")
    (src / "100" / "book_a" / "chapter_1.json").write_text("[]")  # a second bad file, also named
    out = tmp_path / "audio" / "small"
    with pytest.raises(ValueError, match=r"shard 1/1 of .*: 2 bad input file\(s\)") as error:
        cut_shard(src, out, 1, 1, 20.0)
    assert error.match(message)
    assert error.match(r"chapter_1.json: no 'voice_activity'")
    assert not (out / ".done.1").exists() and not (out / "1").exists()


def test_a_truncated_flac_is_named_and_its_shard_leaves_nothing(tmp_path):
    src = write_generated(tmp_path / "librilight", seconds=(5.0,))
    flac = src / "100" / "book_a" / "chapter_0.flac"
    flac.write_bytes(flac.read_bytes()[: flac.stat().st_size // 2])  # its header: still 5 s
    out = tmp_path / "audio" / "small"
    with pytest.raises(ValueError, match=r"chapter_0.flac: cannot read the audio file"):
        cut_shard(src, out, 1, 1, 20.0)
    assert list(out.iterdir()) == []


def test_an_absent_subset_or_an_unfinished_or_other_cut_is_refused(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"small: no such directory.*LIBRILIGHT in db.sh"):
        cut_shard(tmp_path / "librilight" / "small", tmp_path / "out", 1, 1, 20.0)
    src = write_generated(tmp_path / "librilight", seconds=(3.0, 2.0, 4.0, 5.0))
    out, dst = tmp_path / "audio" / "small", tmp_path / "data" / "unlab_small"
    cut_shard(src, out, 2, 1, 20.0)
    with pytest.raises(FileNotFoundError, match=r"\.done\.2: shard 2 of 2 is not cut"):
        merge_shards([out], 2, 20.0, dst)
    cut_shard(src, out, 2, 2, 10.0)
    with pytest.raises(ValueError, match=r"\.done\.2: cut with .*'segment_max_s': 10.0"):
        merge_shards([out], 2, 20.0, dst)
    cut_shard(src, out, 2, 2, 20.0)
    shutil.copytree(out, tmp_path / "audio" / "copy")  # the same utterances cut twice
    with pytest.raises(ValueError, match=r"utterance 100-book_a-chapter_\d-0000 is cut twice"):
        merge_shards([out, tmp_path / "audio" / "copy"], 2, 20.0, dst)
    assert not (dst / ".done").exists() and not (dst / "wav.scp").exists()
    assert merge_shards([out], 2, 20.0, dst) == 4


def stage1(datadir: Path, sets: str, librilight: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["local/data.sh", "--corpus", "librispeech", "--datadir", str(datadir), "--sets", sets,
         *args],
        cwd=RECIPE,
        env={**os.environ, "LIBRILIGHT": str(librilight)},
        capture_output=True,
        text=True,
        timeout=120,
    )  # fmt: skip


@needs_sample
def test_stage1_makes_the_unlab_sets_and_skips_them_on_a_rerun(tmp_path, stand_in):
    root = write_librilight(tmp_path / "librilight")
    audio = tmp_path / "audio"
    args = ("--nj", "2", "--audio_dir", str(audio))
    result = stage1(tmp_path / "data", "unlab_small unlab_60k", root, *args)
    assert result.returncode == 0, result.stderr
    assert stand_in.calls() == []
    small = read_key_file(tmp_path / "data" / "unlab_small" / "utt2spk")
    every = read_key_file(tmp_path / "data" / "unlab_60k" / "utt2spk")
    assert set(small.values()) == {"1089"} and set(every.values()) == set(SUBSET_OF_SPEAKER)
    assert small.items() <= every.items()
    durations = [
        float(d) for d in read_key_file(tmp_path / "data" / "unlab_60k" / "utt2dur").values()
    ]
    assert len(durations) == 14 and max(durations) <= 20.0  # one utterance per sample file
    assert all(
        path.startswith(str(audio))
        for path in read_key_file(tmp_path / "data" / "unlab_60k" / "wav.scp").values()
    )

    again = stage1(tmp_path / "data", "unlab_small unlab_60k", root, *args)
    assert again.returncode == 0, again.stderr
    assert again.stderr.count("skipped: done with the same options and inputs") == 2  # merges
    assert "skipped: done" in (audio / "large" / "log" / "cut.2.log").read_text()


def test_offline_a_missing_libri_light_subset_is_named_with_where_to_put_it(
    tmp_path, stand_in, monkeypatch
):
    monkeypatch.setenv("WGET_OFFLINE", "1")
    root = tmp_path / "librilight"
    write_generated(root)  # small/ only
    start = time.monotonic()
    result = stage1(tmp_path / "data", "unlab_60k", root, "--audio_dir", str(tmp_path / "audio"))
    assert time.monotonic() - start < 30
    assert result.returncode != 0
    assert (
        f"medium is not in {root} and https://dl.fbaipublicfiles.com/librilight/data/medium.tar cannot be reached"
        in result.stderr
    )
    assert (
        f"put the subset at {root}/medium" in result.stderr
        and "point LIBRILIGHT in db.sh" in result.stderr
    )
    assert not (tmp_path / "audio").exists()  # stopped before any cutting


def test_a_libri_light_tarball_without_the_published_md5_is_removed(tmp_path, stand_in):
    source = write_generated(tmp_path / "served_src")
    with tarfile.open(stand_in.served / "small.tar", "w") as archive:
        archive.add(source, arcname="small")
    root = tmp_path / "librilight"
    result = stage1(tmp_path / "data", "unlab_small", root, "--audio_dir", str(tmp_path / "audio"))
    assert result.returncode != 0
    assert (
        "small.tar does not have the md5 Libri-Light publishes (c49207eb86a8e8ac895561c37232041e); removed"
        in result.stderr
    )
    assert not (root / ".download" / "small.tar").exists() and not (root / "small").exists()
    download = [call for call in stand_in.calls() if "--spider" not in call]
    assert download and download[0].endswith(
        "https://dl.fbaipublicfiles.com/librilight/data/small.tar"
    )

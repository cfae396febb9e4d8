#!/usr/bin/env python3
"""Kaldi-style data directories of Libri-Light's unlabelled audio, cut into utterances by its VAD.

Input (``LIBRILIGHT`` in db.sh): a subset folder (``small``, ``medium``, ``large``) laid out as
``<subset>/<speaker>/<book>/<file>.flac`` (16 kHz mono) with ``<file>.json`` beside each FLAC. Of
the JSON only ``voice_activity`` is read: the ``[start, end]`` seconds of each stretch of speech, in
time order. The speaker (a LibriVox speaker id, a number) and the book are the folder names.

Utterances (:func:`plan_utterances`), as Libri-Light's ``data_preparation/cut_by_vad.py`` makes
them but with speechbrain's 20 s target: consecutive VAD segments are joined, the silence between
them dropped, as long as the utterance stays within ``--segment_max_s`` seconds. A VAD segment
longer than that (Libri-Light has some of an hour) is first cut into the fewest equal pieces no
longer than the maximum (each then longer than half of it), where ``cut_by_vad.py`` keeps it whole:
whole, it would be dropped by stage 2's ``--max_wav_duration`` or crop most of it away in training.
Short utterances (a file's last one, or one whose next segment did not fit) are kept as they are:
stage 2 drops those under ``--min_wav_duration`` (2 s) from the pretraining set and logs how many.
Times become samples by rounding; a segment may end up to ``END_TOLERANCE_S`` past the end of its
file (it is then cut at the end); segments empty after rounding are skipped.

Audio: each utterance is written as its own FLAC (the source's sample format, so the samples are
the source's exactly) and ``wav.scp`` lists these files. This keeps every reader of ``wav.scp`` as it
is: the recipe's tools (``espnet_ils.data.audio.load_waveform``), stage 2's ``format_data_dir`` and
ESPnet's ``sound`` data type in training. Reading the utterances in place instead would need an
entry format for several ranges of one file (the joins drop the gaps; Kaldi's ``segments`` holds
one range), understood by all of them and registered as a new ESPnet data type, and it buys no
speed. Measured 2026-12-06 on the 2-core host (soundfile 0.14, libsndfile 1.2.2), on the 14 sample
FLACs of ../shared/data/librispeech_sample copied 45 times (630 files, 0.99 h, 64 MB; VAD of
0.88 h): ``cut --nj 1`` took 5.4-6.7 s (2.7-3.0 s of CPU) and wrote 55 MB, 61 MB per hour of
utterance audio; reading all utterances in random order took 0.9-1.2 s per audio hour from the cut
files, 1.6 s reading the same ranges in place (and 0.5-0.7 s against 0.5-0.6 s in 10 and 60 min
files, Libri-Light's lengths). For unlab_60k that is about 50 core-hours once, and at most the
corpus's size again on disk (3.4 TB; 35 GB for unlab_small), less the silence the VAD leaves out. ESPnet's own recipes cut segments the same way
(``scripts/audio/format_wav_scp.py --segments``), as does Libri-Light's ``cut_by_vad.py``.

Two steps, each safe to run again:

``cut`` (one shard of a subset; ``${train_cmd} JOB=1:nj``): a file belongs to the shard given by a
hash of its relative path, so a file added to the corpus changes one shard only. The shard checks
all its files first (each problem named with its file, all of them reported), then writes its
utterances under ``<out>/<job>.tmp/<speaker>/<book>/<utt>.flac``, renames that folder to
``<out>/<job>``, writes ``<out>/utt2source.<job>`` (``utt <subset>/<speaker>/<book>/<file>.flac
<start>:<end> ...``, the ranges in samples of the source) and last ``<out>/.done.<job>``, holding
``--nj``, the job, ``--segment_max_s`` and the listing of the shard's files (relative paths, sizes,
mtimes). A shard whose marker holds the same is skipped; any other is cut again from scratch.

``merge`` (a set from the shards of its subsets): every shard must be done with the same options;
the union must have each utterance once and each of its FLACs present. Writes ``wav.scp`` (absolute
paths of the cut FLACs), ``utt2spk`` (the speaker), ``spk2utt``, ``utt2book``, ``utt2num_samples``,
``utt2dur`` and ``utt2source``, sorted by utterance and streamed (unlab_60k has about 14 million
utterances), then ``.done`` holding the options and the checksums of the shards' listings and
markers. Shards left by an earlier run with a larger ``--nj`` are removed.
"""

import argparse
import hashlib
import heapq
import json
import logging
import math
import os
import shutil
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import soundfile as sf
from tqdm import tqdm

from espnet_ils.bin import add_shard_arguments, setup_logging
from espnet_ils.data.audio import SAMPLE_RATE
from espnet_ils.data.kaldi_files import atomic_path, read_key_file, write_text_atomic
from espnet_ils.data.markers import (
    files_checksum,
    paths_checksum,
    read_marker,
    step_identity,
    up_to_date,
    write_marker,
)

logger = logging.getLogger("prepare_librilight")

SEGMENT_MAX_S = 20.0  # s: longest utterance (speechbrain's Libri-Light recipe)
# s: how far a VAD segment may end past the end of its file. Libri-Light's VAD frames are 80 ms
# (data_preparation/split_librilight/README.md), so an end rounded up to the frame after the last
# sample overshoots by less than a frame; anything more means the JSON is not this file's.
END_TOLERANCE_S = 0.1
MAX_ERRORS_SHOWN = 20  # bad input files named in one error message (all are counted)
Range = Tuple[int, int]  # [start, end) in samples at 16 kHz


@dataclass(frozen=True)
class Utterance:
    """One utterance: ranges of a source FLAC joined in order.

    Attributes:
        utt: ``<speaker>-<book>-<file>-<index>``, index 0-based in 4 digits, in time order.
        source: The FLAC relative to ``LIBRILIGHT``: ``<subset>/<speaker>/<book>/<file>.flac``.
        ranges: ``[start, end)`` sample ranges of the source at 16 kHz, in time order.
    """

    utt: str
    source: str
    ranges: Tuple[Range, ...]

    @property
    def num_samples(self) -> int:
        return sum(end - start for start, end in self.ranges)

    @property
    def speaker(self) -> str:
        return self.source.split("/")[1]

    @property
    def book(self) -> str:
        return self.source.split("/")[2]

    def value(self) -> str:
        """Its ``utt2source`` entry: ``<source> <start>:<end> ...``."""
        return " ".join([self.source, *(f"{start}:{end}" for start, end in self.ranges)])

    @classmethod
    def parse(cls, utt: str, value: str, where: str) -> "Utterance":
        """The utterance of a ``utt2source`` entry; ``where`` names the file for errors."""
        source, *spans = value.split()
        try:
            ranges = tuple(tuple(int(x) for x in span.split(":")) for span in spans)
        except ValueError:
            ranges = ()
        if len(source.split("/")) != 4 or not ranges or any(len(r) != 2 for r in ranges):
            raise ValueError(f"{where}: utterance {utt}: expected '<source> <start>:<end> ...'")
        return cls(utt, source, ranges)


def vad_ranges(meta: Path, num_samples: int) -> List[Range]:
    """The speech ranges of one file from its Libri-Light JSON.

    Args:
        meta: The ``<file>.json``; its ``voice_activity`` lists ``[start, end]`` in seconds.
        num_samples: Length of the FLAC beside it, in samples at 16 kHz.

    Returns:
        ``[start, end)`` sample ranges, in time order, non-empty, within the file.

    Raises:
        ValueError: Unreadable or malformed JSON, segments out of order, overlapping, or ending
            more than ``END_TOLERANCE_S`` past the end of the file; naming the file.
    """
    try:
        content = json.loads(meta.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{meta}: cannot read it as JSON: {error}") from error
    if not isinstance(content, dict) or not isinstance(content.get("voice_activity"), list):
        raise ValueError(
            f"{meta}: no 'voice_activity' list (Libri-Light's [start, end] seconds of speech)"
        )
    ranges: List[Range] = []
    previous_end = 0.0
    duration = num_samples / SAMPLE_RATE
    for index, segment in enumerate(content["voice_activity"]):
        numbers = isinstance(segment, list) and len(segment) == 2
        numbers = numbers and all(
            isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)
            for x in segment
        )
        if not numbers:
            raise ValueError(
                f"{meta}: voice_activity[{index}] is {segment!r}; expected [start, end], two "
                "numbers of seconds"
            )
        start, end = segment
        if start < previous_end or end < start:
            raise ValueError(
                f"{meta}: voice_activity[{index}] is {segment!r}: segments must be in time order "
                f"from 0 s, without overlap (the previous one ends at {previous_end} s)"
            )
        if end > duration + END_TOLERANCE_S:
            raise ValueError(
                f"{meta}: voice_activity[{index}] ends at {end} s, past the end of "
                f"{meta.with_suffix('.flac').name} ({duration:.3f} s) by more than "
                f"{END_TOLERANCE_S} s: is this JSON the FLAC's?"
            )
        first, last = round(start * SAMPLE_RATE), min(round(end * SAMPLE_RATE), num_samples)
        if first < last:
            ranges.append((first, last))
        previous_end = end
    return ranges


def plan_utterances(ranges: Sequence[Range], max_samples: int) -> List[List[Range]]:
    """Group speech ranges into utterances of at most ``max_samples`` samples.

    A range longer than ``max_samples`` is cut into ``ceil(length / max_samples)`` equal pieces
    (lengths differ by at most a sample). Then, in time order, each range or piece joins the
    current utterance if the sum of their lengths stays within ``max_samples``, and starts the
    next one otherwise (the gaps between ranges are not part of any utterance).

    Args:
        ranges: ``[start, end)`` in samples, in time order, non-overlapping.
        max_samples: Longest utterance in samples (``--segment_max_s`` x 16000).

    Returns:
        The ranges of each utterance, in time order.
    """
    pieces: List[Range] = []
    for start, end in ranges:
        count = -(-(end - start) // max_samples)  # ceil
        length = end - start
        pieces += [
            (start + length * i // count, start + length * (i + 1) // count) for i in range(count)
        ]
    utterances: List[List[Range]] = []
    filled = max_samples  # nothing open yet
    for start, end in pieces:
        if filled + end - start > max_samples:
            utterances.append([])
            filled = 0
        utterances[-1].append((start, end))
        filled += end - start
    return utterances


def shard_of(key: str, nj: int) -> int:
    """The 1-based shard of a file, by a hash of ``<speaker>/<book>/<file>`` (stable as files come
    and go)."""
    return int(hashlib.blake2b(key.encode(), digest_size=8).hexdigest(), 16) % nj + 1


def list_subset(src: Path) -> Dict[str, Dict[str, Path]]:
    """``{"<speaker>/<book>/<file>": {".flac": path, ".json": path}}`` of a subset folder, each
    file as found (a missing partner is reported by the shard that owns the file)."""
    if not src.is_dir():
        raise FileNotFoundError(
            f"{src}: no such directory: the Libri-Light subset (check LIBRILIGHT in db.sh)"
        )
    files: Dict[str, Dict[str, Path]] = {}
    for suffix in (".flac", ".json"):
        for path in src.rglob(f"*{suffix}"):
            key = path.relative_to(src).with_suffix("").as_posix()
            files.setdefault(key, {})[suffix] = path
    if not any(".flac" in pair for pair in files.values()):
        raise ValueError(
            f"{src}: no <speaker>/<book>/<file>.flac in it: is this a Libri-Light subset folder?"
        )
    return files


def plan_file(src: Path, key: str, pair: Dict[str, Path], max_samples: int) -> List[Utterance]:
    """Check one file and its JSON, and plan its utterances.

    Raises:
        ValueError: Naming the file: a path not ``<speaker>/<book>/<file>`` or unfit for an
            utterance id, a FLAC without JSON or the reverse, audio that cannot be read or is not
            16 kHz mono, a bad JSON (:func:`vad_ranges`).
    """
    flac, meta = pair.get(".flac"), pair.get(".json")
    parts = key.split("/")
    path = flac or meta
    if len(parts) != 3:
        raise ValueError(f"{path}: not at <speaker>/<book>/<file> in {src} (Libri-Light's layout)")
    if not parts[0].isdigit():
        raise ValueError(f"{path}: speaker folder {parts[0]!r} is not a LibriVox speaker id")
    if any(char.isspace() for char in key):
        raise ValueError(f"{path}: white space in the path; it cannot be in an utterance id")
    if meta is None:
        raise ValueError(f"{flac}: no VAD file {flac.with_suffix('.json').name} beside it")
    if flac is None:
        raise ValueError(f"{meta}: no audio file {meta.with_suffix('.flac').name} beside it")
    try:
        info = sf.info(str(flac))
    except (sf.LibsndfileError, RuntimeError, OSError) as error:
        raise ValueError(f"{flac}: cannot read the audio file: {error}") from error
    if info.samplerate != SAMPLE_RATE or info.channels != 1:
        raise ValueError(
            f"{flac}: {info.samplerate} Hz x {info.channels} channels; expected 16 kHz mono"
        )
    source = f"{src.name}/{key}.flac"
    groups = plan_utterances(vad_ranges(meta, info.frames), max_samples)
    prefix = key.replace("/", "-")
    return [Utterance(f"{prefix}-{i:04d}", source, tuple(g)) for i, g in enumerate(groups)]


def read_ranges(source: sf.SoundFile, flac: Path, ranges: Sequence[Range]) -> np.ndarray:
    """The samples of ``ranges`` of an open FLAC, joined, as int32 (any PCM format exactly).

    Raises:
        ValueError: The audio cannot be decoded or ends before a range does, naming ``flac``.
    """
    pieces = []
    try:
        for start, end in ranges:
            source.seek(start)
            pieces.append(source.read(end - start, dtype="int32"))
            if len(pieces[-1]) != end - start:
                raise ValueError(
                    f"{flac}: its audio ends at sample {start + len(pieces[-1])}, before {end}, "
                    f"though its header says {source.frames}: a truncated file"
                )
    except (sf.LibsndfileError, RuntimeError) as error:
        raise ValueError(f"{flac}: cannot read the audio file: {error}") from error
    return np.concatenate(pieces)


def write_utterances(flac: Path, utterances: Sequence[Utterance], audio_dir: Path) -> None:
    """Write each utterance of ``flac`` to ``audio_dir/<speaker>/<book>/<utt>.flac``, in the
    source's sample format (its samples copied exactly).

    Raises:
        ValueError: ``flac`` cannot be read (:func:`read_ranges`).
        OSError: An utterance cannot be written (disk full, read-only), naming it.
    """
    try:
        source = sf.SoundFile(str(flac))
    except (sf.LibsndfileError, RuntimeError) as error:
        raise ValueError(f"{flac}: cannot read the audio file: {error}") from error
    with source:
        for utterance in utterances:
            samples = read_ranges(source, flac, utterance.ranges)
            out = audio_dir / utterance.speaker / utterance.book / f"{utterance.utt}.flac"
            try:
                out.parent.mkdir(parents=True, exist_ok=True)
                sf.write(str(out), samples, SAMPLE_RATE, source.subtype, format="FLAC")
            except (sf.LibsndfileError, OSError) as error:
                raise OSError(f"cannot write {out}: {error}") from error


def cut_shard(src: Path, out: Path, nj: int, job: int, segment_max_s: float) -> int:
    """Cut shard ``job`` of ``nj`` of the subset folder ``src`` into ``out`` (see the module
    docstring); returns its number of utterances.

    Raises:
        ValueError: A bad option, or bad input files (all of the shard's, each named).
        FileNotFoundError: ``src`` does not exist.
    """
    if not 1 <= job <= nj:
        raise ValueError(f"--job {job} must be in 1..--nj {nj}")
    if not segment_max_s > 0:
        raise ValueError(f"--segment_max_s {segment_max_s}: must be > 0 (seconds; default 20)")
    src, out = Path(src), Path(out)
    files = list_subset(src)
    own = sorted(key for key in files if shard_of(key, nj) == job)
    identity = step_identity(
        {"nj": nj, "job": job, "segment_max_s": segment_max_s},
        {"listing": paths_checksum(src, [path for key in own for path in files[key].values()])},
    )
    marker, listing = out / f".done.{job}", out / f"utt2source.{job}"
    if up_to_date(marker, identity, f"shard {job}/{nj} of {src}"):
        return len(read_key_file(listing))
    max_samples = round(segment_max_s * SAMPLE_RATE)
    plans, errors = {}, []
    for key in own:
        try:
            plans[key] = plan_file(src, key, files[key], max_samples)
        except ValueError as error:
            errors.append(str(error))
    if errors:
        shown = "\n  ".join(errors[:MAX_ERRORS_SHOWN])
        more = (
            f"\n  ... and {len(errors) - MAX_ERRORS_SHOWN} more"
            if len(errors) > MAX_ERRORS_SHOWN
            else ""
        )
        raise ValueError(
            f"shard {job}/{nj} of {src}: {len(errors)} bad input file(s); fix or remove them "
            f"(with their JSON) and run again:\n  {shown}{more}"
        )
    audio, tmp = out / str(job), out / f"{job}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        for key in tqdm(own, desc=f"cutting shard {job}/{nj} of {src.name}"):
            write_utterances(files[key][".flac"], plans[key], tmp)
        shutil.rmtree(audio, ignore_errors=True)
        os.replace(tmp, audio)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)  # on a full disk it holds the space a re-run needs
        raise
    utterances = sorted((u for plan in plans.values() for u in plan), key=lambda u: u.utt)
    write_text_atomic(listing, [f"{u.utt} {u.value()}" for u in utterances])
    write_marker(marker, identity)
    hours = sum(u.num_samples for u in utterances) / SAMPLE_RATE / 3600
    logger.info(
        "shard %d/%d of %s: %d files -> %d utterances (%.2f h) in %s",
        job, nj, src, len(own), len(utterances), hours, audio,
    )  # fmt: skip
    return len(utterances)


def shard_entries(shards: Path, job: int) -> Iterator[Tuple[str, Path, Utterance]]:
    """``(utt, flac, utterance)`` of one shard's ``utt2source``, in its (sorted) order."""
    listing = shards / f"utt2source.{job}"
    for utt, value in read_key_file(listing).items():
        utterance = Utterance.parse(utt, value, str(listing))
        flac = shards / str(job) / utterance.speaker / utterance.book / f"{utt}.flac"
        yield utt, flac, utterance


def remove_stale_shards(shards: Path, nj: int) -> None:
    """Remove the shards of an earlier run with more jobs than ``nj`` (their audio, listing, marker)."""
    for marker in shards.glob(".done.*"):
        job = marker.name.rsplit(".", 1)[1]
        if job.isdigit() and int(job) > nj:
            logger.info(
                "%s: removing shard %s, left by a run with more jobs than %d", shards, job, nj
            )
            for folder in (shards / job, shards / f"{job}.tmp"):
                shutil.rmtree(folder, ignore_errors=True)
            (shards / f"utt2source.{job}").unlink(missing_ok=True)
            marker.unlink()


def merge_shards(shard_dirs: Sequence[Path], nj: int, segment_max_s: float, dst: Path) -> int:
    """Make the data directory ``dst`` of the cut shards of one or more subsets (see the module
    docstring); returns its number of utterances.

    Raises:
        FileNotFoundError: A shard not cut, or a FLAC of the listings missing.
        ValueError: A shard cut with other options, an utterance listed twice.
    """
    shard_dirs = [Path(d).resolve() for d in shard_dirs]
    for shards in shard_dirs:
        for job in range(1, nj + 1):
            stored = read_marker(shards / f".done.{job}")
            if stored is None:
                raise FileNotFoundError(
                    f"{shards}/.done.{job}: shard {job} of {nj} is not cut; run the cut step "
                    "(local/data.sh) first"
                )
            wanted = {"nj": nj, "job": job, "segment_max_s": segment_max_s}
            if stored["options"] != wanted:
                raise ValueError(
                    f"{shards}/.done.{job}: cut with {stored['options']}, not {wanted}; run the "
                    "cut step again with these options"
                )
    identity = step_identity(
        {"nj": nj, "segment_max_s": segment_max_s},
        {
            f"shards of {shards}": files_checksum(
                [
                    shards / f"{name}.{job}"
                    for job in range(1, nj + 1)
                    for name in ("utt2source", ".done")
                ]
            )
            for shards in shard_dirs
        },
    )
    if up_to_date(dst / ".done", identity, f"data directory {dst}"):
        return len(read_key_file(dst / "utt2source"))
    dst.mkdir(parents=True, exist_ok=True)
    names = (
        "wav.scp",
        "utt2spk",
        "utt2book",
        "utt2num_samples",
        "utt2dur",
        "utt2source",
        "spk2utt",
    )
    entries = heapq.merge(
        *(shard_entries(shards, job) for shards in shard_dirs for job in range(1, nj + 1)),
        key=lambda entry: entry[0],
    )
    count, samples, previous, speakers = 0, 0, ("", None), set()
    with ExitStack() as stack:
        out = {
            name: stack.enter_context(
                stack.enter_context(atomic_path(dst / name)).open("w", encoding="utf-8")
            )
            for name in names
        }
        speaker, utts_of_speaker = None, []  # spk2utt: the speaker being written and its utterances
        for utt, flac, utterance in entries:
            if utt == previous[0]:
                raise ValueError(f"utterance {utt} is cut twice: in {previous[1]} and in {flac}")
            if not flac.is_file():
                raise FileNotFoundError(
                    f"{flac}: missing, though its shard is marked done; remove that shard's "
                    ".done.<job> and run stage 1 again"
                )
            if utterance.speaker != speaker:
                # Utterance ids are "<speaker digits>-...": sorted, a speaker's are together.
                assert utterance.speaker not in speakers, f"speaker {utterance.speaker} split"
                if utts_of_speaker:
                    out["spk2utt"].write(f"{speaker} {' '.join(utts_of_speaker)}\n")
                speaker, utts_of_speaker = utterance.speaker, []
                speakers.add(speaker)
            utts_of_speaker.append(utt)
            out["wav.scp"].write(f"{utt} {flac}\n")
            out["utt2spk"].write(f"{utt} {speaker}\n")
            out["utt2book"].write(f"{utt} {utterance.book}\n")
            out["utt2num_samples"].write(f"{utt} {utterance.num_samples}\n")
            out["utt2dur"].write(f"{utt} {utterance.num_samples / SAMPLE_RATE:.4f}\n")
            out["utt2source"].write(f"{utt} {utterance.value()}\n")
            previous = (utt, flac)
            count += 1
            samples += utterance.num_samples
        if count == 0:
            raise ValueError(f"{dst}: no utterance in the shards of {[str(d) for d in shard_dirs]}")
        out["spk2utt"].write(f"{speaker} {' '.join(utts_of_speaker)}\n")
    write_marker(dst / ".done", identity)
    for shards in shard_dirs:
        remove_stale_shards(shards, nj)
    logger.info(
        "%s: %d utterances, %d speakers, %.2f h",
        dst,
        count,
        len(speakers),
        samples / SAMPLE_RATE / 3600,
    )
    return count


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    steps = parser.add_subparsers(dest="step", required=True)
    cut = steps.add_parser("cut", help="Cut one shard of a subset into utterance FLACs")
    cut.add_argument(
        "--src", type=Path, required=True, help="Subset folder, e.g. ${LIBRILIGHT}/small"
    )
    cut.add_argument("--out", type=Path, required=True, help="Output folder of the subset's shards")
    add_shard_arguments(cut)
    merge = steps.add_parser("merge", help="Make a data directory from the shards of its subsets")
    merge.add_argument(
        "--shards",
        type=Path,
        action="append",
        required=True,
        help="A cut --out folder (repeatable)",
    )
    merge.add_argument("--dst", type=Path, required=True, help="Output data directory")
    merge.add_argument("--nj", type=int, default=1, help="Number of shards they were cut into")
    for step in (cut, merge):
        step.add_argument(
            "--segment_max_s", type=float, default=SEGMENT_MAX_S, help="Longest utterance (s)"
        )
    return parser


def main(cmd: Optional[List[str]] = None) -> None:
    args = get_parser().parse_args(cmd)
    setup_logging(args)
    if args.step == "cut":
        cut_shard(args.src, args.out, args.nj, args.job, args.segment_max_s)
    else:
        merge_shards(args.shards, args.nj, args.segment_max_s, args.dst)


if __name__ == "__main__":
    main()

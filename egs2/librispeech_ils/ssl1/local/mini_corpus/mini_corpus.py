"""Build the embedded multi-speaker English corpus: plan, synthesise in parallel, write data dirs.

Layout under ``outdir``::

    wav/<speaker>/<utt>.flac     16 kHz mono FLAC (16 bit)
    train/ dev/ test/ train_ft/  Kaldi-style data dirs: wav.scp text utt2spk spk2utt utt2dur
                                 phone_alignment (50 Hz) phone_alignment_100hz
    phones.txt                   the common phone inventory, one phone per line
    speakers                     <speaker> <engine> <voice> <source> <set>
    .mini_corpus.done            completion marker (JSON: options and statistics), written last

train / dev / test are disjoint by speaker and by source (see :mod:`mini_corpus.voices`);
they get 80 / 10 / 10 % of the requested duration, shared equally by their voices. ``train_ft``
is the labelled fine-tuning subset: the first ``ft_fraction`` of every train voice's speech (at
least one utterance each). It is part of ``train``, as the Libri-light limited sets are part of
LibriSpeech's training data, and covers every train voice, so that CTC fine-tuning at the mini
scale does not also have to generalise to voices it never heard with labels.

The plan (which sentence which voice speaks, in which synthesis job) depends only on the
options, never on ``nj``; every job runs in a fresh process, so the audio is the same for any
``nj``. Each file is written under a temporary name and renamed into place; the marker is written
last. A run finding a marker with the same options does nothing; any other state (no marker, or
one with other options) is rebuilt from scratch.
"""

import json
import logging
import math
import multiprocessing
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import soundfile as sf
from scipy.signal import resample_poly
from tqdm import tqdm

from espnet_ils.analysis.alignments import frame_labels
from espnet_ils.data.audio import ENCODER_HOP, MFCC_HOP, SAMPLE_RATE
from espnet_ils.data.kaldi_files import (
    atomic_path,
    write_key_file,
    write_spk2utt,
    write_text_atomic,
)
from mini_corpus.phones import (
    FESTIVAL_TO_COMMON,
    INVENTORY,
    SILENCE,
    PhoneSegment,
    espeak_phone_map,
    to_common,
)
from mini_corpus.sentences import Sentence, generate_sentences
from mini_corpus.tts import (
    Synthesis,
    synthesize_espeak,
    synthesize_festival,
    synthesize_flite,
)
from mini_corpus.voices import ESPEAK, FESTIVAL, SPEAKERS, Speaker, check_engines

logger = logging.getLogger(__name__)

# Bump when the grammar, the voices, the phone mapping or the layout change: old corpora rebuild.
CORPUS_VERSION = 1
SPLIT_SHARES = {"train": 0.8, "dev": 0.1, "test": 0.1}
FINETUNE_SET = "train_ft"
SETS = ("train", "dev", "test", FINETUNE_SET)
SENTENCES_PER_JOB = 16
MIN_WORDS = 6  # about 2 s of speech: the paper drops pretraining utterances under 2 s
# An engine's last phone may end this far after its audio (flite's diphone voice shortens the
# final pause) before its timings count as not matching the audio, in seconds.
TIMING_TOLERANCE = 0.03
JOB_TIMEOUT = 600  # seconds without any finished job before the build counts as stuck
MARKER = ".mini_corpus.done"
OWNED = ("wav", *SETS, "phones.txt", "speakers", MARKER)


@dataclass(frozen=True)
class CorpusOptions:
    """What the corpus depends on (``nj`` is not among them: it changes nothing in the output).

    Attributes:
        seconds: Requested total duration of train + dev + test, in seconds.
        seed: Seed of the sentence generator.
        ft_fraction: Share of each train voice's speech in ``train_ft`` (0 < x <= 1).
    """

    seconds: float
    seed: int
    ft_fraction: float = 0.25

    def __post_init__(self) -> None:
        if not self.seconds > 0:
            raise ValueError(f"corpus size {self.seconds} s: give a positive --hours or --minutes")
        if not 0 < self.ft_fraction <= 1:
            raise ValueError(f"--ft_fraction {self.ft_fraction}: use a value in (0, 1], e.g. 0.25")


@dataclass(frozen=True)
class PlannedUtterance:
    """One utterance to synthesise: ``utt_id`` (``<speaker>-<index>``), its speaker and sentence."""

    utt_id: str
    speaker: Speaker
    sentence: Sentence


@dataclass
class UtteranceResult:
    """What one synthesised utterance contributes to the data dirs.

    Attributes:
        utt_id: The utterance.
        num_samples: Length of the 16 kHz audio in samples.
        labels_50hz: One phone per 20 ms frame (``num_frames(num_samples)`` of them).
        labels_100hz: One phone per 10 ms frame (25 ms windows).
    """

    utt_id: str
    num_samples: int
    labels_50hz: List[str]
    labels_100hz: List[str]


# ----------------------------------------------------------------------------------------------
# Planning
# ----------------------------------------------------------------------------------------------
def plan_utterances(
    options: CorpusOptions, speakers: Sequence[Speaker] = SPEAKERS
) -> List[PlannedUtterance]:
    """Assign sentences to voices until each voice's share of the requested duration is planned.

    Voices take distinct sentences from one seeded stream, in table order; a voice's speech is
    estimated from its measured seconds per transcript character, and a voice stops at the
    sentence that brings it nearest to its share. Every voice gets at least one sentence.
    """
    sentences = generate_sentences(options.seed, MIN_WORDS)
    per_split = {split: sum(s.split == split for s in speakers) for split in SPLIT_SHARES}
    plan = []
    for speaker in speakers:
        target = options.seconds * SPLIT_SHARES[speaker.split] / per_split[speaker.split]
        planned = 0.0
        index = 0
        while True:
            sentence = next(sentences)
            estimate = speaker.seconds_per_char * len(sentence.transcript)
            if index > 0 and planned + estimate / 2 > target:
                break  # (the sentence drawn is dropped: it belongs to no one)
            plan.append(PlannedUtterance(f"{speaker.speaker_id}-{index:05d}", speaker, sentence))
            planned += estimate
            index += 1
    return plan


def make_jobs(plan: Sequence[PlannedUtterance]) -> List[List[PlannedUtterance]]:
    """Cut the plan into synthesis jobs of up to :data:`SENTENCES_PER_JOB` sentences of one voice.

    Job boundaries depend only on the utterance index within its voice, so a sentence is spoken
    in the same position of the same job whatever the corpus size.
    """
    jobs: Dict[Tuple[str, int], List[PlannedUtterance]] = {}
    for utterance in plan:
        index = int(utterance.utt_id.rsplit("-", 1)[1])
        key = (utterance.speaker.speaker_id, index // SENTENCES_PER_JOB)
        jobs.setdefault(key, []).append(utterance)
    return list(jobs.values())


# ----------------------------------------------------------------------------------------------
# Synthesis (runs in worker processes)
# ----------------------------------------------------------------------------------------------
def to_16k(wave: np.ndarray, sample_rate: int) -> np.ndarray:
    """Resample ``(N,)`` audio to 16 kHz (polyphase, Kaiser window), scaled down if it clips.

    Returns:
        ``(M,)`` float32 samples in (-1, 1), ``M = ceil(N * 16000 / sample_rate)``.
    """
    if sample_rate != SAMPLE_RATE:
        divisor = math.gcd(SAMPLE_RATE, sample_rate)
        wave = resample_poly(wave, SAMPLE_RATE // divisor, sample_rate // divisor)
    peak = float(np.max(np.abs(wave))) if len(wave) else 0.0
    if peak >= 1.0:
        wave = wave * (0.99 / peak)
    return wave.astype(np.float32)


def synthesize(speaker: Speaker, texts: Sequence[str]) -> List[Synthesis]:
    """Speak ``texts`` with ``speaker``'s engine and voice."""
    if speaker.engine == FESTIVAL:
        return synthesize_festival(speaker.voice, texts)
    if speaker.engine == ESPEAK:
        return synthesize_espeak(speaker.voice, speaker.rate, speaker.pitch, texts)
    return synthesize_flite(speaker.voice, texts)


def common_segments(speaker: Speaker, synthesis: Synthesis, where: str) -> List[PhoneSegment]:
    """The engine's phones in the common inventory, checked against the length of the audio.

    Raises:
        RuntimeError: The timed speech ends after the audio does (timings do not fit the audio).
    """
    table = espeak_phone_map(speaker.voice) if speaker.engine == ESPEAK else FESTIVAL_TO_COMMON
    segments = to_common(synthesis.segments, table, where)
    duration = len(synthesis.wave) / synthesis.sample_rate
    speech_end = max((s.end for s in segments if s.label != SILENCE), default=0.0)
    if speech_end > duration + TIMING_TOLERANCE:
        raise RuntimeError(
            f"{where}: the engine's phone timings run to {speech_end:.3f} s but its audio lasts "
            f"{duration:.3f} s; these timings cannot align the audio"
        )
    return segments


def write_flac(path: Path, wave: np.ndarray) -> None:
    """Write 16 kHz mono 16-bit FLAC under a temporary name, then rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        sf.write(str(tmp), wave, SAMPLE_RATE, format="FLAC", subtype="PCM_16")


def run_job(job: Sequence[PlannedUtterance], wav_dir: str) -> List[UtteranceResult]:
    """Synthesise one job's sentences, write their FLAC files, return lengths and alignments."""
    speaker = job[0].speaker
    syntheses = synthesize(speaker, [utterance.sentence.spoken for utterance in job])
    results = []
    for utterance, synthesis in zip(job, syntheses):
        where = f"utterance {utterance.utt_id} ({speaker.engine} voice {speaker.voice})"
        segments = common_segments(speaker, synthesis, where)
        wave = to_16k(synthesis.wave, synthesis.sample_rate)
        write_flac(audio_path(wav_dir, utterance), wave)
        results.append(
            UtteranceResult(
                utterance.utt_id,
                len(wave),
                frame_labels(segments, len(wave), ENCODER_HOP),
                frame_labels(segments, len(wave), MFCC_HOP),
            )
        )
    return results


def audio_path(wav_dir: str, utterance: PlannedUtterance) -> Path:
    """``<wav_dir>/<speaker>/<utt>.flac``."""
    return Path(wav_dir) / utterance.speaker.speaker_id / f"{utterance.utt_id}.flac"


def _run_job(arguments: Tuple[Sequence[PlannedUtterance], str]) -> List[UtteranceResult]:
    return run_job(*arguments)


def synthesize_all(
    jobs: Sequence[Sequence[PlannedUtterance]], wav_dir: str, nj: int
) -> Dict[str, UtteranceResult]:
    """Run the jobs on ``nj`` processes, each job in a fresh process, with a progress bar.

    Fresh processes keep espeak-ng's carried-over state out (see :mod:`mini_corpus.tts`);
    they are forked, so the workers do not import the package again. This process itself never
    speaks with espeak-ng, so every worker starts from the library's initial state.

    Raises:
        RuntimeError: A job failed (the pool is terminated), or none finished for
            :data:`JOB_TIMEOUT` seconds.
    """
    total = sum(len(job) for job in jobs)
    results: Dict[str, UtteranceResult] = {}
    context = multiprocessing.get_context("fork")
    with context.Pool(nj, maxtasksperchild=1) as pool:
        outputs = pool.imap_unordered(_run_job, [(job, wav_dir) for job in jobs], chunksize=1)
        with tqdm(total=total, desc="synthesising mini corpus", unit="utt") as progress:
            for _ in jobs:
                try:
                    job_results = outputs.next(timeout=JOB_TIMEOUT)
                except multiprocessing.TimeoutError as error:
                    raise RuntimeError(
                        f"no synthesis job finished within {JOB_TIMEOUT} s (jobs take seconds): "
                        "a worker process probably died; run again with --nj 1 to see why"
                    ) from error
                results.update((result.utt_id, result) for result in job_results)
                progress.update(len(job_results))
    return results


# ----------------------------------------------------------------------------------------------
# Data dirs
# ----------------------------------------------------------------------------------------------
def write_data_dir(
    data_dir: Path,
    utterances: Sequence[PlannedUtterance],
    results: Mapping[str, UtteranceResult],
    wav_dir: str,
) -> None:
    """Write one Kaldi-style data dir for ``utterances``."""
    data_dir.mkdir(parents=True, exist_ok=True)
    utt2spk = {u.utt_id: u.speaker.speaker_id for u in utterances}
    write_spk2utt(data_dir / "spk2utt", utt2spk)
    files = {
        "wav.scp": {u.utt_id: str(audio_path(wav_dir, u)) for u in utterances},
        "text": {u.utt_id: u.sentence.transcript for u in utterances},
        "utt2spk": utt2spk,
        "utt2dur": {
            u.utt_id: f"{results[u.utt_id].num_samples / SAMPLE_RATE:.4f}" for u in utterances
        },
        "phone_alignment": {u.utt_id: " ".join(results[u.utt_id].labels_50hz) for u in utterances},
        "phone_alignment_100hz": {
            u.utt_id: " ".join(results[u.utt_id].labels_100hz) for u in utterances
        },
    }
    for name, entries in files.items():
        write_key_file(data_dir / name, entries)


def finetuning_subset(
    train: Sequence[PlannedUtterance], results: Mapping[str, UtteranceResult], fraction: float
) -> List[PlannedUtterance]:
    """Every train voice's first utterances, until ``fraction`` of its speech (at least one)."""
    by_speaker: Dict[str, List[PlannedUtterance]] = {}
    for utterance in train:
        by_speaker.setdefault(utterance.speaker.speaker_id, []).append(utterance)
    subset = []
    for own in by_speaker.values():
        budget = fraction * sum(results[u.utt_id].num_samples for u in own)
        taken = 0
        for utterance in own:
            subset.append(utterance)
            taken += results[utterance.utt_id].num_samples
            if taken >= budget:
                break
    return subset


def set_members(
    plan: Sequence[PlannedUtterance], results: Mapping[str, UtteranceResult], fraction: float
) -> Dict[str, List[PlannedUtterance]]:
    """``{set name: utterances}`` for :data:`SETS`."""
    members = {split: [u for u in plan if u.speaker.split == split] for split in SPLIT_SHARES}
    members[FINETUNE_SET] = finetuning_subset(members["train"], results, fraction)
    return members


# ----------------------------------------------------------------------------------------------
# Completion marker and the whole build
# ----------------------------------------------------------------------------------------------
def marker_options(options: CorpusOptions) -> Dict[str, object]:
    """What the marker records and compares: the options and the corpus version."""
    return {"version": CORPUS_VERSION, **asdict(options)}


def read_marker(outdir: Path) -> Optional[Dict[str, object]]:
    """The completion marker's content, or None if there is none (or it is unreadable)."""
    try:
        return json.loads((outdir / MARKER).read_text())
    except (OSError, ValueError):
        return None


def remove_outputs(outdir: Path) -> None:
    """Delete what a previous (partial or different) build wrote; nothing else in ``outdir``."""
    for name in OWNED:
        path = outdir / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()


def statistics(
    members: Mapping[str, Sequence[PlannedUtterance]], results: Mapping[str, UtteranceResult]
) -> Dict[str, Dict]:
    """Utterances, speakers and hours per set."""
    stats = {}
    for name, utterances in members.items():
        samples = sum(results[u.utt_id].num_samples for u in utterances)
        stats[name] = {
            "utterances": len(utterances),
            "speakers": len({u.speaker.speaker_id for u in utterances}),
            "hours": round(samples / SAMPLE_RATE / 3600, 4),
        }
    return stats


def build_mini_corpus(outdir: Union[str, Path], options: CorpusOptions, nj: int) -> Dict[str, Dict]:
    """Build the corpus in ``outdir`` unless a complete build with the same options is there.

    Args:
        outdir: Output directory; the paths in ``wav.scp`` start with it as given (so a relative
            ``outdir`` gives paths relative to the directory the recipe runs in).
        options: Size, seed and fine-tuning share.
        nj: Parallel synthesis processes.

    Returns:
        Per-set statistics (utterances, speakers, hours), also stored in the marker.

    Raises:
        ValueError: ``nj`` below 1.
        RuntimeError: An engine is missing (naming the Debian packages) or failed.
    """
    if nj < 1:
        raise ValueError(f"--nj {nj}: use at least 1 process")
    outdir = Path(outdir)
    wanted = marker_options(options)
    marker = read_marker(outdir)
    if marker is not None and marker.get("options") == wanted:
        logger.info("%s is complete (%s has the same options): nothing to do", outdir, MARKER)
        return marker["stats"]
    if marker is None:
        logger.info("%s has no completion marker: building it from scratch", outdir)
    else:
        logger.info(
            "%s was built with %s, not %s: rebuilding it", outdir, marker.get("options"), wanted
        )
    check_engines(SPEAKERS)
    remove_outputs(outdir)
    outdir.mkdir(parents=True, exist_ok=True)

    plan = plan_utterances(options, SPEAKERS)
    jobs = make_jobs(plan)
    logger.info(
        "synthesising %d utterances (%.2f h requested) with %d voices in %d jobs on %d processes",
        len(plan), options.seconds / 3600, len(SPEAKERS), len(jobs), nj,
    )  # fmt: skip
    wav_dir = str(outdir / "wav")
    results = synthesize_all(jobs, wav_dir, nj)

    members = set_members(plan, results, options.ft_fraction)
    for name, utterances in members.items():
        write_data_dir(outdir / name, utterances, results, wav_dir)
    write_text_atomic(outdir / "phones.txt", INVENTORY)
    write_key_file(
        outdir / "speakers",
        {s.speaker_id: f"{s.engine} {s.voice} {s.source} {s.split}" for s in SPEAKERS},
    )
    stats = statistics(members, results)
    for name, entry in stats.items():
        logger.info("%s: %d utterances, %d speakers, %.3f h", name, *entry.values())
    write_text_atomic(outdir / MARKER, [json.dumps({"options": wanted, "stats": stats}, indent=2)])
    return stats

"""Kaldi-style data directories: reading, duration filtering, and ESPnet's shape files."""

import logging
from pathlib import Path
from typing import Dict

import soundfile as sf

from espnet_ils.data.audio import SAMPLE_RATE
from espnet_ils.data.kaldi_files import read_key_file, write_spk2utt, write_text_atomic
from espnet_ils.data.markers import file_checksum, step_identity, up_to_date, write_marker

logger = logging.getLogger(__name__)

# Per-utterance files copied along when present (the mini corpus adds phone_alignment).
KEYED_FILES = ("wav.scp", "text", "utt2spk", "utt2dur", "phone_alignment")
# What else identifies a source directory: its lengths and the marker of the step that made it.
IDENTITY_FILES = (*KEYED_FILES, "utt2num_samples", ".done")


def num_samples_of(datadir: Path) -> Dict[str, int]:
    """``utt2num_samples`` of a data directory, read from the audio headers when absent."""
    lengths = Path(datadir) / "utt2num_samples"
    if lengths.is_file():
        return {utt: int(n) for utt, n in read_key_file(lengths).items()}
    counts = {}
    for utt, path in read_key_file(Path(datadir) / "wav.scp").items():
        try:
            info = sf.info(path)
        except (sf.LibsndfileError, RuntimeError) as error:
            raise ValueError(f"utterance {utt}: cannot read audio file {path}: {error}") from error
        if info.samplerate != SAMPLE_RATE:
            raise ValueError(
                f"utterance {utt}: {path} is sampled at {info.samplerate} Hz; expected {SAMPLE_RATE} Hz"
            )
        counts[utt] = info.frames
    return counts


def format_data_dir(src: Path, dst: Path, min_duration: float, max_duration: float) -> int:
    """Copy ``src`` to ``dst`` keeping utterances of ``[min_duration, max_duration]`` seconds.

    Writes the keyed files present in ``src`` (restricted to the kept utterances), ``spk2utt``,
    ``utt2num_samples`` and ``speech_shape`` (ESPnet's shape file: samples per utterance), then
    ``.done`` last, holding the duration range and the checksums of the source's files (keyed
    files, ``utt2num_samples`` and its own ``.done``). A ``dst`` whose marker holds the same is
    left as it is. Every utterance of wav.scp must appear in each keyed file (checked).

    Returns:
        The number of utterances kept.
    """
    src, dst = Path(src), Path(dst)
    if not (src / "wav.scp").is_file():
        raise FileNotFoundError(f"{src}/wav.scp: no such file; prepare the data directory first")
    identity = step_identity(
        {"min_duration": min_duration, "max_duration": max_duration},
        {name: file_checksum(src / name) for name in IDENTITY_FILES if (src / name).is_file()},
    )
    if up_to_date(dst / ".done", identity, f"formatting {src} -> {dst}"):
        return len(read_key_file(dst / "wav.scp"))
    lengths = num_samples_of(src)
    keep = [u for u, n in lengths.items() if min_duration <= n / SAMPLE_RATE <= max_duration]
    if not keep:
        raise ValueError(f"{src}: no utterance of {min_duration}-{max_duration} s")
    dst.mkdir(parents=True, exist_ok=True)
    for name in KEYED_FILES:
        if not (src / name).is_file():
            (dst / name).unlink(missing_ok=True)  # left by an earlier source
            continue
        entries = read_key_file(src / name)
        missing = [u for u in keep if u not in entries]
        if missing:
            raise ValueError(
                f"{src / name}: no entry for utterance {missing[0]} ({len(missing)} missing)"
            )
        write_text_atomic(dst / name, [f"{u} {entries[u]}" for u in keep])
    if (dst / "utt2spk").is_file():
        write_spk2utt(dst / "spk2utt", read_key_file(dst / "utt2spk"))
    write_text_atomic(dst / "utt2num_samples", [f"{u} {lengths[u]}" for u in keep])
    write_text_atomic(dst / "speech_shape", [f"{u} {lengths[u]}" for u in keep])
    write_marker(dst / ".done", identity)
    logger.info("%s -> %s: kept %d of %d utterances", src, dst, len(keep), len(lengths))
    return len(keep)

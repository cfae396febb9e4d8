"""The mini corpus's speakers: which engine and voice speaks, and in which set.

Nineteen voices from three engines:

- seven voices built from recordings of five people: CMU's ``kal`` (festival diphones and flite
  ``kal16``), ``ked`` (festival diphones), ``awb``, ``rms`` (flite) and ``slt`` (festival HTS and
  flite); two renderings of one person are different voices but the same person (``source``);
- twelve espeak-ng formant voices: an English dialect (pronunciation, rhythm) with a voice
  variant (``m1``..``m8``, ``f1``..``f5``: pitch, formant scaling, breathiness), which is what
  makes them sound like different people, so the variant is their ``source``.

Sets are disjoint by source, not only by voice: no person and no espeak variant is heard in two
of train / dev / test. Train holds kal, ked and awb and eight espeak variants; dev holds rms and
two variants; test holds slt (both renderings) and two variants, so each held-out set has a
recorded voice and formant voices of both sexes. Dialects may repeat across sets, as accents do
in LibriSpeech.
"""

import logging
import shutil
import subprocess
from dataclasses import dataclass
from typing import Dict, List, Sequence, Tuple

from mini_corpus.tts import find_espeak_library

logger = logging.getLogger(__name__)

FESTIVAL = "festival"
FLITE = "flite"
ESPEAK = "espeak-ng"

# Debian packages: the engines, and festival's voices (each voice is its own package).
ENGINE_PACKAGES = {FESTIVAL: "festival", FLITE: "flite", ESPEAK: "espeak-ng"}
FESTIVAL_VOICE_PACKAGES = {
    "kal_diphone": "festvox-kallpc16k",
    "ked_diphone": "festvox-kdlpc16k",
    "cmu_us_slt_arctic_hts": "festvox-us-slt-hts",
}
INSTALL_SCRIPT = "egs2/librispeech_ils/ssl1/local/install_tts.sh"


@dataclass(frozen=True)
class Speaker:
    """One voice of the corpus.

    Attributes:
        speaker_id: Kaldi speaker id, the prefix of its utterance ids (``fest-kal``).
        engine: ``festival``, ``flite`` or ``espeak-ng``.
        voice: The engine's voice name (festival ``kal_diphone``, flite ``kal16``, espeak-ng
            ``en-us+m1``).
        source: The person (or espeak-ng variant) behind the voice; sets never share a source.
        split: ``train``, ``dev`` or ``test``.
        seconds_per_char: Measured speaking time per character of transcript, in seconds; used
            only to plan how many sentences give the requested duration.
        rate: espeak-ng speaking rate in words per minute (its default is 175); unused elsewhere.
        pitch: espeak-ng base pitch, 0-100 (50 keeps the variant's own); unused elsewhere.
    """

    speaker_id: str
    engine: str
    voice: str
    source: str
    split: str
    seconds_per_char: float
    rate: int = 175
    pitch: int = 50


def _espeak(speaker_id: str, voice: str, split: str, rate: int, pitch: int, spc: float) -> Speaker:
    return Speaker(
        speaker_id, ESPEAK, voice, "espeak-" + voice.split("+")[1], split, spc, rate, pitch
    )


SPEAKERS: Tuple[Speaker, ...] = (
    Speaker("fest-kal", FESTIVAL, "kal_diphone", "kal", "train", 0.0712),
    Speaker("flite-kal", FLITE, "kal16", "kal", "train", 0.0593),
    Speaker("fest-ked", FESTIVAL, "ked_diphone", "ked", "train", 0.0709),
    Speaker("flite-awb", FLITE, "awb", "awb", "train", 0.0608),
    _espeak("esp-us-m1", "en-us+m1", "train", 165, 50, 0.0626),
    _espeak("esp-gb-f1", "en+f1", "train", 175, 50, 0.0584),
    _espeak("esp-rp-m3", "en-gb-x-rp+m3", "train", 150, 45, 0.0657),
    _espeak("esp-clan-f2", "en-gb-x-gbclan+f2", "train", 180, 55, 0.0564),
    _espeak("esp-wi-m5", "en-029+m5", "train", 160, 50, 0.0625),
    _espeak("esp-wm-f4", "en-gb-x-gbcwmd+f4", "train", 170, 50, 0.0603),
    _espeak("esp-us-m7", "en-us+m7", "train", 185, 50, 0.0553),
    _espeak("esp-nyc-m8", "en-us-nyc+m8", "train", 155, 40, 0.0651),
    Speaker("flite-rms", FLITE, "rms", "rms", "dev", 0.0682),
    _espeak("esp-sc-f3", "en-gb-scotland+f3", "dev", 170, 50, 0.0573),
    _espeak("esp-us-m2", "en-us+m2", "dev", 160, 50, 0.0643),
    Speaker("fest-slt", FESTIVAL, "cmu_us_slt_arctic_hts", "slt", "test", 0.0645),
    Speaker("flite-slt", FLITE, "slt", "slt", "test", 0.0602),
    _espeak("esp-nyc-m6", "en-us-nyc+m6", "test", 165, 50, 0.0611),
    _espeak("esp-rp-f5", "en-gb-x-rp+f5", "test", 175, 55, 0.0574),
)


def _festival_voices() -> List[str]:
    """Voices festival can load (its ``voice.list``); empty if festival is not installed."""
    result = subprocess.run(
        ["festival", "--batch", "(print (voice.list))"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        check=False,
    )
    return result.stdout.replace("(", " ").replace(")", " ").split()


def _flite_voices() -> List[str]:
    """Voices compiled into flite (``flite -lv``: ``Voices available: kal awb ...``)."""
    result = subprocess.run(
        ["flite", "-lv"], stdin=subprocess.DEVNULL, capture_output=True, text=True, check=False
    )
    return result.stdout.split(":", 1)[-1].split()


def missing_packages(speakers: Sequence[Speaker] = SPEAKERS) -> Dict[str, str]:
    """What is missing to synthesise ``speakers``.

    Returns:
        ``{Debian package: what needs it}``; empty when everything is installed.
    """
    engines = {speaker.engine for speaker in speakers}
    missing: Dict[str, str] = {}
    for engine in sorted(engines - {ESPEAK}):
        if shutil.which(engine) is None:
            missing[ENGINE_PACKAGES[engine]] = f"the {engine} program"
    if ESPEAK in engines and find_espeak_library() is None:
        missing[ENGINE_PACKAGES[ESPEAK]] = "the libespeak-ng library"
    if FESTIVAL in engines and "festival" not in missing:
        available = set(_festival_voices())
        for speaker in speakers:
            if speaker.engine == FESTIVAL and speaker.voice not in available:
                missing[FESTIVAL_VOICE_PACKAGES[speaker.voice]] = f"festival voice {speaker.voice}"
    if FLITE in engines and "flite" not in missing:
        available = set(_flite_voices())
        for speaker in speakers:
            if speaker.engine == FLITE and speaker.voice not in available:
                missing["flite"] = f"flite voice {speaker.voice} (a flite built without it)"
    return missing


def all_packages(speakers: Sequence[Speaker] = SPEAKERS) -> List[str]:
    """Every Debian package the speakers need, sorted."""
    packages = {ENGINE_PACKAGES[speaker.engine] for speaker in speakers}
    packages.update(
        FESTIVAL_VOICE_PACKAGES[speaker.voice] for speaker in speakers if speaker.engine == FESTIVAL
    )
    return sorted(packages)


def check_engines(speakers: Sequence[Speaker] = SPEAKERS) -> None:
    """Raise a ``RuntimeError`` naming the Debian packages to install if an engine is missing."""
    missing = missing_packages(speakers)
    if missing:
        needs = "; ".join(f"{package} ({why})" for package, why in sorted(missing.items()))
        raise RuntimeError(
            f"The mini corpus needs speech synthesisers that are not installed: {needs}. "
            f"Install them as root with `apt-get install -y {' '.join(sorted(missing))}` "
            f"(or run {INSTALL_SCRIPT}, which installs all of: {' '.join(all_packages(speakers))})."
        )
    logger.info("speech synthesisers found: %s", ", ".join(sorted({s.engine for s in speakers})))

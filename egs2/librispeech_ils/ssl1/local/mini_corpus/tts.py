"""Wrappers around the three offline speech synthesisers, each returning audio and phone timings.

- festival: one ``festival --batch`` process per list of sentences, driven by a generated Scheme
  script that saves each waveform and its ``Segment`` relation (phone name and end time in seconds).
- flite: one ``flite -psdur`` process per sentence; the phone end times (seconds, 1 ms resolution)
  are what flite prints, the waveform goes to a file.
- espeak-ng: its C library through ctypes, in synchronous mode with phoneme events: every phone
  comes with the sample at which it starts, so its timing is exact to the sample.

Each returns :class:`Synthesis` objects in the engine's own phone labels and sampling rate;
mapping to the common inventory and resampling happen in :mod:`mini_corpus.mini_corpus`.
The engines are deterministic, but espeak-ng keeps a little state from one sentence to the next
(its pitch flutter), so its output depends on the sentences the process spoke before: callers that
need identical audio run each list of sentences in a fresh process.
"""

import ctypes
import ctypes.util
import re
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Sequence

import numpy as np
import soundfile as sf

from espnet_ils.analysis.alignments import PhoneSegment

# What the engines may be asked to read (the grammar's output is a subset); it keeps the text
# safe inside a Scheme string and a command line.
SPOKEN_PATTERN = re.compile(r"^[A-Za-z][A-Za-z' ,.?]*$")


@dataclass
class Synthesis:
    """One synthesised sentence.

    Attributes:
        wave: ``(N,)`` float32 samples in [-1, 1] at ``sample_rate``.
        sample_rate: Sampling rate of ``wave`` in Hz (festival 16000 or 32000, flite 16000,
            espeak-ng 22050).
        segments: The engine's phones in time order, in its own labels, times in seconds.
    """

    wave: np.ndarray
    sample_rate: int
    segments: List[PhoneSegment]


def check_spoken(text: str) -> str:
    """Return ``text`` if an engine may read it, else raise ``ValueError`` naming it."""
    if not SPOKEN_PATTERN.match(text):
        raise ValueError(
            f"sentence {text!r} has characters the synthesisers are not given (allowed: letters, "
            "apostrophes, spaces, commas, full stops, question marks)"
        )
    return text


def segments_from_ends(labels: Sequence[str], ends: Sequence[float]) -> List[PhoneSegment]:
    """Phone segments from end times (seconds); the first phone starts at 0."""
    segments = []
    start = 0.0
    for label, end in zip(labels, ends):
        segments.append(PhoneSegment(label, start, end))
        start = end
    return segments


def _read_wave(path: Path, where: str) -> Synthesis:
    try:
        wave, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, OSError) as error:
        raise RuntimeError(
            f"{where}: the engine wrote no readable audio to {path}: {error}"
        ) from error
    return Synthesis(wave=wave[:, 0], sample_rate=rate, segments=[])


# ----------------------------------------------------------------------------------------------
# festival
# ----------------------------------------------------------------------------------------------
_FESTIVAL_PRELUDE = """\
(define (ils_save_segments utt path)
  (let ((fd (fopen path "w")))
    (mapcar
     (lambda (segment) (format fd "%s %f\\n" (item.name segment) (item.feat segment "end")))
     (utt.relation.items utt 'Segment))
    (fclose fd)))
"""


def festival_script(voice: str, texts: Sequence[str], workdir: Path) -> str:
    """Scheme that selects ``voice`` and saves ``<i>.wav`` and ``<i>.seg`` for every text."""
    lines = [_FESTIVAL_PRELUDE, f"(voice_{voice})"]
    for index, text in enumerate(texts):
        stem = workdir / str(index)
        lines.append(
            f'(let ((utt (SynthText "{check_spoken(text)}")))\n'
            f'  (utt.save.wave utt "{stem}.wav" \'riff)\n'
            f'  (ils_save_segments utt "{stem}.seg"))'
        )
    return "\n".join(lines) + "\n"


def synthesize_festival(voice: str, texts: Sequence[str]) -> List[Synthesis]:
    """Speak ``texts`` with festival voice ``voice`` (e.g. ``kal_diphone``) in one process.

    Raises:
        RuntimeError: festival failed or left a sentence without audio or timings.
    """
    with tempfile.TemporaryDirectory(prefix="ils_festival_") as tmp:
        workdir = Path(tmp)
        script = workdir / "synthesize.scm"
        script.write_text(festival_script(voice, texts, workdir))
        result = subprocess.run(
            ["festival", "--batch", str(script)],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            check=False,
        )
        outputs = []
        for index, text in enumerate(texts):
            where = f"festival voice {voice}, sentence {text!r}"
            stem = workdir / str(index)
            if not stem.with_suffix(".seg").is_file():
                raise RuntimeError(
                    f"{where}: festival (exit code {result.returncode}) wrote no phone timings; "
                    f"its messages: {(result.stderr + result.stdout)[-2000:]}"
                )
            synthesis = _read_wave(stem.with_suffix(".wav"), where)
            fields = [line.split() for line in stem.with_suffix(".seg").read_text().splitlines()]
            synthesis.segments = segments_from_ends(
                [label for label, _ in fields], [float(end) for _, end in fields]
            )
            outputs.append(synthesis)
    return outputs


# ----------------------------------------------------------------------------------------------
# flite
# ----------------------------------------------------------------------------------------------
def parse_flite_segments(printed: str, where: str) -> List[PhoneSegment]:
    """Parse ``flite -psdur`` output (``pau:0.220 dh:0.254 ...``: phone and end time in seconds).

    Raises:
        RuntimeError: Not exactly one line of ``phone:end`` pairs (flite split the sentence).
    """
    lines = [line for line in printed.splitlines() if line.strip()]
    if len(lines) != 1:
        raise RuntimeError(
            f"{where}: expected one line of phone timings from flite -psdur, got {len(lines)} "
            "(flite splits text into several utterances at sentence punctuation)"
        )
    pairs = [token.rsplit(":", 1) for token in lines[0].split()]
    return segments_from_ends([label for label, _ in pairs], [float(end) for _, end in pairs])


def synthesize_flite(voice: str, texts: Sequence[str]) -> List[Synthesis]:
    """Speak ``texts`` with flite voice ``voice`` (e.g. ``awb``), one process per sentence.

    Raises:
        RuntimeError: flite failed, naming the sentence and its messages.
    """
    outputs = []
    with tempfile.TemporaryDirectory(prefix="ils_flite_") as tmp:
        path = Path(tmp) / "speech.wav"
        for text in texts:
            where = f"flite voice {voice}, sentence {text!r}"
            result = subprocess.run(
                ["flite", "-voice", voice, "-psdur", "-t", check_spoken(text), "-o", str(path)],
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                check=False,
            )
            if result.returncode != 0:
                raise RuntimeError(
                    f"{where}: flite exited with {result.returncode}: {result.stderr}"
                )
            synthesis = _read_wave(path, where)
            synthesis.segments = parse_flite_segments(result.stdout, where)
            outputs.append(synthesis)
    return outputs


# ----------------------------------------------------------------------------------------------
# espeak-ng (speak_lib.h of espeak-ng 1.51)
# ----------------------------------------------------------------------------------------------
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INITIALIZE_PHONEME_EVENTS = 0x0001
_INITIALIZE_DONT_EXIT = 0x8000
_CHARS_UTF8 = 1
_ENDPAUSE = 0x1000  # add a sentence-final pause
_EVENT_LIST_TERMINATED = 0
_EVENT_PHONEME = 7
_PARAMETER_RATE = 1  # words per minute
_PARAMETER_PITCH = 3  # 0-100, 50 normal
ESPEAK_LIBRARY = "espeak-ng"


class _EventId(ctypes.Union):
    _fields_ = [("number", ctypes.c_int), ("name", ctypes.c_char_p), ("string", ctypes.c_char * 8)]


class _Event(ctypes.Structure):
    _fields_ = [
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),
        ("length", ctypes.c_int),
        ("audio_position", ctypes.c_int),  # milliseconds
        ("sample", ctypes.c_int),  # samples since the start of the message
        ("user_data", ctypes.c_void_p),
        ("id", _EventId),
    ]


_Callback = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event)
)


def find_espeak_library() -> Optional[str]:
    """Name of the libespeak-ng shared library to load, or None if it is not installed."""
    for name in ("libespeak-ng.so.1", ctypes.util.find_library(ESPEAK_LIBRARY)):
        if name is None:
            continue
        try:
            ctypes.CDLL(name)
        except OSError:
            continue
        return name
    return None


class EspeakEngine:
    """libespeak-ng in synchronous mode, collecting samples and phoneme events.

    The library has one global state per process: create one engine per process
    (:func:`espeak_engine`).
    """

    def __init__(self) -> None:
        name = find_espeak_library()
        if name is None:
            raise RuntimeError(
                "libespeak-ng is not installed; install the Debian package espeak-ng "
                "(egs2/librispeech_ils/ssl1/local/install_tts.sh)"
            )
        self.lib = ctypes.CDLL(name)
        self.lib.espeak_Synth.argtypes = [
            ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint,
            ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p,
        ]  # fmt: skip
        self.lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        options = _INITIALIZE_PHONEME_EVENTS | _INITIALIZE_DONT_EXIT
        self.sample_rate = self.lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, None, options)
        if self.sample_rate <= 0:
            raise RuntimeError(
                f"espeak_Initialize failed ({self.sample_rate}): is espeak-ng-data installed?"
            )
        self._chunks: List[np.ndarray] = []
        self._events: List[tuple] = []
        self._callback = _Callback(self._collect)  # keep a reference: C holds the pointer
        self.lib.espeak_SetSynthCallback(self._callback)

    def _collect(self, wave, num_samples: int, events) -> int:
        if num_samples > 0:
            self._chunks.append(np.ctypeslib.as_array(wave, shape=(num_samples,)).copy())
        index = 0
        while events[index].type != _EVENT_LIST_TERMINATED:
            event = events[index]
            if event.type == _EVENT_PHONEME:
                name = bytes(event.id.string).split(b"\0")[0].decode("utf-8")
                self._events.append((event.sample, name))
            index += 1
        return 0  # continue synthesis

    def synthesize(self, voice: str, rate: int, pitch: int, text: str) -> Synthesis:
        """Speak one sentence.

        Args:
            voice: espeak-ng voice, ``dialect+variant`` (e.g. ``en-us+m1``).
            rate: Speaking rate in words per minute (80-450; espeak's default 175).
            pitch: Base pitch, 0-100 (50 is the voice's own).
            text: The sentence.

        Returns:
            Audio at 22050 Hz and the phones with their sample-exact start times.

        Raises:
            RuntimeError: Unknown voice or a failed synthesis.
        """
        where = f"espeak-ng voice {voice}, sentence {text!r}"
        if self.lib.espeak_SetVoiceByName(voice.encode()) != 0:
            raise RuntimeError(f"{where}: espeak-ng has no voice {voice!r} (espeak-ng --voices)")
        self.lib.espeak_SetParameter(_PARAMETER_RATE, rate, 0)
        self.lib.espeak_SetParameter(_PARAMETER_PITCH, pitch, 0)
        self._chunks, self._events = [], []
        data = check_spoken(text).encode("utf-8")
        flags = _CHARS_UTF8 | _ENDPAUSE
        status = self.lib.espeak_Synth(data, len(data) + 1, 0, 0, 0, flags, None, None)
        if status != 0 or self.lib.espeak_Synchronize() != 0:
            raise RuntimeError(f"{where}: espeak_Synth failed with status {status}")
        wave = np.concatenate(self._chunks).astype(np.float32) / 32768.0
        return Synthesis(wave, self.sample_rate, self._segments(len(wave), where))

    def _segments(self, num_samples: int, where: str) -> List[PhoneSegment]:
        starts = [sample for sample, _ in self._events] + [num_samples]
        if any(later < earlier for earlier, later in zip(starts, starts[1:])):
            raise RuntimeError(f"{where}: phoneme events out of order or past the audio: {starts}")
        return [
            PhoneSegment(name, start / self.sample_rate, end / self.sample_rate)
            for (start, name), end in zip(self._events, starts[1:])
            if end > start
        ]


_ENGINE: Optional[EspeakEngine] = None


def espeak_engine() -> EspeakEngine:
    """This process's espeak-ng engine, created on first use."""
    global _ENGINE
    if _ENGINE is None:
        _ENGINE = EspeakEngine()
    return _ENGINE


def synthesize_espeak(voice: str, rate: int, pitch: int, texts: Sequence[str]) -> List[Synthesis]:
    """Speak ``texts`` with espeak-ng ``voice`` in this process (see :meth:`EspeakEngine.synthesize`)."""
    engine = espeak_engine()
    return [engine.synthesize(voice, rate, pitch, text) for text in texts]

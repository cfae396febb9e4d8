"""One phone inventory for every engine: ARPAbet's 39 phonemes without stress, plus ``sil``.

The three engines name phones differently: festival and flite print CMU's ARPAbet-like "radio"
phone set in lower case (with ``ax`` for schwa and ``pau`` for silence), espeak-ng reports its own
mnemonics (``@``, ``3:``, ``aI``, ``tS``, ...). Labels are mapped to the CMU dictionary's 39
phonemes (``aa ae ah ... zh``) plus ``sil``, so cluster-to-phone statistics (PNMI) pool over voices.

Mapping decisions:

- Phonemes, not accents: a label names the phoneme the engine realises (its lexical set), the
  way a dictionary-based forced aligner labels accented speech. espeak's dialects realise, e.g.,
  the STRUT vowel ``V`` as [ʌ] or [ʊ] and the happY vowel ``i`` as [i], [ɪ] or [e]; all are ``ah``
  and ``iy``. The exception is rhoticity, because it changes the number of phones: espeak's
  American voices (``en-us``) put the /r/ inside r-coloured vowel phonemes (``A@`` = [ɑːɹ]), the
  other dialects either drop it ([ɑː]) or speak it as a separate ``r``. For ``en-us`` such vowels
  map to vowel + ``r`` (``aa r``); elsewhere to the vowel alone.
- Reductions: schwa (festival/flite ``ax``, espeak ``@``, ``@2``, ``a#``, ...) is ``ah`` as in CMUdict;
  syllabic consonants become schwa + consonant (``@L`` -> ``ah l``, ``n-`` -> ``ah n``); the flap and
  the glottal stop (espeak ``t#``, ``?``; festival ``dx``) are ``t``.
- Centring diphthongs and triphthongs keep their nucleus (``e@`` -> ``eh``) and add ``ah`` only
  where the schwa is a syllable of its own (``aI@`` -> ``ay ah``, ``i@`` as in "idea" -> ``iy ah``).
- One engine phone that maps to several labels has its duration split equally among them.
- espeak's ``;`` is a transition between two vowels ("the evening"), not a phone: its time goes to
  the phone before it. All pauses (festival/flite ``pau``, espeak ``_``, ``_:``, ``_!``, ...) are ``sil``.

A phone the tables do not know raises an error naming the engine and the phone: add it here.
"""

from typing import Dict, List, Sequence, Tuple

from espnet_ils.analysis.alignments import SILENCE, PhoneSegment

# CMU dictionary phonemes (stress removed), in CMUdict's order, then silence.
ARPABET = (
    "aa", "ae", "ah", "ao", "aw", "ay", "b", "ch", "d", "dh", "eh", "er", "ey", "f", "g", "hh",
    "ih", "iy", "jh", "k", "l", "m", "n", "ng", "ow", "oy", "p", "r", "s", "sh", "t", "th", "uh",
    "uw", "v", "w", "y", "z", "zh",
)  # fmt: skip
INVENTORY: Tuple[str, ...] = (SILENCE,) + ARPABET

# Festival and flite ("radio" phone set of CMU's lexicon): the 39 map to themselves.
FESTIVAL_TO_COMMON: Dict[str, Tuple[str, ...]] = {phone: (phone,) for phone in ARPABET}
FESTIVAL_TO_COMMON.update(
    {
        "pau": (SILENCE,), "h#": (SILENCE,), "brth": (SILENCE,), "sil": (SILENCE,),
        "ax": ("ah",), "ix": ("ih",), "ux": ("uw",), "axr": ("er",), "dx": ("t",), "nx": ("n",),
        "hv": ("hh",), "el": ("ah", "l"), "em": ("ah", "m"), "en": ("ah", "n"),
    }
)  # fmt: skip

# espeak-ng English mnemonics (phoneme tables en, en-us, en-sc, en-rp, en-n, en-wm, en-wi,
# en-us-nyc of espeak-ng 1.51, and the pauses of its base table). An empty tuple means "no phone
# of its own: extend the previous one".
ESPEAK_TO_COMMON: Dict[str, Tuple[str, ...]] = {
    # pauses and transitions
    "_": (SILENCE,), "_:": (SILENCE,), "_!": (SILENCE,), "_::": (SILENCE,), "_^_": (SILENCE,),
    "_|": (SILENCE,), "_;_": (SILENCE,), "||": (SILENCE,), "_X1": (SILENCE,), ";": (),
    # consonants
    "p": ("p",), "b": ("b",), "t": ("t",), "d": ("d",), "k": ("k",), "g": ("g",), "f": ("f",),
    "v": ("v",), "T": ("th",), "D": ("dh",), "s": ("s",), "z": ("z",), "S": ("sh",),
    "Z": ("zh",), "h": ("hh",), "m": ("m",), "n": ("n",), "N": ("ng",), "l": ("l",), "r": ("r",),
    "w": ("w",), "j": ("y",), "tS": ("ch",), "dZ": ("jh",), "x": ("hh",),
    # allophones: flaps, glottal stop, dental t, linking and tapped r, voiceless w, dark l
    "t#": ("t",), "t2": ("t",), "?": ("t",), "t[": ("t",), "d#": ("d",), "z#": ("z",),
    "z/2": ("z",), "r-": ("r",), "r/": ("r",), "w#": ("w",), "l/": ("l",), "l/2": ("l",),
    # syllabic consonants
    "@L": ("ah", "l"), "n-": ("ah", "n"), "m-": ("ah", "m"), "l-": ("ah", "l"),
    "N-": ("ah", "ng"),
    # reduced vowels
    "@": ("ah",), "@2": ("ah",), "@5": ("ah",), "@-": ("ah",), "@#": ("ah",), "a#": ("ah",),
    "a2": ("ah",), "a#2": ("ah",), "3": ("ah",),
    # monophthongs
    "a": ("ae",), "aa": ("ae",), "A:": ("aa",), "A#": ("aa",), "A~": ("aa",), "0": ("aa",),
    "0#": ("aa",), "02": ("aa",), "E": ("eh",), "E#": ("eh",), "E2": ("eh",), "e#": ("eh",),
    "e:": ("ey",), "I": ("ih",), "I2": ("ih",), "I#": ("ih",), "I2#": ("ih",), "i": ("iy",),
    "i:": ("iy",), "O:": ("ao",), "O": ("ao",), "O2": ("ao",), "O~": ("ao",), "o:": ("ow",),
    "V": ("ah",), "U": ("uh",), "u:": ("uw",), "3:": ("er",), "IR": ("er",), "VR": ("er",),
    # diphthongs
    "aI": ("ay",), "aI2": ("ay",), "aU": ("aw",), "oU": ("ow",), "oU#": ("ow",), "eI": ("ey",),
    "OI": ("oy",),
    # vowels before a historical /r/ (non-rhotic realisation; see ESPEAK_RHOTIC below)
    "A@": ("aa",), "O@": ("ao",), "o@": ("ao",), "e@": ("eh",), "i@3": ("ih",), "U@": ("uh",),
    "aI3": ("ay", "ah"),
    # centring diphthongs and triphthongs with a syllabic schwa
    "i@": ("iy", "ah"), "aI@": ("ay", "ah"), "aU@": ("aw", "ah"),
}  # fmt: skip

# espeak-ng dialects whose r-coloured vowel phonemes contain the /r/ ([ɑːɹ], [ɚ]), and what
# those phonemes map to there.
ESPEAK_RHOTIC_DIALECTS = ("en-us",)
ESPEAK_RHOTIC: Dict[str, Tuple[str, ...]] = {
    "3": ("er",), "A@": ("aa", "r"), "O@": ("ao", "r"), "o@": ("ao", "r"), "e@": ("eh", "r"),
    "i@3": ("ih", "r"), "U@": ("uh", "r"), "aI3": ("ay", "er"),
}  # fmt: skip


def espeak_phone_map(voice: str) -> Dict[str, Tuple[str, ...]]:
    """Mnemonic -> common labels for an espeak-ng voice such as ``en-us+m1`` or ``en-gb``."""
    dialect = voice.split("+")[0]
    table = dict(ESPEAK_TO_COMMON)
    if dialect in ESPEAK_RHOTIC_DIALECTS:
        table.update(ESPEAK_RHOTIC)
    return table


def to_common(
    segments: Sequence[PhoneSegment], table: Dict[str, Tuple[str, ...]], where: str
) -> List[PhoneSegment]:
    """Map engine phone segments to the common inventory.

    Args:
        segments: The engine's phones with their spans in seconds, in time order.
        table: Engine label -> common labels (:data:`FESTIVAL_TO_COMMON`, :func:`espeak_phone_map`).
        where: Engine, voice and utterance, for the error message.

    Returns:
        Segments labelled from :data:`INVENTORY`; an engine phone mapped to k labels is split
        into k equal parts; a phone mapped to nothing extends the previous segment (or is
        silence at the start); neighbouring equal labels are kept apart (no merging).

    Raises:
        RuntimeError: An engine phone the table does not know.
    """
    mapped: List[PhoneSegment] = []
    for segment in segments:
        if segment.label not in table:
            raise RuntimeError(
                f"{where}: engine phone {segment.label!r} has no entry in the common phone "
                "inventory; add it to the mapping tables in egs2/librispeech_ils/ssl1/local/mini_corpus/phones.py"
            )
        labels = table[segment.label]
        if not labels:
            if mapped:
                last = mapped.pop()
                mapped.append(PhoneSegment(last.label, last.start, segment.end))
            else:
                mapped.append(PhoneSegment(SILENCE, segment.start, segment.end))
            continue
        step = (segment.end - segment.start) / len(labels)
        for index, label in enumerate(labels):
            end = segment.end if index == len(labels) - 1 else segment.start + step * (index + 1)
            mapped.append(PhoneSegment(label, segment.start + step * index, end))
    return mapped

"""The project's own small English grammar: seeded, unique sentences for the mini corpus.

Every word list and template below was written for this project (no text is taken from a corpus).
A sentence comes in two forms:

- ``spoken``: what the engines read, in sentence case with commas and a final ``.`` or ``?``
  (the commas give the engines' phrase breaks, i.e. natural pauses);
- ``transcript``: the reference text as LibriSpeech writes it: upper-case letters, apostrophes
  and single spaces, no other punctuation.

The grammar is a set of templates over slots (``{np}``, ``{vt_past}``, ...). A slot is filled by
a function of the random generator, and slot functions may expand templates of their own, so
noun phrases, clauses and whole sentences nest. Verbs are stored as (base, past) pairs so that
``didn't``, ``will`` and questions take the base form. All choices come from one
``random.Random(seed)``: the same seed gives the same sentences in the same order.
"""

import random
import re
from dataclasses import dataclass
from typing import Callable, Dict, Iterator, Sequence, Tuple

# ----------------------------------------------------------------------------------------------
# Word lists (lower case; proper names capitalised).
# ----------------------------------------------------------------------------------------------
NAMES = (
    "Anna", "Peter", "Maria", "Thomas", "Helen", "David", "Laura", "Martin", "Susan", "Robert",
    "Emily", "George", "Clara", "Daniel", "Rachel", "Simon", "Julia", "Oliver", "Nora", "Henry",
    "Alice", "Walter", "Grace", "Frank", "Lucy", "Edward", "Molly", "Arthur", "Ruth", "Victor",
    "Hannah", "Joseph", "Margaret", "Samuel", "Rose", "Benjamin", "Esther", "Philip",
)  # fmt: skip

# (singular, plural) for nouns with irregular plurals; other nouns take the regular rules.
IRREGULAR_PLURALS = {
    "child": "children", "woman": "women", "man": "men", "fisherman": "fishermen",
    "mouse": "mice", "goose": "geese", "sheep": "sheep", "deer": "deer", "wolf": "wolves",
    "knife": "knives", "loaf": "loaves", "shelf": "shelves", "leaf": "leaves", "foot": "feet",
    "tooth": "teeth",
}  # fmt: skip

PEOPLE = (
    "farmer", "baker", "sailor", "teacher", "doctor", "soldier", "painter", "miller", "fisherman",
    "gardener", "merchant", "stranger", "neighbor", "captain", "driver", "singer", "student",
    "lawyer", "nurse", "shepherd", "hunter", "tailor", "carpenter", "writer", "widow", "prince",
    "princess", "king", "queen", "servant", "child", "woman", "man", "boy", "girl", "friend",
    "uncle", "aunt", "cousin", "brother", "sister", "mother", "father", "grandmother", "judge",
    "musician", "pilot", "cook", "blacksmith", "weaver", "guard", "visitor", "traveler",
    "professor", "clerk", "dancer", "poet", "butcher", "jeweler",
)  # fmt: skip

ANIMALS = (
    "horse", "dog", "cat", "goat", "sheep", "cow", "fox", "rabbit", "mouse", "owl", "crow",
    "duck", "goose", "pig", "donkey", "wolf", "bear", "deer", "frog", "lamb", "hen", "pony",
    "eagle", "turtle", "squirrel", "kitten", "puppy", "parrot", "camel", "beaver",
)  # fmt: skip

THINGS = (
    "basket", "letter", "lamp", "candle", "bottle", "blanket", "ladder", "hammer", "bucket",
    "kettle", "ribbon", "coin", "key", "box", "book", "chair", "table", "window", "door", "wagon",
    "boat", "rope", "map", "coat", "hat", "boot", "glove", "ring", "bell", "clock", "mirror",
    "pillow", "shovel", "knife", "spoon", "plate", "cup", "jar", "drum", "violin", "whistle",
    "umbrella", "envelope", "pencil", "treasure", "loaf", "shelf", "saddle", "barrel", "feather",
    "compass", "lantern", "quilt", "sack", "needle", "thread", "brush", "picture", "parcel",
    "jacket", "scarf", "cushion", "trumpet", "guitar", "apple", "cabbage", "onion", "cheese",
    "pie", "sandwich", "potato", "pumpkin", "cherry", "notebook", "toy", "wheel", "engine",
)  # fmt: skip

# Places, each with the article it is used with.
PLACES = (
    "the market", "the river", "the garden", "the village", "the harbor", "the forest",
    "the kitchen", "the station", "the church", "the mill", "the bridge", "the hill",
    "the meadow", "the cellar", "the barn", "the library", "the castle", "the school",
    "the orchard", "the valley", "the island", "the tower", "the shop", "the road", "the field",
    "the lake", "the cottage", "the theater", "the hospital", "the garage", "the bakery",
    "the stable", "the square", "the post office", "the museum", "the beach", "the farm",
    "the factory", "the attic", "the hallway", "the chapel", "the harbor wall", "the old well",
)  # fmt: skip

ADJECTIVES = (
    "old", "young", "small", "large", "heavy", "quiet", "noisy", "bright", "dark", "tired",
    "hungry", "clever", "foolish", "careful", "gentle", "angry", "happy", "sad", "strange",
    "famous", "honest", "lazy", "busy", "brave", "proud", "polite", "rich", "poor", "wet", "dry",
    "warm", "cold", "empty", "broken", "golden", "wooden", "narrow", "crooked", "shiny", "dusty",
    "ancient", "friendly", "curious", "nervous", "patient", "sleepy", "thirsty", "cheerful",
    "lonely", "tiny", "enormous", "pale", "beige", "clumsy", "fancy", "plain", "smooth", "rough",
    "soft", "sharp", "loyal", "stubborn", "generous", "jolly", "gloomy", "modest", "eager",
)  # fmt: skip

COLORS = (
    "red", "blue", "green", "yellow", "white", "black", "brown", "gray", "purple", "orange",
    "pink", "silver",
)  # fmt: skip

# (base, past) for verbs that take an object.
TRANSITIVE_VERBS = (
    ("carry", "carried"), ("find", "found"), ("lose", "lost"), ("paint", "painted"),
    ("borrow", "borrowed"), ("buy", "bought"), ("sell", "sold"), ("mend", "mended"),
    ("open", "opened"), ("drop", "dropped"), ("hide", "hid"), ("watch", "watched"),
    ("follow", "followed"), ("chase", "chased"), ("catch", "caught"), ("feed", "fed"),
    ("wash", "washed"), ("clean", "cleaned"), ("fill", "filled"), ("push", "pushed"),
    ("pull", "pulled"), ("lift", "lifted"), ("count", "counted"), ("carve", "carved"),
    ("fix", "fixed"), ("bring", "brought"), ("take", "took"), ("admire", "admired"),
    ("notice", "noticed"), ("remember", "remembered"), ("forget", "forgot"),
    ("want", "wanted"), ("pack", "packed"), ("wrap", "wrapped"), ("hang", "hung"),
    ("steal", "stole"), ("guard", "guarded"), ("polish", "polished"), ("tie", "tied"),
    ("measure", "measured"), ("weigh", "weighed"), ("throw", "threw"), ("keep", "kept"),
    ("leave", "left"), ("hold", "held"), ("send", "sent"), ("choose", "chose"),
    ("sketch", "sketched"), ("describe", "described"), ("examine", "examined"),
    ("deliver", "delivered"), ("return", "returned"), ("share", "shared"), ("cook", "cooked"),
    ("taste", "tasted"), ("touch", "touched"), ("shake", "shook"), ("break", "broke"),
    ("bury", "buried"), ("discover", "discovered"), ("enjoy", "enjoyed"),
    ("point at", "pointed at"), ("look for", "looked for"), ("pick up", "picked up"),
    ("give away", "gave away"), ("put down", "put down"), ("search for", "searched for"),
)  # fmt: skip

# (base, past) for verbs without an object.
INTRANSITIVE_VERBS = (
    ("wait", "waited"), ("sleep", "slept"), ("laugh", "laughed"), ("smile", "smiled"),
    ("shout", "shouted"), ("whisper", "whispered"), ("sing", "sang"), ("dance", "danced"),
    ("walk", "walked"), ("run", "ran"), ("hurry", "hurried"), ("rest", "rested"),
    ("work", "worked"), ("wander", "wandered"), ("stay", "stayed"), ("listen", "listened"),
    ("tremble", "trembled"), ("sigh", "sighed"), ("nod", "nodded"), ("kneel down", "knelt down"),
    ("sit down", "sat down"), ("stand up", "stood up"), ("disappear", "disappeared"),
    ("arrive", "arrived"), ("stumble", "stumbled"), ("climb", "climbed"), ("swim", "swam"),
    ("shiver", "shivered"), ("hesitate", "hesitated"), ("complain", "complained"),
    ("pray", "prayed"), ("cough", "coughed"), ("yawn", "yawned"), ("jump", "jumped"),
    ("play", "played"), ("fall asleep", "fell asleep"), ("look around", "looked around"),
    ("turn back", "turned back"), ("sneeze", "sneezed"), ("frown", "frowned"),
)  # fmt: skip

MANNER_ADVERBS = (
    "quickly", "slowly", "quietly", "carefully", "gladly", "suddenly", "softly", "loudly",
    "happily", "eagerly", "gently", "patiently", "nervously", "proudly", "calmly", "bravely",
    "politely", "cheerfully", "silently", "anxiously", "at once", "again", "together", "twice",
    "with great pleasure", "without a word", "as usual", "by mistake", "on purpose",
)  # fmt: skip

TIMES = (
    "yesterday", "this morning", "last night", "before dawn", "in the evening", "after supper",
    "every winter", "on Sunday", "at noon", "early in the morning", "late in the afternoon",
    "on that occasion", "the next day", "a week later", "during the storm", "after the rain",
    "at midnight", "in the spring", "on Monday", "long ago", "three days ago", "by the evening",
)  # fmt: skip

LOCATION_PREPOSITIONS = (
    "in", "near", "behind", "beside", "under", "by", "inside", "outside", "around", "above",
)  # fmt: skip
MOTION_PREPOSITIONS = ("across", "toward", "through", "along", "past", "into", "over", "around")

NUMBERS = (
    "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve",
    "fifteen", "twenty", "thirty", "forty", "fifty", "sixty", "a hundred", "several", "many",
    "a few", "a dozen",
)  # fmt: skip

CONJUNCTIONS = ("and", "but", "so", "while", "because", "although", "until", "before", "after")
OPINION_VERBS = ("think", "believe", "suppose", "hope", "doubt", "know", "guess")
SPEECH_VERBS = ("said", "whispered", "explained", "told us", "wrote", "insisted", "admitted")
PRONOUNS_SINGULAR = ("he", "she")
PRONOUNS_PLURAL = ("they", "we")
MODALS = ("will", "won't", "could", "couldn't", "should", "shouldn't", "would", "wouldn't", "might")
CONTRACTED_SUBJECTS = ("I'll", "we'll", "they'll", "you'll", "she'll", "he'll")
BE_CONTRACTIONS = ("it's", "that's")

TRANSCRIPT_PATTERN = re.compile(r"^[A-Z']+( [A-Z']+)*$")

Slot = Callable[[random.Random], str]


@dataclass(frozen=True)
class Sentence:
    """One generated sentence.

    Attributes:
        spoken: What the engines read, e.g. ``"The old miller's dog waited, and Anna laughed."``.
        transcript: The reference text, e.g. ``"THE OLD MILLER'S DOG WAITED AND ANNA LAUGHED"``.
    """

    spoken: str
    transcript: str


def plural(noun: str) -> str:
    """English plural of a noun from the lists above (``box`` -> ``boxes``, ``pony`` -> ``ponies``)."""
    if noun in IRREGULAR_PLURALS:
        return IRREGULAR_PLURALS[noun]
    if noun.endswith(("s", "sh", "ch", "x")):
        return noun + "es"
    if noun.endswith("y") and noun[-2] not in "aeiou":
        return noun[:-1] + "ies"
    return noun + "s"


def _pick(words: Sequence) -> Slot:
    return lambda rng: rng.choice(words)


def _indefinite(word_after: str) -> str:
    # The lists avoid words like "hour" or "uniform" where the letter misleads.
    return "an" if word_after[0].lower() in "aeiou" else "a"


def _noun(rng: random.Random) -> str:
    return rng.choice(rng.choice((PEOPLE, PEOPLE, ANIMALS, THINGS)))


def _modifier(rng: random.Random) -> str:
    kind = rng.random()
    if kind < 0.45:
        return ""
    if kind < 0.8:
        return rng.choice(ADJECTIVES) + " "
    if kind < 0.92:
        return rng.choice(COLORS) + " "
    return f"{rng.choice(ADJECTIVES)} {rng.choice(COLORS)} "


def _np_singular(rng: random.Random) -> str:
    """A singular noun phrase: ``the old miller``, ``a red box``, ``Anna``, ``the baker's cat``."""
    kind = rng.random()
    noun = _noun(rng)
    modifier = _modifier(rng)
    if kind < 0.4:
        return f"the {modifier}{noun}"
    if kind < 0.6:
        phrase = f"{modifier}{noun}"
        return f"{_indefinite(phrase)} {phrase}"
    if kind < 0.75:
        return rng.choice(NAMES)
    if kind < 0.88:
        return f"{rng.choice(NAMES)}'s {modifier}{noun}"
    return f"the {rng.choice(PEOPLE)}'s {modifier}{noun}"


def _np_plural(rng: random.Random) -> str:
    """A plural noun phrase: ``the twelve geese``, ``several wooden boxes``, ``Anna and Peter``."""
    kind = rng.random()
    noun = plural(_noun(rng))
    modifier = _modifier(rng)
    if kind < 0.35:
        return f"{rng.choice(NUMBERS)} {modifier}{noun}"
    if kind < 0.6:
        return f"the {modifier}{noun}"
    if kind < 0.75:
        first, second = rng.sample(NAMES, 2)
        return f"{first} and {second}"
    if kind < 0.88:
        return f"the {rng.choice(NUMBERS[:12])} {modifier}{noun}"
    return f"{rng.choice(NAMES)}'s {noun}"


def _np(rng: random.Random) -> str:
    return _np_singular(rng) if rng.random() < 0.65 else _np_plural(rng)


def _object(rng: random.Random) -> str:
    if rng.random() < 0.85:
        return _np(rng)
    return rng.choice(("him", "her", "them", "it", "us", "me"))


def _place(rng: random.Random) -> str:
    return f"{rng.choice(LOCATION_PREPOSITIONS)} {rng.choice(PLACES)}"


def _path(rng: random.Random) -> str:
    return f"{rng.choice(MOTION_PREPOSITIONS)} {rng.choice(PLACES)}"


def _adjective_phrase(rng: random.Random) -> str:
    kind = rng.random()
    adjective = rng.choice(ADJECTIVES)
    if kind < 0.5:
        return adjective
    if kind < 0.8:
        return f"{rng.choice(('very', 'rather', 'too', 'quite', 'not very'))} {adjective}"
    other = rng.choice([word for word in ADJECTIVES if word != adjective])
    return f"{adjective} and {other}"


def _vt(rng: random.Random) -> Tuple[str, str]:
    return rng.choice(TRANSITIVE_VERBS)


def _vi(rng: random.Random) -> Tuple[str, str]:
    return rng.choice(INTRANSITIVE_VERBS)


def _tail(rng: random.Random, timed: bool = True) -> str:
    """An optional place, path, manner or (if ``timed``, past) time after a clause.

    Returns:
        The tail with its leading space, or ``""``.
    """
    kind = rng.random()
    if kind < 0.3:
        return ""
    if kind < 0.55:
        return " " + _place(rng)
    if kind < 0.7:
        return " " + _path(rng)
    if kind < 0.85 or not timed:
        return " " + rng.choice(MANNER_ADVERBS)
    return " " + rng.choice(TIMES)


def _clause(rng: random.Random) -> str:
    """A declarative clause in the past (or with a modal), without final punctuation."""
    kind = rng.random()
    if kind < 0.28:
        return f"{_np(rng)} {_vt(rng)[1]} {_object(rng)}{_tail(rng)}"
    if kind < 0.45:
        return f"{_np(rng)} {_vi(rng)[1]}{_tail(rng)}"
    if kind < 0.55:
        subject = rng.choice(PRONOUNS_SINGULAR + PRONOUNS_PLURAL + ("I", "you", "it"))
        return f"{subject} didn't {_vt(rng)[0]} {_object(rng)}{_tail(rng)}"
    if kind < 0.63:
        singular = rng.random() < 0.5
        subject = _np_singular(rng) if singular else _np_plural(rng)
        copula = rng.choice(("was", "wasn't") if singular else ("were", "weren't"))
        return f"{subject} {copula} {_adjective_phrase(rng)}{_tail(rng)}"
    if kind < 0.7:
        verb = _vt(rng)[0]
        return f"{_np(rng)} {rng.choice(MODALS)} {verb} {_object(rng)}{_tail(rng, timed=False)}"
    if kind < 0.76:
        verb = _vt(rng)[0]
        return f"{rng.choice(CONTRACTED_SUBJECTS)} {verb} {_object(rng)}{_tail(rng, timed=False)}"
    if kind < 0.82:
        noun = rng.choice(THINGS + ANIMALS)
        modifier = _modifier(rng)
        phrase = f"{modifier}{noun}"
        return f"there was {_indefinite(phrase)} {phrase} {_place(rng)}"
    if kind < 0.88:
        return f"{rng.choice(BE_CONTRACTIONS)} {_adjective_phrase(rng)} {_place(rng)}"
    if kind < 0.94:
        return f"{_np_singular(rng)} had {_vt(rng)[1]} {_object(rng)} {rng.choice(TIMES)}"
    return f"{rng.choice(PRONOUNS_PLURAL)}'re {_adjective_phrase(rng)} {rng.choice(TIMES)}"


def _question(rng: random.Random) -> str:
    """A question, with its final ``?``."""
    kind = rng.random()
    if kind < 0.3:
        return f"did {_np(rng)} {_vt(rng)[0]} {_object(rng)}{_tail(rng)}?"
    if kind < 0.5:
        wh = rng.choice(("why", "where", "when", "how"))
        return f"{wh} did {_np(rng)} {_vi(rng)[0]}{_tail(rng)}?"
    if kind < 0.7:
        return f"who {_vt(rng)[1]} {_object(rng)}{_tail(rng)}?"
    if kind < 0.85:
        return f"wasn't {_np_singular(rng)} {_adjective_phrase(rng)} {rng.choice(TIMES)}?"
    return f"could you {_vt(rng)[0]} {_object(rng)} {_place(rng)}?"


# Sentence templates with their weights; each slot is a function of the generator.
SENTENCE_TEMPLATES: Tuple[Tuple[float, str], ...] = (
    (3.0, "{clause}."),
    (3.0, "{clause}, {conjunction} {clause}."),
    (1.5, "{time}, {clause}."),
    (1.0, "{name} {speech_verb} that {clause}."),
    (1.0, "I {opinion} that {clause}."),
    (0.8, "I don't {negated_opinion} that {clause}."),
    (1.2, "{question}"),
    (0.7, "please {vt_base} {object} {place}."),
    (0.5, "don't {vt_base} the {adjective} {noun_plural}, {name}."),
    (0.7, "{np_plural} {vi_past} {path} {time}."),
    (0.6, "{clause} {time}, and {clause}."),
    (0.5, "{name} wasn't sure whether {clause}."),
)

SLOTS: Dict[str, Slot] = {
    "clause": _clause,
    "conjunction": _pick(CONJUNCTIONS),
    "time": _pick(TIMES),
    "name": _pick(NAMES),
    "speech_verb": _pick(SPEECH_VERBS),
    "opinion": _pick(OPINION_VERBS),
    "negated_opinion": _pick(OPINION_VERBS[:3]),
    "question": _question,
    "vt_base": lambda rng: _vt(rng)[0],
    "vi_past": lambda rng: _vi(rng)[1],
    "object": _object,
    "place": _place,
    "path": _path,
    "adjective": _pick(ADJECTIVES),
    "noun_plural": lambda rng: plural(rng.choice(ANIMALS + THINGS)),
    "np_plural": _np_plural,
}

_SLOT_PATTERN = re.compile(r"\{(\w+)\}")


def expand(template: str, rng: random.Random) -> str:
    """Fill every ``{slot}`` of ``template``, left to right, each from a fresh draw."""
    return _SLOT_PATTERN.sub(lambda match: SLOTS[match.group(1)](rng), template)


def to_transcript(spoken: str) -> str:
    """LibriSpeech-style reference text: upper case, apostrophes kept, other punctuation dropped.

    Raises:
        ValueError: The sentence has a character the grammar never produces (a bug in a list).
    """
    transcript = " ".join(re.sub(r"[,.?]", " ", spoken).upper().split())
    if not TRANSCRIPT_PATTERN.match(transcript):
        raise ValueError(
            f"sentence {spoken!r} gives transcript {transcript!r} with characters other than "
            "A-Z, apostrophe and space; fix the word lists in egs2/librispeech_ils/ssl1/local/mini_corpus/sentences.py"
        )
    return transcript


def generate_sentence(rng: random.Random, min_words: int = 5) -> Sentence:
    """One sentence of at least ``min_words`` words, drawn from ``rng``."""
    weights = [weight for weight, _ in SENTENCE_TEMPLATES]
    while True:
        template = rng.choices(SENTENCE_TEMPLATES, weights=weights)[0][1]
        text = expand(template, rng)
        if len(text.split()) >= min_words:
            break
    spoken = text[0].upper() + text[1:]
    return Sentence(spoken=spoken, transcript=to_transcript(spoken))


def generate_sentences(seed: int, min_words: int = 5) -> Iterator[Sentence]:
    """Endless stream of distinct sentences (no transcript repeats), deterministic for ``seed``.

    Args:
        seed: Seed of the generator; the same seed gives the same stream.
        min_words: Shortest sentence kept, in words (5 words are about 1.5 s of speech).

    Yields:
        :class:`Sentence` objects.
    """
    rng = random.Random(seed)
    seen = set()
    while True:
        sentence = generate_sentence(rng, min_words)
        if sentence.transcript not in seen:
            seen.add(sentence.transcript)
            yield sentence

"""Training text for ESPnet's LM task on the letters of the ASR model's token list.

ESPnet's LM task (``espnet2.bin.lm_train``) reads ``--train_data_path_and_name_and_type
<file>,text,text``: Kaldi-style ``key sentence`` lines. With ``--token_type char`` its
``CharTokenizer`` makes every character one token and writes a space as ``<space>``; its
``TokenIDConverter`` maps a character that is not in the token list to ``<unk>``. So the LM text is
the sentence as the transcripts spell it (LibriSpeech: upper case, apostrophes, single spaces), and
a sentence of ``n`` characters is ``n`` tokens (the LM adds ``<sos/eos>`` itself).

Sources are Kaldi ``text`` files (``utt WORDS...``, the utterance id kept as the key) or a plain
corpus, one sentence per line, possibly gzip'd (LibriSpeech's ``librispeech-lm-norm.txt.gz``; keys
``<file stem>_<line number, 9 digits>``, so they sort in file order). Both are streamed: the
LibriSpeech corpus has 40 M sentences, 4 GB of text.

Three checks keep the LM honest:
- Exclusion: a sentence whose key is a test utterance, or whose text equals a test transcript, is
  left out and counted, so that nobody mistakes an LM that has seen the test sets for a general one.
- Unknown characters: a character outside the token list becomes ``<unk>`` in ESPnet. When they are
  at most ``max_unknown_rate`` of the characters (default 0.1%: a rare letter the fine-tuning
  transcripts never had), they are kept, counted per character and reported; above it the text
  does not fit the token list (lower case, another alphabet, the wrong list) and it is an error
  naming the first such line.
- Length: sentences longer than ``max_chars`` characters are left out and counted (a letter LM's
  attention grows with the square of the length; LibriSpeech utterances are under 600 characters).

Each split directory gets ``text`` and ``text_shape.char`` (``key length,vocabulary size``, as
ESPnet's collect-stats stage writes it for ``--*_shape_file``), written under temporary names and
renamed into place.
"""

import gzip
import logging
import math
import os
import re
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterable, Iterator, List, Optional, Sequence, Set, TextIO, Tuple, Union

from espnet_ils.data.kaldi_files import write_text_atomic
from espnet_ils.decoding.lexicon import UNK, WORD_BOUNDARY, read_token_list

logger = logging.getLogger(__name__)

SOS_EOS = "<sos/eos>"  # ESPnet's LM uses the last token of the list as both
SHAPE_FILE = "text_shape.char"  # the name ESPnet's asr.sh gives the char LM's shape file
MAX_UNKNOWN_RATE = 0.001
_KEY_CHARACTERS = re.compile(r"[^A-Za-z0-9]+")


@dataclass(frozen=True)
class TextSource:
    """An LM text file.

    Attributes:
        path: The file; a name ending in ``.gz`` is read through gzip.
        keyed: ``True`` for Kaldi ``text`` (``utt WORDS...``), ``False`` for a plain corpus of one
            sentence per line.
    """

    path: Path
    keyed: bool


@dataclass(frozen=True)
class Exclusions:
    """What must not be in the LM text: test utterance ids and test transcripts (normalised)."""

    ids: Set[str] = field(default_factory=set)
    sentences: Set[str] = field(default_factory=set)


@dataclass
class SplitStats:
    """What was written to one split and what was left out.

    Attributes:
        sentences: Sentences written.
        characters: Their characters (= ESPnet char tokens, spaces included, ``<sos/eos>`` not).
        excluded_id: Sentences left out because their key is a test utterance id.
        excluded_sentence: Sentences left out because their text is a test transcript.
        too_long: Sentences left out for more than ``max_chars`` characters.
        empty: Lines without words (a keyed line with only its id, a blank line).
        unknown: Characters outside the token list (``<unk>`` in ESPnet), per character.
        first_unknown: ``file:line`` and character of the first of them.
    """

    sentences: int = 0
    characters: int = 0
    excluded_id: int = 0
    excluded_sentence: int = 0
    too_long: int = 0
    empty: int = 0
    unknown: Counter = field(default_factory=Counter)
    first_unknown: Optional[str] = None

    @property
    def unknown_rate(self) -> float:
        """Share of the written characters that are outside the token list."""
        return sum(self.unknown.values()) / max(self.characters, 1)


def _open_text(path: Path) -> TextIO:
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8")
    return path.open(encoding="utf-8")


def corpus_key_prefix(path: Union[str, Path]) -> str:
    """Key prefix of a plain corpus: its name without ``.gz``/``.txt``, other signs as ``_``.

    ``librispeech-lm-norm.txt.gz`` -> ``librispeech_lm_norm``.
    """
    name = Path(path).name
    for suffix in (".gz", ".txt"):
        name = name.removesuffix(suffix)
    return _KEY_CHARACTERS.sub("_", name).strip("_") or "corpus"


def read_sentences(source: TextSource) -> Iterator[Tuple[str, str, int]]:
    """``(key, sentence, line number)`` for each line of ``source``; whitespace made single spaces.

    A line without words is yielded with an empty sentence (the caller counts it).

    Raises:
        FileNotFoundError: ``source.path`` does not exist.
    """
    path = Path(source.path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such LM text")
    prefix = corpus_key_prefix(path)
    with _open_text(path) as f:
        for number, line in enumerate(f, start=1):
            fields = line.split()
            if source.keyed:
                if fields:
                    yield fields[0], " ".join(fields[1:]), number
            else:
                yield f"{prefix}_{number:09d}", " ".join(fields), number


def read_exclusions(texts: Iterable[Union[str, Path]]) -> Exclusions:
    """The utterance ids and transcripts of Kaldi ``text`` files (the test sets)."""
    exclusions = Exclusions()
    for text in texts:
        for key, sentence, _ in read_sentences(TextSource(Path(text), keyed=True)):
            exclusions.ids.add(key)
            if sentence:
                exclusions.sentences.add(sentence)
    return exclusions


def spelled_characters(tokens: Sequence[str]) -> Set[str]:
    """Characters that ESPnet's char tokenizer maps to a token of ``tokens`` other than ``<unk>``:
    the one-character tokens, and the space when ``<space>`` is in the list."""
    characters = {token for token in tokens if len(token) == 1}
    if WORD_BOUNDARY in tokens:
        characters.add(" ")
    return characters


@contextmanager
def _atomic_lines(path: Path) -> Iterator[TextIO]:
    """A text file written under ``<path>.tmp`` and renamed to ``path`` when the block succeeds.

    Streams (the LibriSpeech LM text does not fit ``write_text_atomic``'s list in memory).
    """
    tmp = path.with_name(path.name + ".tmp")
    try:
        with tmp.open("w", encoding="utf-8") as f:
            yield f
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_lm_split(
    sources: Sequence[TextSource],
    tokens: Sequence[str],
    outdir: Path,
    exclusions: Optional[Exclusions] = None,
    max_chars: int = 0,
    max_unknown_rate: float = MAX_UNKNOWN_RATE,
) -> SplitStats:
    """Write ``outdir/text`` and ``outdir/text_shape.char`` from ``sources``.

    Args:
        sources: Kaldi texts and plain corpora, written in this order.
        tokens: The token list the LM is trained with (the ASR model's).
        outdir: Output directory (made).
        exclusions: Test ids and transcripts to leave out; ``None`` for none.
        max_chars: Longest sentence kept, in characters; 0 keeps all.
        max_unknown_rate: Largest share of characters outside ``tokens`` that is accepted.

    Returns:
        What was written and left out.

    Raises:
        ValueError: A key written twice (naming both places), no sentence left, or more
            characters outside the token list than ``max_unknown_rate`` (naming the first line).
    """
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    if exclusions is None:
        exclusions = Exclusions()
    known = spelled_characters(tokens)
    stats = SplitStats()
    keyed_at: Dict[str, str] = {}  # key -> file:line, for Kaldi keys (corpus keys are unique)
    prefixes: Dict[str, Path] = {}
    with _atomic_lines(outdir / "text") as text, _atomic_lines(outdir / SHAPE_FILE) as shape:
        for source in sources:
            if not source.keyed:
                prefix = corpus_key_prefix(source.path)
                if prefix in prefixes:
                    raise ValueError(
                        f"{source.path} and {prefixes[prefix]} give the same keys "
                        f"({prefix}_<line>); rename one"
                    )
                prefixes[prefix] = Path(source.path)
            for key, sentence, number in read_sentences(source):
                where = f"{source.path}:{number}"
                if source.keyed:
                    if key in keyed_at:
                        raise ValueError(f"{where}: key {key!r} is also at {keyed_at[key]}")
                    keyed_at[key] = where
                if not sentence:
                    stats.empty += 1
                elif key in exclusions.ids:
                    stats.excluded_id += 1
                elif sentence in exclusions.sentences:
                    stats.excluded_sentence += 1
                elif max_chars and len(sentence) > max_chars:
                    stats.too_long += 1
                else:
                    if not known.issuperset(sentence):
                        unknown = [c for c in sentence if c not in known]
                        stats.unknown.update(unknown)
                        if stats.first_unknown is None:
                            stats.first_unknown = f"{where}: {unknown[0]!r} in {sentence[:60]!r}"
                    text.write(f"{key} {sentence}\n")
                    shape.write(f"{key} {len(sentence)},{len(tokens)}\n")
                    stats.sentences += 1
                    stats.characters += len(sentence)
        if stats.sentences == 0:
            raise ValueError(f"{[str(s.path) for s in sources]}: no sentence left for {outdir}")
        if stats.unknown_rate > max_unknown_rate:
            raise ValueError(
                f"{stats.first_unknown}: {sum(stats.unknown.values())} of {stats.characters} "
                f"characters ({stats.unknown_rate:.2%}) are not in the token list "
                f"({dict(stats.unknown.most_common(5))}); at most {max_unknown_rate:.2%} may "
                "become <unk>. Normalise the text like the transcripts (upper case), or use the "
                "token list of the ASR model it is for"
            )
    return stats


def unigram_perplexity(train_text: Path, dev_text: Path, tokens: Sequence[str]) -> float:
    """Per-token perplexity of ``dev_text`` under the add-one unigram of ``train_text``'s tokens.

    The reference an LM must beat: tokens as ESPnet's LM task counts them (each character,
    ``<space>``, unknown characters as ``<unk>``, one ``<sos/eos>`` per sentence), add-one
    smoothing over the token list except ``<blank>`` (which the LM never predicts).

    Args:
        train_text, dev_text: Keyed LM texts (``write_lm_split``'s ``text``).
        tokens: The token list.

    Returns:
        ``exp(-mean log p)`` over the dev tokens; the uniform model's is ``len(tokens) - 1``.
    """

    def count(path: Path) -> Counter:
        counts: Counter = Counter()
        for _, sentence, _ in read_sentences(TextSource(path, keyed=True)):
            counts.update(sentence)
            counts[SOS_EOS] += 1
        return counts

    def as_tokens(counts: Counter) -> Counter:
        tokenized: Counter = Counter()
        for character, n in counts.items():
            token = WORD_BOUNDARY if character == " " else character
            tokenized[token if token in predicted else UNK] += n
        return tokenized

    predicted = set(tokens[1:])  # <blank> (id 0) is ESPnet's ignore id in the LM
    train, dev = as_tokens(count(train_text)), as_tokens(count(dev_text))
    total = sum(train.values()) + len(predicted)
    log_prob = sum(n * math.log((train[token] + 1) / total) for token, n in dev.items())
    return math.exp(-log_prob / sum(dev.values()))


def _stats_rows(split: str, stats: SplitStats) -> List[str]:
    unknown = " ".join(f"{c!r}:{n}" for c, n in stats.unknown.most_common()) or "-"
    return [
        f"{split}\tsentences\t{stats.sentences}",
        f"{split}\tcharacters\t{stats.characters}",
        f"{split}\texcluded_test_id\t{stats.excluded_id}",
        f"{split}\texcluded_test_sentence\t{stats.excluded_sentence}",
        f"{split}\ttoo_long\t{stats.too_long}",
        f"{split}\tempty\t{stats.empty}",
        f"{split}\tunknown_characters\t{sum(stats.unknown.values())} ({unknown})",
    ]


def prepare_lm_text(
    train_sources: Sequence[TextSource],
    dev_sources: Sequence[TextSource],
    token_list: Union[str, Path],
    outdir: Union[str, Path],
    exclude_texts: Sequence[Union[str, Path]] = (),
    max_chars: int = 0,
    max_unknown_rate: float = MAX_UNKNOWN_RATE,
) -> Dict[str, SplitStats]:
    """Write the LM's ``train`` and ``dev`` splits and ``stats.tsv`` under ``outdir``.

    Args:
        train_sources: Training text (mini: the training transcripts; LibriSpeech: the LM corpus
            and the training transcripts).
        dev_sources: Validation text (ESPnet's default: the ASR valid set's transcripts).
        token_list: The ASR model's ``tokens.txt`` (stage 8).
        outdir: Writes ``train/``, ``dev/`` (``text``, ``text_shape.char``) and ``stats.tsv``
            (``split  what  count``, with the dev unigram perplexity as the LM's reference).
        exclude_texts: Kaldi texts of the test sets, left out of both splits.
        max_chars: Longest sentence kept (characters); 0 keeps all.
        max_unknown_rate: Largest accepted share of characters outside the token list.

    Returns:
        ``{"train": SplitStats, "dev": SplitStats}``.

    Raises:
        FileNotFoundError: A missing text or token list.
        ValueError: See :func:`write_lm_split`; a bad token list (naming its line), or one whose
            last token is not ``<sos/eos>``.
    """
    token_list, outdir = Path(token_list), Path(outdir)
    tokens = read_token_list(token_list)
    if tokens[-1] != SOS_EOS:
        raise ValueError(
            f"{token_list}: the last token is {tokens[-1]!r}; ESPnet's LM uses the last token as "
            f"{SOS_EOS} (write the list with --add_symbol '{SOS_EOS}:-1')"
        )
    if not 0 <= max_unknown_rate < 1:
        raise ValueError(f"--max_unknown_rate {max_unknown_rate}: expected 0 <= rate < 1")
    exclusions = read_exclusions(exclude_texts)
    stats = {}
    for split, sources in (("train", train_sources), ("dev", dev_sources)):
        stats[split] = write_lm_split(
            sources, tokens, outdir / split, exclusions, max_chars, max_unknown_rate
        )
        logger.info("%s: %s", outdir / split, stats[split])
    ppl = unigram_perplexity(outdir / "train" / "text", outdir / "dev" / "text", tokens)
    rows = ["split\twhat\tcount"]
    for split, split_stats in stats.items():
        rows += _stats_rows(split, split_stats)
    rows.append(f"dev\tunigram_perplexity\t{ppl:.2f}")
    write_text_atomic(outdir / "stats.tsv", rows)
    return stats

"""Lexicon beam search with a word n-gram over cached CTC log-probs (the paper's 4-gram decoding).

The search is Flashlight's lexicon decoder (wav2letter's, as fairseq's HuBERT recipe decodes) through
``torchaudio.models.decoder.ctc_decoder`` with KenLM. Its inputs map from ESPnet's as follows:

- tokens: the fine-tuning ``tokens.txt`` (one token per line, line ``i`` is CTC output ``i``):
  ``<blank>`` is the CTC blank, ``<space>`` the word boundary (Flashlight's silence token),
  ``<unk>`` the unknown word; ``<sos/eos>`` and ``<unk>`` are never spelled.
- lexicon: a letter lexicon, one word per line, the word then its letters (tokens) separated by
  spaces, e.g. ``HELLO H E L L O``. The spelling ends without a boundary: ESPnet's character
  targets are ``H E L L O <space> W O R L D`` (no boundary after the last word), and the decoder
  takes ``<space>`` between words as optional silence. Built from the LM's word list with
  :func:`letter_lexicon`.
- LM: an ARPA file (plain or ``.gz``) or a KenLM binary, words in the transcripts' case.

The search runs over CTC log-probs computed once per utterance (float32 ``(T, V)`` matrices,
:mod:`espnet_ils.decoding.ctc_logprobs`), so that tuning the LM weight and word score on a valid set
(:func:`tune`) never runs the acoustic model again.
"""

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import (
    Collection,
    Dict,
    Iterable,
    List,
    Mapping,
    Optional,
    Protocol,
    Sequence,
    Tuple,
    Union,
)

import numpy as np
import torch
from flashlight.lib.text.decoder.kenlm import KenLM
from flashlight.lib.text.dictionary import create_word_dict, load_words
from torchaudio.models.decoder import CTCDecoder, ctc_decoder
from tqdm import tqdm

from espnet_ils.data.kaldi_files import write_text_atomic
from espnet_ils.decoding.ngram import LM_SYMBOLS, check_lm_file
from espnet_ils.decoding.scoring import count_errors

logger = logging.getLogger(__name__)

BLANK = "<blank>"  # CTC blank in ESPnet's token list
WORD_BOUNDARY = "<space>"  # ESPnet's char tokenizer writes a space as this token
UNK = "<unk>"  # unknown token in the token list, unknown word in the LM
NOT_SPELLED = (BLANK, WORD_BOUNDARY, UNK, "<sos/eos>")  # tokens that are not letters

# Search settings of fairseq's HuBERT KenLM decoding (examples/hubert/config/decode/infer_kenlm.yaml).
BEAM_SIZE = 500
BEAM_THRESHOLD = 100.0
LM_WEIGHT = 2.0
WORD_SCORE = -1.0


def read_token_list(path: Union[str, Path], token_type: str = "char") -> List[str]:
    """ESPnet's ``tokens.txt``: token ``i`` on line ``i + 1``.

    Args:
        path: The token list.
        token_type: ``char`` (letters, with ``<space>`` between words) or ``word`` (one token per
            word, e.g. the phones of the phone-recognition probe: no ``<space>``).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: An empty or repeated token, or ``<blank>``, ``<unk>`` or (``char``)
            ``<space>`` missing (naming the file and line).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such token list")
    tokens = path.read_text(encoding="utf-8").splitlines()
    seen: Dict[str, int] = {}
    for number, token in enumerate(tokens, start=1):
        if not token or token != token.strip() or " " in token:
            raise ValueError(f"{path}:{number}: token {token!r}: expected one token per line")
        if token in seen:
            raise ValueError(f"{path}:{number}: token {token!r} is also on line {seen[token]}")
        seen[token] = number
    required = (BLANK, WORD_BOUNDARY, UNK) if token_type == "char" else (BLANK, UNK)
    missing = [t for t in required if t not in seen]
    if missing:
        raise ValueError(
            f"{path}: the token list has no {missing}; lexicon decoding needs a character token "
            f"list written with --add_symbol '{BLANK}:0' --add_symbol '{UNK}:1' "
            "(and a text with spaces, for <space>)"
        )
    return tokens


def spell(word: str, letters: Collection[str]) -> List[str]:
    """The letters of ``word``, each of which must be in ``letters``.

    Raises:
        ValueError: Naming the first letter that is not in ``letters``.
    """
    for letter in word:
        if letter not in letters:
            raise ValueError(
                f"word {word!r} has the letter {letter!r}, which is not in the token list"
            )
    return list(word)


def _letters(tokens: Sequence[str]) -> set:
    return set(tokens) - set(NOT_SPELLED)


def letter_lexicon(words: Iterable[str], tokens: Sequence[str]) -> Dict[str, List[str]]:
    """Spell each word with the letters of the token list (no boundary token at the end).

    Args:
        words: Spoken words, e.g. an LM's vocabulary (:func:`espnet_ils.decoding.ngram.arpa_words`);
            ``<s>``, ``</s>`` and ``<unk>`` are left out.
        tokens: The token list (:func:`read_token_list`).

    Returns:
        ``{word: letters}`` sorted by word, e.g. ``{"IT'S": ["I", "T", "'", "S"]}``.

    Raises:
        ValueError: A word with a letter outside the token list (naming the word and letter).
    """
    letters = _letters(tokens)
    lexicon = {}
    for number, word in enumerate(words, start=1):
        if word in LM_SYMBOLS:
            continue
        try:
            lexicon[word] = spell(word, letters)
        except ValueError as error:
            raise ValueError(f"word {number} of the word list: {error}") from error
    return dict(sorted(lexicon.items()))


def read_word_list(path: Union[str, Path], tokens: Sequence[str]) -> Dict[str, List[str]]:
    """The letter lexicon of a word list file (one word per line, e.g. the LM's ``words.txt``).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: A line that is not one word, or a word with a letter outside the token list
            (naming the file, line and letter).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such word list")
    letters, lexicon = _letters(tokens), {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        fields = line.split()
        if len(fields) != 1:
            raise ValueError(f"{path}:{number}: expected one word per line, got {line!r}")
        if fields[0] in LM_SYMBOLS:
            continue
        try:
            lexicon[fields[0]] = spell(fields[0], letters)
        except ValueError as error:
            raise ValueError(f"{path}:{number}: {error}") from error
    return dict(sorted(lexicon.items()))


def write_lexicon(lexicon: Mapping[str, Sequence[str]], path: Union[str, Path]) -> None:
    """Write ``WORD L E T T E R S`` lines (sorted by word) through a temporary name."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, [f"{word} {' '.join(lexicon[word])}" for word in sorted(lexicon)])


def read_lexicon(path: Union[str, Path], tokens: Sequence[str]) -> Dict[str, List[List[str]]]:
    """Read and check a lexicon (``WORD t1 t2 ...`` per line; a word may have several lines).

    Args:
        path: The lexicon file.
        tokens: The token list; every spelling token must be one of its letters.

    Returns:
        ``{word: [spelling, ...]}``.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: A line without spelling, a token outside the token list, or the blank or
            boundary token inside a spelling (naming the file, line and token).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such lexicon")
    letters, lexicon = _letters(tokens), {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) < 2:
            raise ValueError(f"{path}:{number}: word {fields[0]!r} has no spelling")
        for letter in fields[1:]:
            if letter not in letters:
                raise ValueError(
                    f"{path}:{number}: word {fields[0]!r} is spelled with {letter!r}, which is "
                    f"not a letter of the token list ({len(letters)} letters; {NOT_SPELLED} "
                    "are never spelled)"
                )
        lexicon.setdefault(fields[0], []).append(fields[1:])
    if not lexicon:
        raise ValueError(f"{path}: the lexicon is empty")
    return lexicon


def best_path(log_probs: torch.Tensor, tokens: Sequence[str], token_type: str = "char") -> str:
    """Greedy CTC decoding (no lexicon, no LM): argmax per frame, repeats merged, blanks removed.

    Args:
        log_probs: ``(T, V)`` CTC log-probs, ``V = len(tokens)``.
        tokens: The token list.
        token_type: ``char``: letters, ``<space>`` read as a word boundary; ``word``: each token
            is a word (phones), joined by spaces.

    Returns:
        The words.
    """
    ids = torch.unique_consecutive(log_probs.argmax(dim=-1)).tolist()
    if token_type == "word":
        return " ".join(tokens[i] for i in ids if tokens[i] != BLANK)
    return ids_to_words(ids, tokens)


def ids_to_words(ids: Sequence[int], tokens: Sequence[str]) -> str:
    """Token ids -> words: ``<blank>`` dropped, ``<space>`` read as a word boundary."""
    text = "".join(
        " " if tokens[i] == WORD_BOUNDARY else tokens[i] for i in ids if tokens[i] != BLANK
    )
    return " ".join(text.split())


class LexiconBeamSearch:
    """Flashlight lexicon beam search over ESPnet CTC log-probs, with an optional word n-gram.

    The LM is loaded once; the search of an ``(lm_weight, word_score)`` pair (whose lexicon trie
    holds the LM's unigram scores) is built when the pair changes.

    Args:
        tokens: The token list (:func:`read_token_list`); CTC output ``i`` is ``tokens[i]``.
        lexicon: Lexicon file (``WORD L E T T E R S``), checked against ``tokens``.
        lm: ARPA file (plain or ``.gz``) or KenLM binary; None decodes with the lexicon only.
        beam_size: Hypotheses kept per frame (fairseq HuBERT: 500).
        beam_threshold: Hypotheses scoring this much below the best are dropped (fairseq: 100).
        sil_score: Score added per word boundary (``<space>``) (fairseq: 0).
    """

    BONUS = "word_score"  # the second tuned score: an insertion bonus per word

    def __init__(
        self,
        tokens: Sequence[str],
        lexicon: Union[str, Path],
        lm: Optional[Union[str, Path]] = None,
        beam_size: int = BEAM_SIZE,
        beam_threshold: float = BEAM_THRESHOLD,
        sil_score: float = 0.0,
    ) -> None:
        if beam_size < 1:
            raise ValueError(f"beam_size={beam_size}: expected a positive number of hypotheses")
        if beam_threshold <= 0:
            raise ValueError(f"beam_threshold={beam_threshold}: expected a positive score margin")
        self.tokens = list(tokens)
        self.lexicon = str(lexicon)
        num_words = len(read_lexicon(lexicon, self.tokens))
        self.beam_size = beam_size
        self.beam_threshold = beam_threshold
        self.sil_score = sil_score
        # The LM maps the decoder's word indices to its own: the word dictionary is the one
        # ctc_decoder builds from the same lexicon file (words in file order, then <unk>).
        self._word_dict = create_word_dict(load_words(self.lexicon))
        self._lm = None if lm is None else load_kenlm(lm, self._word_dict)
        self._search: Optional[Tuple[Tuple[float, float], CTCDecoder]] = None  # the last pair's
        logger.info("lexicon search: %d words from %s, LM %s", num_words, lexicon, lm)

    def search(self, lm_weight: float, word_score: float) -> CTCDecoder:
        """torchaudio's decoder for one ``(lm_weight, word_score)`` pair (kept until the next)."""
        key = (float(lm_weight), float(word_score))
        if self._search is None or self._search[0] != key:
            self._search = (
                key,
                ctc_decoder(
                    lexicon=self.lexicon,
                    tokens=self.tokens,
                    lm=self._lm,
                    beam_size=self.beam_size,
                    beam_threshold=self.beam_threshold,
                    lm_weight=key[0],
                    word_score=key[1],
                    sil_score=self.sil_score,
                    blank_token=BLANK,
                    sil_token=WORD_BOUNDARY,
                    unk_word=UNK,
                ),
            )
        return self._search[1]

    def decode(self, log_probs: torch.Tensor, lm_weight: float, word_score: float) -> str:
        """Decode one utterance.

        Args:
            log_probs: ``(T, V)`` CTC log-softmax outputs (frames at the encoder's rate, 50 Hz
                for HuBERT-style models), ``V = len(tokens)``; float32 or numpy.
            lm_weight: Weight of the LM's scores (KenLM's log10 probabilities) against the
                acoustic natural-log probabilities (fairseq: 2).
            word_score: Score added per word (insertion bonus; fairseq: -1).

        Returns:
            The words, space-separated (empty when nothing was decoded).

        Raises:
            ValueError: ``log_probs`` is not ``(T, len(tokens))``.
        """
        log_probs = torch.as_tensor(log_probs, dtype=torch.float32)
        if log_probs.dim() != 2 or log_probs.size(1) != len(self.tokens):
            raise ValueError(
                f"CTC log-probs of shape {tuple(log_probs.shape)}: expected (T, {len(self.tokens)}) "
                "for this token list (was the model fine-tuned with another token list?)"
            )
        if log_probs.size(0) == 0:
            return ""
        hypotheses = self.search(lm_weight, word_score)(log_probs[None].contiguous())  # (1, T, V)
        return " ".join(hypotheses[0][0].words)


def load_kenlm(lm: Union[str, Path], word_dict) -> KenLM:
    """Load an ARPA or KenLM binary for the words of ``word_dict`` (a Flashlight dictionary).

    Raises:
        FileNotFoundError: ``lm`` does not exist.
        ValueError: ``lm`` is not a language model KenLM reads (naming the file and KenLM's reason).
    """
    check_lm_file(lm)
    try:
        return KenLM(str(lm), word_dict)
    except RuntimeError as error:
        reason = str(error).strip().splitlines()[-1]
        raise ValueError(f"{lm}: KenLM cannot load this language model: {reason}") from error


class CTCSearch(Protocol):
    """A search over CTC log-probs with two tuned scores: the LM weight and a bonus.

    :class:`LexiconBeamSearch`'s bonus is per word (``word_score``), the Transformer-LM searches'
    per letter (``penalty``, espnet_ils.decoding.transformer_lm); ``BONUS`` names it in files.
    """

    BONUS: str
    tokens: List[str]

    def decode(self, log_probs: torch.Tensor, lm_weight: float, bonus: float) -> str: ...


def decode_all(
    search: CTCSearch,
    log_probs: Iterable[Tuple[str, np.ndarray]],
    lm_weight: float,
    bonus: float,
) -> Dict[str, str]:
    """Decode ``(utt, (T, V) log-probs)`` pairs into ``{utt: words}`` (errors name the utterance)."""
    hyps = {}
    for utt, matrix in tqdm(log_probs, desc="utterances", unit="utt", leave=False):
        try:
            hyps[utt] = search.decode(torch.tensor(np.asarray(matrix)), lm_weight, bonus)
        except ValueError as error:
            raise ValueError(f"utterance {utt}: {error}") from error
    return hyps


def write_hypotheses(hyps: Mapping[str, str], path: Union[str, Path]) -> None:
    """Kaldi-style ``utt words`` lines, sorted by utterance, through a temporary name."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, [f"{utt} {hyps[utt]}".rstrip() for utt in sorted(hyps)])


@dataclass
class TuningResult:
    """WER of every grid point and the chosen one.

    Attributes:
        bonus: The name of the second score (``word_score`` or ``penalty``).
        wers: ``{(lm_weight, bonus): WER in percent}`` in grid order.
        best: The pair with the lowest WER (the first in grid order on a tie).
        best_hyps: ``{utt: words}`` decoded with ``best``.
        best_path_wer: WER in percent of greedy CTC decoding (:func:`best_path`), for reference.
    """

    bonus: str
    wers: Dict[Tuple[float, float], float]
    best: Tuple[float, float]
    best_hyps: Dict[str, str]
    best_path_wer: float

    @property
    def best_wer(self) -> float:
        return self.wers[self.best]

    def tsv_lines(self) -> List[str]:
        """``lm_weight <bonus> wer`` rows (tab-separated) with a header."""
        return [f"lm_weight\t{self.bonus}\twer"] + [
            f"{lm_weight:g}\t{bonus:g}\t{wer:.2f}" for (lm_weight, bonus), wer in self.wers.items()
        ]


def tune(
    search: CTCSearch,
    log_probs: Mapping[str, np.ndarray],
    refs: Mapping[str, str],
    lm_weights: Sequence[float],
    bonuses: Sequence[float],
) -> TuningResult:
    """Decode a valid set for every ``(lm_weight, bonus)`` pair; pick the lowest WER.

    Args:
        search: The search (beam settings fixed).
        log_probs: ``{utt: (T, V) log-probs}`` of the valid set
            (:func:`espnet_ils.decoding.ctc_logprobs.read_logprobs`).
        refs: ``{utt: reference words}``; every utterance of ``log_probs`` needs one.
        lm_weights: LM weights to try, e.g. ``[0.5, 1, 2]``.
        bonuses: Word scores or penalties (``search.BONUS``) to try, e.g. ``[-1, 0, 1]``.

    Returns:
        The WER (percent, :func:`espnet_ils.decoding.scoring.count_errors`) per pair and the best pair.

    Raises:
        ValueError: An empty grid or no utterances; utterances without reference.
    """
    if not lm_weights or not bonuses:
        raise ValueError(
            f"empty grid: lm_weights={list(lm_weights)}, {search.BONUS}s={list(bonuses)}"
        )
    if not log_probs:
        raise ValueError("no utterances to tune on")
    missing = sorted(set(log_probs) - set(refs))
    if missing:
        raise ValueError(f"{len(missing)} utterances have no reference, e.g. {missing[:5]}")
    scored_refs = {utt: refs[utt] for utt in log_probs}
    greedy = {utt: best_path(torch.tensor(m), search.tokens) for utt, m in log_probs.items()}
    best_path_wer = count_errors(scored_refs, greedy, "word").error_rate
    logger.info("best path (no LM): WER %.2f%%", best_path_wer)
    wers: Dict[Tuple[float, float], float] = {}
    best_hyps: Dict[str, str] = {}
    grid = [(float(w), float(b)) for w in lm_weights for b in bonuses]
    for pair in tqdm(grid, desc=f"LM weight x {search.BONUS}"):
        hyps = decode_all(search, log_probs.items(), *pair)
        wer = count_errors(scored_refs, hyps, "word").error_rate
        logger.info("lm_weight %g, %s %g: WER %.2f%%", pair[0], search.BONUS, pair[1], wer)
        if not wers or wer < min(wers.values()):  # strictly lower: the first of equal WERs wins
            best_hyps = hyps
        wers[pair] = wer
    best = min(wers, key=wers.get)  # min keeps the first of equal WERs, in grid order
    return TuningResult(search.BONUS, wers, best, best_hyps, best_path_wer)

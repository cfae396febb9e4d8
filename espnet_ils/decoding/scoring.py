"""Word and character error rates in the form of ESPnet's RESULTS.md tables (via jiwer)."""

from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List

import jiwer


@dataclass
class ErrorCounts:
    """Alignment counts of hypotheses against references."""

    sentences: int
    tokens: int
    correct: int
    substitutions: int
    deletions: int
    insertions: int
    sentence_errors: int

    @property
    def error_rate(self) -> float:
        """(S + D + I) / N in percent."""
        return 100.0 * (self.substitutions + self.deletions + self.insertions) / max(self.tokens, 1)

    def row(self, name: str) -> str:
        def pct(x: int) -> str:
            return f"{100.0 * x / max(self.tokens, 1):.1f}"

        return (
            f"|{name}|{self.sentences}|{self.tokens}|{pct(self.correct)}|{pct(self.substitutions)}|"
            f"{pct(self.deletions)}|{pct(self.insertions)}|{self.error_rate:.1f}|"
            f"{100.0 * self.sentence_errors / max(self.sentences, 1):.1f}|"
        )


def read_text(path: Path) -> Dict[str, str]:
    """``utt text`` lines; an utterance may have an empty text."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    entries = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        utt, _, text = line.partition(" ")
        entries[utt] = text.strip()
    return entries


def _words(text: str) -> List[str]:
    return text.split()


def _chars(text: str) -> List[str]:
    return list("".join(text.split()))


def count_errors(refs: Dict[str, str], hyps: Dict[str, str], unit: str) -> ErrorCounts:
    """Align every reference utterance with its hypothesis (missing hypothesis = empty).

    Args:
        refs: ``{utt: reference text}``.
        hyps: ``{utt: hypothesis text}``; keys outside ``refs`` are an error.
        unit: ``"word"`` (WER) or ``"char"`` (CER, spaces removed).
    """
    extra = sorted(set(hyps) - set(refs))
    if extra:
        raise ValueError(f"hypotheses for utterances without reference: {extra[:5]}")
    split = {"word": _words, "char": _chars}[unit]
    totals = dict(
        tokens=0, correct=0, substitutions=0, deletions=0, insertions=0, sentence_errors=0
    )
    for utt, ref in refs.items():
        ref_tokens, hyp_tokens = split(ref), split(hyps.get(utt, ""))
        if not ref_tokens:
            raise ValueError(f"utterance {utt}: empty reference")
        out = jiwer.process_words(" ".join(ref_tokens), " ".join(hyp_tokens) or "")
        totals["tokens"] += len(ref_tokens)
        totals["correct"] += out.hits
        totals["substitutions"] += out.substitutions
        totals["deletions"] += out.deletions
        totals["insertions"] += out.insertions
        totals["sentence_errors"] += int(ref_tokens != hyp_tokens)
    return ErrorCounts(sentences=len(refs), **totals)


TABLE_HEADER = "|dataset|Snt|Wrd|Corr|Sub|Del|Ins|Err|S.Err|\n|---|---|---|---|---|---|---|---|---|"

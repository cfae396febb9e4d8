#!/usr/bin/env python3
"""Estimate a word n-gram (ARPA) with IRSTLM and write its word list for the letter lexicon.

    python -m espnet_ils.bin.build_ngram --text dump/raw/train_960/text --keyed true \
        --order 4 --smoothing improved-kneser-ney --outdir exp/ngram_4gram \
        --eval_text dump/raw/dev_clean/text

Writes ``lm.arpa``, ``words.txt`` (its words, one per line, sorted) and, with ``--eval_text``,
``perplexity.tsv`` (``text ppl oov_percent``, by IRSTLM's ``compile-lm --eval``). IRSTLM comes from
``local/install_lm_tools.sh``.
"""

import argparse
import logging
from pathlib import Path
from typing import List, Optional

from espnet2.utils.types import str2bool

from espnet_ils.bin import setup_logging
from espnet_ils.data.kaldi_files import write_text_atomic
from espnet_ils.decoding.ngram import SMOOTHINGS, build_arpa, ngram_perplexity, write_word_list

logger = logging.getLogger("espnet_ils.build_ngram")


def build_ngram(
    texts: List[Path],
    outdir: Path,
    order: int,
    smoothing: str,
    keyed: bool,
    eval_texts: List[Path],
) -> None:
    """``outdir/lm.arpa``, ``outdir/words.txt`` and, for ``eval_texts``, ``outdir/perplexity.tsv``."""
    outdir.mkdir(parents=True, exist_ok=True)
    arpa = outdir / "lm.arpa"
    build_arpa(texts, arpa, order, smoothing, keyed)
    words = write_word_list(arpa, outdir / "words.txt")
    logger.info("wrote %s (%d words)", outdir / "words.txt", len(words))
    if eval_texts:
        rows = ["text\tppl\toov_percent"]
        for text in eval_texts:
            ppl, oov = ngram_perplexity(arpa, text, keyed)
            logger.info("%s: perplexity %.2f, OOV %.2f%%", text, ppl, oov)
            rows.append(f"{text}\t{ppl:.2f}\t{oov:.2f}")
        write_text_atomic(outdir / "perplexity.tsv", rows)


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--text", type=Path, action="append", required=True, help="training text (repeatable)"
    )
    parser.add_argument(
        "--keyed",
        type=str2bool,
        default=False,
        help="lines start with an utterance id (Kaldi text)",
    )
    parser.add_argument("--order", type=int, default=4, help="n-gram order (paper: 4)")
    parser.add_argument("--smoothing", default="improved-kneser-ney", choices=SMOOTHINGS)
    parser.add_argument("--outdir", type=Path, required=True, help="writes lm.arpa, words.txt")
    parser.add_argument(
        "--eval_text", type=Path, action="append", default=[], help="text to report perplexity on"
    )
    return parser


def main(cmd: Optional[List[str]] = None) -> None:
    args = get_parser().parse_args(cmd)
    setup_logging(args)
    try:
        build_ngram(args.text, args.outdir, args.order, args.smoothing, args.keyed, args.eval_text)
    except (ValueError, FileNotFoundError, RuntimeError) as error:
        raise SystemExit(f"build_ngram: error: {error}") from error


if __name__ == "__main__":
    main()

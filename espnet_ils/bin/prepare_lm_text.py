#!/usr/bin/env python3
"""Write the letter LM's training and validation text for ESPnet's LM task.

    python -m espnet_ils.bin.prepare_lm_text --token_list dump/token_list/char/tokens.txt \\
        --train_text dump/raw/train_960/text --train_corpus /db/librispeech-lm-norm.txt.gz \\
        --dev_text dump/raw/dev_clean/text \\
        --exclude_text dump/raw/test_clean/text --exclude_text dump/raw/test_other/text \\
        --max_chars 1000 --outdir dump/lm_text

Writes ``train/`` and ``dev/`` (``text`` and ``text_shape.char`` for
``espnet2.bin.lm_train --token_type char``) and ``stats.tsv``: sentences and characters written,
sentences left out as test utterances or test transcripts, too long or empty, characters outside
the token list (``<unk>``), and the dev perplexity of a unigram letter model (the LM's reference).
"""

import argparse
import logging
from pathlib import Path
from typing import List, Optional

from espnet_ils.bin import setup_logging
from espnet_ils.decoding.lm_text import MAX_UNKNOWN_RATE, TextSource, prepare_lm_text

logger = logging.getLogger("espnet_ils.prepare_lm_text")


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--token_list", type=Path, required=True, help="the ASR model's tokens.txt (stage 8)"
    )
    parser.add_argument(
        "--train_text", type=Path, action="append", default=[],
        help="Kaldi text (utt WORDS...) to train on (repeatable)",
    )  # fmt: skip
    parser.add_argument(
        "--train_corpus", type=Path, action="append", default=[],
        help="plain text, one sentence per line, .gz read through gzip (repeatable)",
    )  # fmt: skip
    parser.add_argument(
        "--dev_text", type=Path, action="append", required=True,
        help="Kaldi text for the LM's validation (repeatable; ESPnet uses the valid set's)",
    )  # fmt: skip
    parser.add_argument(
        "--exclude_text", type=Path, action="append", default=[],
        help="Kaldi text of a test set: its ids and transcripts are left out (repeatable)",
    )  # fmt: skip
    parser.add_argument(
        "--max_chars", type=int, default=0, help="longest sentence kept, in characters (0: all)"
    )
    parser.add_argument(
        "--max_unknown_rate", type=float, default=MAX_UNKNOWN_RATE,
        help="largest share of characters outside the token list (they become <unk>)",
    )  # fmt: skip
    parser.add_argument("--outdir", type=Path, required=True, help="writes train/, dev/, stats.tsv")
    return parser


def main(cmd: Optional[List[str]] = None) -> None:
    args = get_parser().parse_args(cmd)
    setup_logging(args)
    if not args.train_text and not args.train_corpus:
        raise SystemExit("prepare_lm_text: error: give --train_text or --train_corpus")
    if args.max_chars < 0:
        raise SystemExit(f"prepare_lm_text: error: --max_chars {args.max_chars}: expected >= 0")
    train = [TextSource(p, keyed=True) for p in args.train_text]
    train += [TextSource(p, keyed=False) for p in args.train_corpus]
    dev = [TextSource(p, keyed=True) for p in args.dev_text]
    try:
        stats = prepare_lm_text(
            train,
            dev,
            args.token_list,
            args.outdir,
            args.exclude_text,
            args.max_chars,
            args.max_unknown_rate,
        )
    except (ValueError, FileNotFoundError) as error:
        raise SystemExit(f"prepare_lm_text: error: {error}") from error
    for split, split_stats in stats.items():
        if split_stats.unknown:
            logger.warning(
                "%s: %d characters outside the token list become <unk> (%s); first at %s",
                split,
                sum(split_stats.unknown.values()),
                dict(split_stats.unknown.most_common(5)),
                split_stats.first_unknown,
            )
    logger.info("wrote %s", args.outdir / "stats.tsv")


if __name__ == "__main__":
    main()

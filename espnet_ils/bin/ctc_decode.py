#!/usr/bin/env python3
"""Decode cached CTC log-probs: best path, lexicon beam search with a word n-gram, or with a letter
Transformer LM (shallow fusion or N-best rescoring).

    # greedy CTC decoding (best path: argmax per frame, repeats merged, blanks dropped)
    python -m espnet_ils.bin.ctc_decode greedy --logprobs_scp ${asr_exp}/ctc_logprobs/test_clean/feats.*.scp \
        --token_list dump/token_list/char/tokens.txt --output ${asr_exp}/decode_greedy/test_clean/text
    # the letter lexicon of the LM's words (--word_list words.txt or --arpa lm.arpa.gz), spelled
    # with the fine-tuning token list
    python -m espnet_ils.bin.ctc_decode lexicon --token_list dump/token_list/char/tokens.txt \
        --word_list exp/lm/ngram_4gram/words.txt --output exp/lm/ngram_4gram/lexicon.txt
    # LM weight x word score on the valid set (lexicon search, Flashlight via torchaudio):
    # wer_grid.tsv, best.json and text in --outdir
    python -m espnet_ils.bin.ctc_decode tune --logprobs_scp ${asr_exp}/ctc_logprobs/dev_clean/feats.*.scp \
        --ref_text dump/raw/dev_clean/text --token_list ... --lexicon ... --lm exp/lm/ngram_4gram/lm.arpa \
        --lm_weights 0.5,1,2 --word_scores=-1,0,1 --outdir ${asr_exp}/decode_ngram/tune_dev_clean \
        --decode ${asr_exp}/decode_ngram/test_clean/text ${asr_exp}/ctc_logprobs/test_clean/feats.*.scp
    # or decode a test set with the chosen pair later: a Kaldi-style text
    python -m espnet_ils.bin.ctc_decode decode --logprobs_scp ${asr_exp}/ctc_logprobs/test_clean/feats.*.scp \
        --token_list ... --lexicon ... --lm ... --tuned .../tune_dev_clean/best.json \
        --output ${asr_exp}/decode_ngram/test_clean/text
    # the same with a letter LM of ESPnet's LM task: --search lm_fusion (ESPnet's beam search) or
    # lm_rescore (N best of a lexicon-free search rescored), LM weight x penalty (per letter)
    python -m espnet_ils.bin.ctc_decode tune --search lm_rescore --lm_train_config exp/lm/.../config.yaml \
        --lm_file exp/lm/.../valid.loss.best.pth --beam_size 50 --nbest 50 \
        --lm_weights 0.5,1 --penalties 0,1 --logprobs_scp ... --ref_text ... --token_list ... --outdir ...

Log-probs come from ``espnet_ils.bin.dump_ctc_logprobs``. Negative values in a list need ``=``
(``--word_scores=-1,0,1``).
"""

import argparse
import json
import logging
from pathlib import Path
from typing import List, Optional

import torch

from espnet_ils.bin import setup_logging
from espnet_ils.data.kaldi_files import read_key_file, write_text_atomic
from espnet_ils.decoding.ctc_logprobs import read_logprobs
from espnet_ils.decoding.lexicon import (
    BEAM_SIZE,
    BEAM_THRESHOLD,
    LM_WEIGHT,
    WORD_SCORE,
    CTCSearch,
    LexiconBeamSearch,
    best_path,
    decode_all,
    letter_lexicon,
    read_token_list,
    read_word_list,
    tune,
    write_hypotheses,
    write_lexicon,
)
from espnet_ils.decoding.ngram import arpa_words
from espnet_ils.decoding.transformer_lm import (
    FUSION_BEAM_SIZE,
    PENALTY,
    RESCORE_BEAM_SIZE,
    LMFusionSearch,
    NbestRescoring,
)
from espnet_ils.decoding.transformer_lm import LM_WEIGHT as FUSED_LM_WEIGHT

logger = logging.getLogger("espnet_ils.ctc_decode")


def float_list(value: str) -> List[float]:
    """``"0.5,1,2"`` -> ``[0.5, 1.0, 2.0]``."""
    try:
        return [float(v) for v in value.split(",") if v]
    except ValueError as error:
        raise argparse.ArgumentTypeError(
            f"{value!r}: expected numbers separated by commas"
        ) from error


SEARCHES = ("lexicon", "lm_fusion", "lm_rescore")
BONUS_OPTION = {"word_score": "word_scores", "penalty": "penalties"}  # the grid's option
DEFAULTS = {"word_score": (LM_WEIGHT, WORD_SCORE), "penalty": (FUSED_LM_WEIGHT, PENALTY)}


def read_tuned(path: Path, bonus: str) -> dict:
    """``best.json`` of the tune mode: ``lm_weight`` and ``bonus`` (word_score or penalty)."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such tuning result (run the tune mode first)")
    tuned = json.loads(path.read_text())
    if not {"lm_weight", bonus} <= set(tuned):
        raise ValueError(f"{path}: expected lm_weight and {bonus}, found {sorted(tuned)}")
    return tuned


def make_search(args: argparse.Namespace) -> CTCSearch:
    """The search ``--search`` names, from its options (each refused by the others)."""
    tokens = read_token_list(args.token_list)
    given = {name for name in ("lexicon", "lm", "lm_train_config", "lm_file", "nbest")
             if getattr(args, name) is not None}  # fmt: skip
    needed = {
        "lexicon": ({"lexicon"}, {"lexicon", "lm"}),
        "lm_fusion": ({"lm_train_config", "lm_file"}, {"lm_train_config", "lm_file"}),
        "lm_rescore": ({"lm_train_config", "lm_file"}, {"lm_train_config", "lm_file", "nbest"}),
    }
    required, allowed = needed[args.search]
    if required - given or given - allowed:
        raise ValueError(
            f"--search {args.search} takes --{' --'.join(sorted(allowed))} "
            f"(--{' --'.join(sorted(required))} required); given: "
            f"{' '.join('--' + name for name in sorted(given)) or 'none'}"
        )
    if args.search == "lexicon":
        return LexiconBeamSearch(
            tokens,
            args.lexicon,
            args.lm,
            beam_size=args.beam_size or BEAM_SIZE,
            beam_threshold=args.beam_threshold,
            sil_score=args.sil_score,
        )
    if args.search == "lm_fusion":
        return LMFusionSearch(
            tokens, args.lm_train_config, args.lm_file, args.beam_size or FUSION_BEAM_SIZE
        )
    beam_size = args.beam_size or RESCORE_BEAM_SIZE
    return NbestRescoring(
        tokens, args.lm_train_config, args.lm_file, beam_size, args.nbest or beam_size
    )


def run_lexicon(args: argparse.Namespace) -> None:
    tokens = read_token_list(args.token_list)
    if args.word_list is not None:
        lexicon = read_word_list(args.word_list, tokens)
    else:
        try:
            lexicon = letter_lexicon(arpa_words(args.arpa), tokens)
        except ValueError as error:
            raise ValueError(f"{args.arpa}: {error}") from error
    write_lexicon(lexicon, args.output)
    logger.info("wrote %s (%d words)", args.output, len(lexicon))


def run_greedy(args: argparse.Namespace) -> None:
    tokens = read_token_list(args.token_list, args.token_type)
    hyps = {}
    for utt, matrix in read_logprobs(args.logprobs_scp).items():
        if matrix.shape[1] != len(tokens):
            raise ValueError(
                f"utterance {utt}: log-probs of width {matrix.shape[1]}, but {args.token_list} "
                f"has {len(tokens)} tokens"
            )
        # a copy: kaldiio maps read-only
        hyps[utt] = best_path(torch.tensor(matrix), tokens, args.token_type)
    write_hypotheses(hyps, args.output)
    logger.info("wrote %s (%d utterances, best path)", args.output, len(hyps))


def run_decode(args: argparse.Namespace) -> None:
    search = make_search(args)
    bonus = getattr(args, search.BONUS)
    if args.tuned is not None:
        if args.lm_weight is not None or bonus is not None:
            raise ValueError(
                f"--tuned gives lm_weight and {search.BONUS}: drop --lm_weight/--{search.BONUS}"
            )
        tuned = read_tuned(args.tuned, search.BONUS)
        lm_weight, bonus = tuned["lm_weight"], tuned[search.BONUS]
    else:
        lm_weight = DEFAULTS[search.BONUS][0] if args.lm_weight is None else args.lm_weight
        bonus = DEFAULTS[search.BONUS][1] if bonus is None else bonus
    hyps = decode_all(search, read_logprobs(args.logprobs_scp).items(), lm_weight, bonus)
    write_hypotheses(hyps, args.output)
    logger.info(
        "wrote %s (%d utterances; %s search, lm_weight %g, %s %g)",
        args.output,
        len(hyps),
        args.search,
        lm_weight,
        search.BONUS,
        bonus,
    )


def run_tune(args: argparse.Namespace) -> None:
    search = make_search(args)
    option = BONUS_OPTION[search.BONUS]
    other = next(o for o in BONUS_OPTION.values() if o != option)
    if getattr(args, option) is None or getattr(args, other) is not None:
        raise ValueError(f"--search {args.search} tunes --lm_weights x --{option} (not --{other})")
    log_probs = read_logprobs(args.logprobs_scp)
    refs = read_key_file(args.ref_text)
    result = tune(search, log_probs, refs, args.lm_weights, getattr(args, option))
    args.outdir.mkdir(parents=True, exist_ok=True)
    write_text_atomic(args.outdir / "wer_grid.tsv", result.tsv_lines())
    write_hypotheses(result.best_hyps, args.outdir / "text")
    settings = ("beam_size", "beam_threshold", "sil_score", "nbest")  # those the search has
    chosen = {
        "lm_weight": result.best[0],
        search.BONUS: result.best[1],
        "wer": round(result.best_wer, 2),
        "best_path_wer": round(result.best_path_wer, 2),
        "search": args.search,
        **{name: getattr(search, name) for name in settings if hasattr(search, name)},
        "utterances": len(log_probs),
    }
    write_text_atomic(args.outdir / "best.json", [json.dumps(chosen, indent=1)])
    logger.info(
        "best: lm_weight %g, %s %g, WER %.2f%% -> %s",
        result.best[0],
        search.BONUS,
        result.best[1],
        result.best_wer,
        args.outdir,
    )
    for output, *scps in args.decode:  # the test sets, with the chosen pair in this process
        hyps = decode_all(search, read_logprobs(scps).items(), *result.best)
        write_hypotheses(hyps, Path(output))
        logger.info("wrote %s (%d utterances)", output, len(hyps))


def add_logprob_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--logprobs_scp",
        type=Path,
        nargs="+",
        required=True,
        help="feats.*.scp of dump_ctc_logprobs",
    )
    parser.add_argument(
        "--token_list", type=Path, required=True, help="tokens.txt of the ASR model"
    )


def add_search_arguments(parser: argparse.ArgumentParser) -> None:
    add_logprob_arguments(parser)
    parser.add_argument(
        "--search", choices=SEARCHES, default="lexicon",
        help="lexicon: Flashlight's lexicon beam search with a word n-gram (--lexicon, --lm); "
        "lm_fusion: ESPnet's beam search fused with a letter LM; lm_rescore: the --nbest of a "
        "lexicon-free beam search rescored by a letter LM (--lm_train_config, --lm_file)",
    )  # fmt: skip
    parser.add_argument("--lexicon", type=Path, help="letter lexicon (WORD L E T ...)")
    parser.add_argument("--lm", type=Path, help="ARPA (.gz) or KenLM binary; none: lexicon only")
    parser.add_argument("--lm_train_config", type=Path, help="config.yaml of an ESPnet letter LM")
    parser.add_argument("--lm_file", type=Path, help="its checkpoint")
    parser.add_argument(
        "--beam_size", type=int, default=None,
        help=f"hypotheses kept (default: lexicon {BEAM_SIZE}, lm_fusion {FUSION_BEAM_SIZE}, "
        f"lm_rescore {RESCORE_BEAM_SIZE})",
    )  # fmt: skip
    parser.add_argument("--nbest", type=int, help="lm_rescore: hypotheses rescored (beam_size)")
    parser.add_argument(
        "--beam_threshold", type=float, default=BEAM_THRESHOLD, help="lexicon: score margin"
    )
    parser.add_argument("--sil_score", type=float, default=0.0, help="lexicon: per word boundary")


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    modes = parser.add_subparsers(dest="mode", required=True)
    greedy = modes.add_parser("greedy", help="best path of the log-probs into a Kaldi-style text")
    add_logprob_arguments(greedy)
    greedy.add_argument("--output", type=Path, required=True, help="text to write")
    greedy.add_argument(
        "--token_type",
        choices=("char", "word"),
        default="char",
        help="char: letters with <space>; word: one token per word (the phone probe's phones)",
    )
    lexicon = modes.add_parser("lexicon", help="spell a word list with the token list's letters")
    lexicon.add_argument(
        "--token_list", type=Path, required=True, help="tokens.txt of the ASR model"
    )
    words = lexicon.add_mutually_exclusive_group(required=True)
    words.add_argument("--word_list", type=Path, help="one word per line")
    words.add_argument("--arpa", type=Path, help="an ARPA file (.gz too): its 1-grams")
    lexicon.add_argument("--output", type=Path, required=True, help="lexicon to write")
    decode = modes.add_parser("decode", help="decode log-probs into a Kaldi-style text")
    add_search_arguments(decode)
    decode.add_argument(
        "--lm_weight",
        type=float,
        default=None,
        help=f"LM weight (default: lexicon {LM_WEIGHT}, LM searches {FUSED_LM_WEIGHT})",
    )
    decode.add_argument(
        "--word_score", type=float, default=None, help=f"lexicon: per word (default {WORD_SCORE})"
    )
    decode.add_argument("--penalty", type=float, default=None, help="LM searches: per letter (0)")
    decode.add_argument("--tuned", type=Path, default=None, help="best.json of the tune mode")
    decode.add_argument("--output", type=Path, required=True, help="text to write")
    tune_mode = modes.add_parser("tune", help="grid of LM weight x word score on a valid set")
    add_search_arguments(tune_mode)
    tune_mode.add_argument(
        "--ref_text", type=Path, required=True, help="Kaldi text of the valid set"
    )
    tune_mode.add_argument("--lm_weights", type=float_list, required=True, help="e.g. 0.5,1,2")
    tune_mode.add_argument("--word_scores", type=float_list, help="lexicon: e.g. =-1,0,1")
    tune_mode.add_argument("--penalties", type=float_list, help="LM searches: e.g. 0,0.5,1")
    tune_mode.add_argument(
        "--outdir", type=Path, required=True, help="writes wer_grid.tsv, best.json, text"
    )
    tune_mode.add_argument(
        "--decode", nargs="+", action="append", default=[], metavar=("OUTPUT", "SCP"),
        help="then decode these log-probs with the chosen pair into OUTPUT (repeatable): one "
        "process, so the search and LM load once",
    )  # fmt: skip
    return parser


def main(cmd: Optional[List[str]] = None) -> None:
    args = get_parser().parse_args(cmd)
    setup_logging(args)
    run = {
        "greedy": run_greedy,
        "lexicon": run_lexicon,
        "decode": run_decode,
        "tune": run_tune,
    }[args.mode]
    try:
        run(args)
    except (ValueError, FileNotFoundError) as error:
        raise SystemExit(f"ctc_decode {args.mode}: error: {error}") from error


if __name__ == "__main__":
    main()

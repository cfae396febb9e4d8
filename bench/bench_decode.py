#!/usr/bin/env python3
"""Speed and accuracy of the CTC decoders on the same kept log-probs: greedy, ESPnet's beam search
with and without the letter Transformer LM, N-best rescoring, and the lexicon n-gram search.

    python bench/bench_decode.py --asr_exp exp_mini/<asr exp> --set test \\
        --token_list dump_mini/token_list/char/tokens.txt --ref_text dump_mini/raw/test/text \\
        --ngram_dir exp_mini/lm/ngram_3gram --lm_dir exp_mini/lm/train_lm_transformer_mini

Every setting (``--settings``, default all) decodes the same first ``--max_utts`` utterances (ids
sorted) of ``<asr_exp>/ctc_logprobs/<set>/feats.*.scp``, the log-probs the recipe keeps (stage 9),
so no acoustic model runs here. One table row per setting: utterances, audio seconds (frames x
0.02 s), decode wall seconds (the search only: loading the LMs and building the search are the
``setup`` column, and one untimed decode of a 25-frame excerpt comes first), real-time factor
(decode time / audio time), utterances per second, WER and CER (%). The settings:

=================  ===============================================================================
``greedy``         best path (argmax per frame, repeats merged, blanks dropped)
``beam10``         ESPnet's CTC prefix beam search (``BatchBeamSearch``), no LM, beam 10
``beam_widest``    the same at the widest beam that decodes, ``len(tokens) - 1`` (see below)
``fusion10``       the same fused with the letter Transformer LM (+ per-letter penalty), beam 10
``fusion_widest``  fusion at ``len(tokens) - 1`` (30 for LibriSpeech's letters), standing in
                   for the paper's Transformer-LM beam 50, wider than ESPnet's search can keep
``rescore50``      lexicon-free Flashlight search (no LM), its 50 best rescored with the LM (the
                   paper's Transformer-LM beam)
``rescore10``      the same with beam and N 10
``ngram1500``      Flashlight's lexicon beam search with the word n-gram, beam 1500 (the paper)
``ngram500``       the same at beam 500 (fairseq's HuBERT decoding)
``ngram50``        the same at beam 50 (cheap)
=================  ===============================================================================

ESPnet's beam search keeps at most ``len(tokens)`` hypotheses (one per token at its first step),
and at exactly ``len(tokens)`` it fails: every token, the blank too, enters the beam; the CTC
prefix scorer scores the blank -1e10 and the blank hypothesis's next steps add that back in
float32, so hypotheses with blanks score about 0 and win (empty output). ``len(tokens) - 1`` is the
widest beam that decodes.

LM weights and bonuses, per search, each value from the first of: its option (``--lm_weight``,
``--penalty`` for the Transformer LM searches; ``--ngram_lm_weight``, ``--word_score`` for the
n-gram), the recipe's tuned ``<asr_exp>/decode_<mode>/tune_*/best.json`` (mode ``lm_fusion``,
``lm_rescore`` or ``ngram``), the library's default; the report says which.

This is a benchmark, not a test: log and progress on stderr, the report on stdout.
"""

import argparse
import contextlib
import datetime
import importlib.metadata
import json
import logging
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch
from bench_pretrain_step import cpu_model_name
from tqdm import tqdm

from espnet_ils.data.audio import ENCODER_HOP, SAMPLE_RATE
from espnet_ils.data.kaldi_files import read_key_file
from espnet_ils.decoding.ctc_logprobs import read_logprobs
from espnet_ils.decoding.lexicon import (
    BEAM_THRESHOLD,
    WORD_SCORE,
    LexiconBeamSearch,
    best_path,
    read_token_list,
)
from espnet_ils.decoding.lexicon import LM_WEIGHT as NGRAM_LM_WEIGHT
from espnet_ils.decoding.scoring import count_errors
from espnet_ils.decoding.transformer_lm import LM_WEIGHT, PENALTY, LMFusionSearch, NbestRescoring

logger = logging.getLogger("bench_decode")

FRAME_SECONDS = ENCODER_HOP / SAMPLE_RATE  # 0.02 s per frame of CTC log-probs (50 Hz)
WIDEST = 0  # beam size of a setting: len(tokens) - 1, the widest that works (WIDEST_WHY)
WIDEST_WHY = (
    "at len(tokens) every token, the blank too, enters the beam; ESPnet's CTC prefix scorer gives "
    "the blank -1e10 and a blank hypothesis's next steps add it back in float32, so hypotheses "
    "with blanks score about 0 and win (empty output)"
)
WARMUP_FRAMES = 25  # the untimed decode before each setting's timed ones


@dataclass(frozen=True)
class Setting:
    """One row of the table.

    Attributes:
        name: Its ``--settings`` name.
        mode: The recipe's decode mode it belongs to (``greedy``, ``beam``, ``lm_fusion``,
            ``lm_rescore``, ``ngram``); its tuned weights are in ``decode_<mode>/tune_*``.
        beam_size: Hypotheses kept (``WIDEST``: ``len(tokens) - 1``; greedy: 1).
        note: Where the beam comes from.
    """

    name: str
    mode: str
    beam_size: int
    note: str = ""


SETTINGS = (
    Setting("greedy", "greedy", 1),
    Setting("beam10", "beam", 10),
    Setting("beam_widest", "beam", WIDEST, "widest that decodes"),
    Setting("fusion10", "lm_fusion", 10),
    Setting("fusion_widest", "lm_fusion", WIDEST, "widest that decodes; for the paper's 50"),
    Setting("rescore50", "lm_rescore", 50, "paper's Transformer-LM beam"),
    Setting("rescore10", "lm_rescore", 10),
    Setting("ngram1500", "ngram", 1500, "paper"),
    Setting("ngram500", "ngram", 500, "fairseq"),
    Setting("ngram50", "ngram", 50, "cheap"),
)
SETTING_NAMES = tuple(s.name for s in SETTINGS)
# Per tuned mode: (LM weight option, bonus name = bonus option, library defaults).
WEIGHTS = {
    "ngram": (
        "ngram_lm_weight",
        "word_score",
        NGRAM_LM_WEIGHT,
        WORD_SCORE,
    ),
    "lm_fusion": (
        "lm_weight",
        "penalty",
        LM_WEIGHT,
        PENALTY,
    ),
    "lm_rescore": (
        "lm_weight",
        "penalty",
        LM_WEIGHT,
        PENALTY,
    ),
}


@dataclass
class Weights:
    """The LM weight and bonus a search decodes with, and where each came from."""

    lm_weight: float
    bonus_name: str  # word_score (per word) or penalty (per letter)
    bonus: float
    sources: Tuple[str, str]  # of lm_weight and of bonus: "option", "tuned <path>", "default"

    def describe(self) -> str:
        if self.sources[0] == self.sources[1]:
            source = self.sources[0]
            return f"lm_weight {self.lm_weight:g}, {self.bonus_name} {self.bonus:g} ({source})"
        return (
            f"lm_weight {self.lm_weight:g} ({self.sources[0]}), "
            f"{self.bonus_name} {self.bonus:g} ({self.sources[1]})"
        )


def tuned_file(asr_exp: Path, mode: str) -> Optional[Path]:
    """``<asr_exp>/decode_<mode>/tune_*/best.json``, or None.

    Raises:
        ValueError: Several (tuned on several valid sets): the options must choose.
    """
    found = sorted(asr_exp.glob(f"decode_{mode}/tune_*/best.json"))
    if len(found) > 1:
        option, bonus, _, _ = WEIGHTS[mode]
        raise ValueError(
            f"{len(found)} tuned {mode} weights: {', '.join(map(str, found))}; "
            f"pass --{option} and --{bonus}"
        )
    return found[0] if found else None


def resolve_weights(args: argparse.Namespace, mode: str) -> Weights:
    """The weights of a tuned mode: option, else the tuned best.json, else the library default.

    Raises:
        ValueError: A best.json without the value it should hold, or several (see
            :func:`tuned_file`).
    """
    option, bonus_name, default_weight, default_bonus = WEIGHTS[mode]
    given = (getattr(args, option), getattr(args, bonus_name))
    tuned: Dict[str, float] = {}
    path = None if None not in given else tuned_file(args.asr_exp, mode)
    if path is not None:
        tuned = json.loads(path.read_text())
        if not {"lm_weight", bonus_name} <= set(tuned):
            raise ValueError(f"{path}: expected lm_weight and {bonus_name}, found {sorted(tuned)}")
    chosen: List[Tuple[float, str]] = []  # (value, source) of the LM weight, then the bonus
    for value, key, default in zip(
        given, ("lm_weight", bonus_name), (default_weight, default_bonus)
    ):
        if value is not None:
            chosen.append((value, "option"))
        elif path is not None:
            chosen.append((float(tuned[key]), f"tuned {path}"))
        else:
            chosen.append((default, "default"))
    (lm_weight, weight_source), (bonus, bonus_source) = chosen
    return Weights(lm_weight, bonus_name, bonus, (weight_source, bonus_source))


@dataclass
class Resources:
    """The files and weights the chosen settings decode with, checked before any decoding."""

    tokens: List[str]
    lexicon: Optional[Path]
    arpa: Optional[Path]
    lm_train_config: Optional[Path]
    lm_file: Optional[Path]
    beam_threshold: float
    weights: Dict[str, Weights]  # per tuned mode among the settings


def check_file(path: Optional[Path], option: str, needed_by: Sequence[str]) -> Path:
    """``path`` if it is a file.

    Raises:
        ValueError: No path (naming the option and the settings that need it).
        FileNotFoundError: No such file.
    """
    if path is None:
        raise ValueError(
            f"settings {', '.join(needed_by)} need {option}: pass it, or leave them out with "
            f"--settings (choices: {' '.join(SETTING_NAMES)})"
        )
    if not path.is_file():
        raise FileNotFoundError(f"{option}: {path}: no such file")
    return path


def gather_resources(args: argparse.Namespace, settings: Sequence[Setting]) -> Resources:
    """Token list, n-gram, lexicon, letter LM and weights of ``settings`` (errors come here)."""
    tokens = read_token_list(args.token_list)
    modes = {s.mode for s in settings}
    ngram = [s.name for s in settings if s.mode == "ngram"]
    letter_lm = [s.name for s in settings if s.mode in ("lm_fusion", "lm_rescore")]
    lexicon = arpa = lm_train_config = lm_file = None
    if ngram:
        lexicon, arpa = args.lexicon, args.arpa
        if args.ngram_dir is not None:
            lexicon = lexicon or args.ngram_dir / "lexicon.txt"
            arpa = arpa or args.ngram_dir / "lm.arpa"
        lexicon = check_file(lexicon, "--lexicon or --ngram_dir", ngram)
        arpa = check_file(arpa, "--arpa or --ngram_dir", ngram)
    if letter_lm:
        if args.lm_dir is None:
            check_file(None, "--lm_dir", letter_lm)
        lm_train_config = check_file(args.lm_dir / "config.yaml", "--lm_dir", letter_lm)
        lm_file = check_file(args.lm_dir / args.lm_file, "--lm_dir/--lm_file", letter_lm)
    weights = {mode: resolve_weights(args, mode) for mode in sorted(modes & set(WEIGHTS))}
    return Resources(tokens, lexicon, arpa, lm_train_config, lm_file, args.beam_threshold, weights)


Decoder = Callable[[torch.Tensor], str]


def build_decoder(setting: Setting, resources: Resources) -> Tuple[Decoder, str]:
    """The setting's ``(T, V) log-probs -> words`` and a description of its settings."""
    tokens = resources.tokens
    beam = len(tokens) - 1 if setting.beam_size == WIDEST else setting.beam_size
    beam_about = f"beam {beam}" + (f" ({setting.note})" if setting.note else "")
    if setting.mode == "greedy":
        return (lambda log_probs: best_path(log_probs, tokens)), "best path"
    if setting.mode == "beam":
        search = LMFusionSearch(tokens, beam_size=beam)
        about = f"ESPnet beam search, no LM, {beam_about}"
        return (lambda log_probs: search.decode(log_probs, 0.0, 0.0)), about
    weights = resources.weights[setting.mode]
    scores = f"lm_weight {weights.lm_weight:g}, {weights.bonus_name} {weights.bonus:g}"
    if setting.mode == "ngram":
        search = LexiconBeamSearch(
            tokens, resources.lexicon, resources.arpa, beam, resources.beam_threshold
        )
        about = f"lexicon + n-gram, {beam_about}, threshold {resources.beam_threshold:g}"
    elif setting.mode == "lm_fusion":
        search = LMFusionSearch(tokens, resources.lm_train_config, resources.lm_file, beam)
        about = f"ESPnet beam search + LM, {beam_about}"
    else:
        search = NbestRescoring(tokens, resources.lm_train_config, resources.lm_file, beam, beam)
        about = f"lexicon-free {beam_about}, {beam} best rescored by the LM"

    def decode(log_probs: torch.Tensor) -> str:
        return search.decode(log_probs, weights.lm_weight, weights.bonus)

    return decode, f"{about}, {scores}"


@dataclass
class Row:
    """One setting's figures."""

    setting: Setting
    about: str
    utterances: int
    audio_seconds: float
    setup_seconds: float
    decode_seconds: float
    wer: float  # percent
    cer: float  # percent

    def markdown(self) -> str:
        rtf = self.decode_seconds / self.audio_seconds
        return (
            f"| {self.setting.name} | {self.about} | {self.utterances} | {self.audio_seconds:.1f} "
            f"| {self.decode_seconds:.2f} | {rtf:.4f} "
            f"| {self.utterances / self.decode_seconds:.1f} "
            f"| {self.wer:.2f} | {self.cer:.2f} | {self.setup_seconds:.1f} |"
        )


TABLE_HEADER = (
    "| setting | search | utts | audio (s) | decode (s) | RTF | utt/s "
    "| WER (%) | CER (%) | setup (s) |\n"
    "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"
)


def bench_setting(
    setting: Setting,
    resources: Resources,
    log_probs: Dict[str, torch.Tensor],
    refs: Dict[str, str],
) -> Row:
    """Build the setting's search (timed apart), warm it up, time its decoding of every
    utterance."""
    start = time.perf_counter()
    with contextlib.redirect_stdout(sys.stderr):  # ESPnet prints while it imports its LM classes
        decode, about = build_decoder(setting, resources)
    setup_seconds = time.perf_counter() - start
    first = next(iter(log_probs.values()))
    decode(first[:WARMUP_FRAMES].clone())  # another shape: N-best rescoring's cache misses
    hyps = {}
    start = time.perf_counter()
    for utt, matrix in tqdm(log_probs.items(), desc=setting.name):
        hyps[utt] = decode(matrix)
    decode_seconds = time.perf_counter() - start
    frames = sum(m.size(0) for m in log_probs.values())
    return Row(
        setting,
        about,
        len(hyps),
        frames * FRAME_SECONDS,
        setup_seconds,
        decode_seconds,
        count_errors(refs, hyps, "word").error_rate,
        count_errors(refs, hyps, "char").error_rate,
    )


def versions() -> str:
    names = ("torch", "torchaudio", "espnet", "flashlight-text")
    return ", ".join(f"{name} {importlib.metadata.version(name)}" for name in names)


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--asr_exp",
        type=Path,
        required=True,
        help="Fine-tuned model's directory, with ctc_logprobs/<set>/feats.*.scp",
    )
    parser.add_argument("--set", required=True, help="Which kept log-probs: e.g. test, test_clean")
    parser.add_argument(
        "--token_list",
        type=Path,
        required=True,
        help="The fine-tuning tokens.txt (dump*/token_list/char/tokens.txt)",
    )
    parser.add_argument(
        "--ref_text",
        type=Path,
        required=True,
        help="Kaldi text of the references (dump*/raw/<set>/text)",
    )
    parser.add_argument(
        "--settings",
        nargs="+",
        choices=SETTING_NAMES,
        default=list(SETTING_NAMES),
        help="Rows to run, in this order (default: all)",
    )
    parser.add_argument(
        "--max_utts",
        type=int,
        default=None,
        help="Decode the first N utterances (sorted ids) in every setting; default all",
    )
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    ngram = parser.add_argument_group("word n-gram (settings ngram*)")
    ngram.add_argument(
        "--ngram_dir",
        type=Path,
        default=None,
        help="Stage 8's exp*/lm/ngram_<order>gram: its lm.arpa and lexicon.txt",
    )
    ngram.add_argument(
        "--arpa", type=Path, default=None, help="The n-gram (default <ngram_dir>/lm.arpa)"
    )
    ngram.add_argument(
        "--lexicon",
        type=Path,
        default=None,
        help="Letter lexicon (default <ngram_dir>/lexicon.txt)",
    )
    ngram.add_argument(
        "--beam_threshold",
        type=float,
        default=BEAM_THRESHOLD,
        help=f"Lexicon search's score margin (default {BEAM_THRESHOLD:g}, the recipe's)",
    )
    ngram.add_argument(
        "--ngram_lm_weight",
        type=float,
        default=None,
        help="n-gram weight (default: tuned best.json, else fairseq's 2)",
    )
    ngram.add_argument(
        "--word_score",
        type=float,
        default=None,
        help="Per-word bonus (default: tuned best.json, else fairseq's -1)",
    )
    lm = parser.add_argument_group("letter Transformer LM (settings fusion*, rescore*)")
    lm.add_argument(
        "--lm_dir",
        type=Path,
        default=None,
        help="Stage 8's exp*/lm/train_lm_transformer_*: config.yaml and the checkpoint",
    )
    lm.add_argument(
        "--lm_file", default="valid.loss.best.pth", help="The checkpoint's name in --lm_dir"
    )
    lm.add_argument(
        "--lm_weight",
        type=float,
        default=None,
        help="LM weight of fusion and rescoring (default: tuned best.json, else 0.5)",
    )
    lm.add_argument(
        "--penalty",
        type=float,
        default=None,
        help="Per-letter bonus of fusion and rescoring (default: tuned best.json, else 0)",
    )
    return parser


def select_utterances(
    args: argparse.Namespace, tokens: Sequence[str]
) -> Tuple[List[Path], Dict[str, torch.Tensor], Dict[str, str], int]:
    """The scps, the first ``--max_utts`` log-probs (sorted ids), their references, and how many
    utterances the set has.

    Raises:
        FileNotFoundError: No kept log-probs for ``--set``.
        ValueError: A bad ``--max_utts``; log-probs of another token list; utterances without
            reference.
    """
    if args.max_utts is not None and args.max_utts < 1:
        raise ValueError(f"--max_utts {args.max_utts}: expected a positive number of utterances")
    scps = sorted((args.asr_exp / "ctc_logprobs" / args.set).glob("feats.*.scp"))
    if not scps:
        raise FileNotFoundError(
            f"{args.asr_exp}/ctc_logprobs/{args.set}/feats.*.scp: no kept log-probs for --set "
            f"{args.set} (the recipe's stage 9 keeps them for decode modes ngram, lm_fusion and "
            "lm_rescore)"
        )
    everything = read_logprobs(scps)  # sorted by utterance id
    chosen = list(everything)[: args.max_utts]
    refs = read_key_file(args.ref_text)
    missing = [utt for utt in chosen if utt not in refs]
    if missing:
        raise ValueError(
            f"--ref_text {args.ref_text}: no reference for {len(missing)} utterances, "
            f"e.g. {missing[:5]}"
        )
    log_probs = {}
    for utt in chosen:
        if everything[utt].shape[1] != len(tokens):
            raise ValueError(
                f"utterance {utt}: log-probs of shape {everything[utt].shape}: expected "
                f"(T, {len(tokens)}) "
                f"for --token_list {args.token_list}"
            )
        log_probs[utt] = torch.tensor(everything[utt])  # a copy: kaldiio's may be read-only
    return scps, log_probs, {utt: refs[utt] for utt in chosen}, len(everything)


def main(cmd: Optional[Sequence[str]] = None) -> List[Row]:
    """Run the benchmark; print the report; return its rows."""
    args = get_parser().parse_args(cmd)
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s (%(module)s:%(lineno)d) %(levelname)s: %(message)s",
    )
    logger.info("arguments: %s", vars(args))
    if args.threads < 1:
        raise ValueError(f"--threads {args.threads}: expected at least 1")
    settings = [s for name in args.settings for s in SETTINGS if s.name == name]
    resources = gather_resources(args, settings)
    scps, log_probs, refs, total = select_utterances(args, resources.tokens)
    audio_seconds = sum(m.size(0) for m in log_probs.values()) * FRAME_SECONDS
    print(
        f"machine: CPU `{cpu_model_name()}`, {len(os.sched_getaffinity(0))} cores, "
        f"torch threads {args.threads}; {versions()}; "
        f"date {datetime.datetime.now().isoformat(sep=' ', timespec='minutes')}"
    )
    print(
        f"log-probs: {args.asr_exp}/ctc_logprobs/{args.set} ({len(scps)} scp), the first "
        f"{len(log_probs)} of {total} utterances (sorted ids) in every setting, "
        f"{audio_seconds:.1f} s of audio (frames x {FRAME_SECONDS:g} s)"
    )
    for mode, weights in resources.weights.items():
        print(f"weights {mode}: {weights.describe()}")
    if any(s.beam_size == WIDEST for s in settings):
        print(
            f"beam {len(resources.tokens) - 1} = len(tokens) - 1, the widest ESPnet's beam search "
            f"decodes ({WIDEST_WHY}), stands in for the paper's Transformer-LM beam 50"
        )
    print("decode (s): wall time of the search alone; setup (s): loading LMs, building the search")
    print(TABLE_HEADER, flush=True)
    threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    rows = []
    try:
        for setting in settings:
            rows.append(bench_setting(setting, resources, log_probs, refs))
            print(rows[-1].markdown(), flush=True)
    finally:
        torch.set_num_threads(threads)  # main() is also called in-process, by the test
    return rows


if __name__ == "__main__":
    main()

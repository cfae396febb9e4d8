#!/usr/bin/env python3
"""Write the data of the frozen probes (``espnet_ils.analysis.probes``) from the formatted sets.

Phone recognition: phone transcripts from each set's 50 Hz ``phone_alignment`` (silence left out),
and the token list from the first (training) set's phones:

    python -m espnet_ils.bin.prepare_probes pr --set dump/raw/train_ft dump/probe/pr/train_ft \
        --set dump/raw/dev dump/probe/pr/dev --token_list dump/probe/pr/tokens.txt

Speaker identification: one set's utterances split per speaker into train, valid and test
(``--held_out`` of each speaker's utterances for valid and as many for test), labelled by speaker:

    python -m espnet_ils.bin.prepare_probes sid --src dump/raw/train \
        --split train dump/probe/sid/train --split valid dump/probe/sid/valid \
        --split test dump/probe/sid/test --token_list dump/probe/sid/tokens.txt \
        --held_out 0.1 --seed 0

Each output directory holds ``wav.scp``, ``speech_shape`` and ``text`` (phones, or the speaker);
where they go is the caller's (the recipe's from ``espnet_ils.bin.probe_layout``).
"""

import argparse
import logging
from pathlib import Path
from typing import List, Optional

from espnet_ils.analysis.probes import (
    SID_SPLITS,
    phone_transcripts,
    split_by_speaker,
    write_class_tokens,
    write_phone_tokens,
    write_probe_set,
)
from espnet_ils.bin import setup_logging
from espnet_ils.data.kaldi_files import read_key_file

logger = logging.getLogger("espnet_ils.prepare_probes")


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    tasks = parser.add_subparsers(dest="task", required=True)
    pr = tasks.add_parser("pr", help="phone recognition")
    pr.add_argument(
        "--set",
        nargs=2,
        action="append",
        type=Path,
        required=True,
        metavar=("SRC", "DST"),
        help="A formatted set with a phone_alignment, and its probe directory; the first trains",
    )
    pr.add_argument("--token_list", type=Path, required=True, help="Phone token list to write")
    sid = tasks.add_parser("sid", help="speaker identification")
    sid.add_argument("--src", type=Path, required=True, help="Formatted set with utt2spk")
    sid.add_argument(
        "--split",
        nargs=2,
        action="append",
        required=True,
        metavar=("NAME", "DST"),
        help=f"A split ({', '.join(SID_SPLITS)}) and its probe directory; each once",
    )
    sid.add_argument("--token_list", type=Path, required=True, help="Speaker token list to write")
    sid.add_argument(
        "--held_out", type=float, default=0.1, help="Share per speaker, valid and test"
    )
    sid.add_argument("--seed", type=int, default=0)
    return parser


def main(cmd: Optional[List[str]] = None) -> None:
    args = get_parser().parse_args(cmd)
    setup_logging(args)
    if args.task == "pr":
        for number, (src, dst) in enumerate(args.set):
            transcripts = phone_transcripts(src / "phone_alignment")
            write_probe_set(src, dst, transcripts)
            if number == 0:
                write_phone_tokens(transcripts, args.token_list)
            logger.info("%s: phone transcripts of %d utterances", dst, len(transcripts))
    else:
        outdirs = dict(args.split)
        if sorted(outdirs) != sorted(SID_SPLITS) or len(args.split) != len(SID_SPLITS):
            raise SystemExit(
                f"prepare_probes sid: error: --split {[name for name, _ in args.split]}: give "
                f"each of {list(SID_SPLITS)} once"
            )
        splits = split_by_speaker(read_key_file(args.src / "utt2spk"), args.held_out, args.seed)
        for name in SID_SPLITS:
            write_probe_set(args.src, Path(outdirs[name]), splits[name])
        write_class_tokens(splits["train"], args.token_list)
        logger.info(
            "%s: %d speakers; %s utterances",
            args.src,
            len(set(splits["train"].values())),
            ", ".join(f"{name} {len(splits[name])}" for name in SID_SPLITS),
        )


if __name__ == "__main__":
    main()

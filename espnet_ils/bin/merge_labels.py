#!/usr/bin/env python3
"""Merge label shards into one ``text`` covering exactly the utterances of a wav.scp.

    python -m espnet_ils.bin.merge_labels --wav_scp data/train/wav.scp \
        --label_dir dump/labels/it1/train --nj 4 --output dump/labels/it1/train/text
"""

import argparse
import logging
from pathlib import Path
from typing import List, Optional

from espnet_ils.bin import setup_logging
from espnet_ils.kaldi_files import read_key_file, write_text_atomic

logger = logging.getLogger("espnet_ils.merge_labels")


def merge_labels(wav_scp: Path, label_dir: Path, nj: int, output: Path) -> None:
    """Join ``labels.1..nj``; every wav.scp utterance must have labels and no others may appear."""
    labels = {}
    for job in range(1, nj + 1):
        shard = Path(label_dir) / f"labels.{job}"
        if not (Path(label_dir) / f".done.{job}").is_file():
            raise FileNotFoundError(
                f"{shard}: shard {job}/{nj} is not complete; rerun the label stage"
            )
        labels.update(read_key_file(shard))
    utts = read_key_file(wav_scp)
    missing = sorted(set(utts) - set(labels))
    extra = sorted(set(labels) - set(utts))
    if missing or extra:
        raise ValueError(
            f"labels in {label_dir} do not match {wav_scp}: missing for {missing[:5]}"
            f"{' ...' if len(missing) > 5 else ''} ({len(missing)}), not in wav.scp {extra[:5]} ({len(extra)})"
        )
    write_text_atomic(output, [f"{utt} {labels[utt]}" for utt in utts])
    logger.info("wrote %d utterances to %s", len(utts), output)


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--wav_scp", type=Path, required=True)
    parser.add_argument("--label_dir", type=Path, required=True, help="Directory of labels.JOB")
    parser.add_argument("--nj", type=int, required=True, help="Number of label shards")
    parser.add_argument("--output", type=Path, required=True, help="Merged label file")
    return parser


def main(cmd: Optional[List[str]] = None) -> None:
    args = get_parser().parse_args(cmd)
    setup_logging(args)
    merge_labels(args.wav_scp, args.label_dir, args.nj, args.output)


if __name__ == "__main__":
    main()

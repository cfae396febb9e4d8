#!/usr/bin/env python3
"""Merge label shards into one ``text`` covering exactly the utterances of a wav.scp.

    python -m espnet_ils.bin.merge_labels --wav_scp data/train/wav.scp \
        --label_dir dump/labels/it1/train --nj 4 --output dump/labels/it1/train/text
"""

import argparse
import logging
from pathlib import Path
from typing import Iterator, List, Optional

from espnet_ils.bin import setup_logging
from espnet_ils.data.kaldi_files import read_key_file, write_text_atomic
from espnet_ils.data.shards import shard

logger = logging.getLogger("espnet_ils.merge_labels")


def shard_lines(wav_utts: List[str], label_dir: Path, nj: int) -> Iterator[str]:
    """The lines of ``labels.1..nj`` in wav.scp order, one shard in memory at a time.

    Shard J must hold exactly the J-th of ``nj`` slices of the wav.scp's utterances, as the label
    jobs (``dump_labels``, ``model_labels``) cut them.
    """
    for job in range(1, nj + 1):
        path = Path(label_dir) / f"labels.{job}"
        if not (Path(label_dir) / f".done.{job}").is_file():
            raise FileNotFoundError(
                f"{path}: shard {job}/{nj} is not complete; rerun the label stage"
            )
        labels = read_key_file(path)
        expected = shard(wav_utts, job, nj)
        missing = sorted(set(expected) - set(labels))
        extra = sorted(set(labels) - set(expected))
        if missing or extra:
            raise ValueError(
                f"{path} does not hold the utterances of shard {job}/{nj} of the wav.scp: missing for "
                f"{missing[:5]}{' ...' if len(missing) > 5 else ''} ({len(missing)}), not in "
                f"the shard {extra[:5]} ({len(extra)}); were the labels made from another wav.scp "
                "or --nj? Rerun the label stage"
            )
        yield from (f"{utt} {labels[utt]}" for utt in expected)


def merge_labels(wav_scp: Path, label_dir: Path, nj: int, output: Path) -> None:
    """Join ``labels.1..nj`` into ``output``, in wav.scp order; every wav.scp utterance must have
    labels and no others may appear."""
    wav_utts = list(read_key_file(wav_scp))
    write_text_atomic(output, shard_lines(wav_utts, label_dir, nj))
    logger.info("wrote %d utterances to %s", len(wav_utts), output)


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

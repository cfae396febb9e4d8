#!/usr/bin/env python3
"""Dump MFCC features (39 dims, 100 Hz) of one shard of a wav.scp as kaldiio ark/scp.

    ${train_cmd} JOB=1:${nj} log/dump_mfcc.JOB.log \
        python -m espnet_ils.bin.dump_mfcc --wav_scp data/train/wav.scp --outdir dump/mfcc/train \
            --nj ${nj} --job JOB

Writes ``feats.JOB.{ark,scp}`` and ``utt2num_samples.JOB``, then ``.done.JOB``; a shard finished
with the same ``--nj`` and the same wav.scp content is not recomputed.
"""

import argparse
import logging
from pathlib import Path
from typing import List, Optional

from tqdm import tqdm

from espnet_ils.bin import add_shard_arguments, setup_logging
from espnet_ils.data.audio import load_waveform
from espnet_ils.data.kaldi_files import read_key_file, write_text_atomic
from espnet_ils.data.markers import file_checksum, step_identity, up_to_date, write_marker
from espnet_ils.data.shards import feature_shard_writer, marker_path, shard
from espnet_ils.targets.mfcc import compute_mfcc

logger = logging.getLogger("espnet_ils.dump_mfcc")


def dump_mfcc(wav_scp: Path, outdir: Path, job: int, nj: int) -> None:
    """Compute and write the MFCC of shard ``job`` of ``nj``; skip a shard already done."""
    identity = step_identity({"kind": "mfcc", "nj": nj}, {"wav_scp": file_checksum(wav_scp)})
    if up_to_date(marker_path(outdir, job), identity, f"MFCC shard {job}/{nj} in {outdir}"):
        return
    entries = list(read_key_file(wav_scp).items())
    num_samples = []
    with feature_shard_writer(outdir, job) as writer:
        for utt, path in tqdm(shard(entries, job, nj), desc=f"mfcc {job}/{nj}"):
            wave = load_waveform(path, utt)
            writer[utt] = compute_mfcc(wave)
            num_samples.append(f"{utt} {wave.shape[0]}")
    write_text_atomic(Path(outdir) / f"utt2num_samples.{job}", num_samples)
    write_marker(marker_path(outdir, job), identity)


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--wav_scp", type=Path, required=True, help="Kaldi wav.scp (16 kHz mono)")
    parser.add_argument("--outdir", type=Path, required=True, help="Output feature directory")
    add_shard_arguments(parser)
    return parser


def main(cmd: Optional[List[str]] = None) -> None:
    args = get_parser().parse_args(cmd)
    setup_logging(args)
    dump_mfcc(args.wav_scp, args.outdir, args.job, args.nj)


if __name__ == "__main__":
    main()

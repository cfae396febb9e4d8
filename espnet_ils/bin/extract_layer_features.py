#!/usr/bin/env python3
"""Dump one layer of an ILS-SSL encoder for a Kaldi wav.scp as a kaldiio ark/scp, one shard per job.

    ${cmd} JOB=1:${nj} ${dir}/log/extract.JOB.log \\
        python -m espnet_ils.bin.extract_layer_features \\
            --model_file exp/ssl_it1/valid.loss.best.pth --layer 6 \\
            --wav_scp data/train/wav.scp --out_dir ${dir} --nj ${nj} --job JOB

Job J of N takes the J-th of N contiguous slices of the utterances sorted by id and writes
``<out_dir>/feats.J.ark`` and ``feats.J.scp`` (float32 matrices ``(frames, dim)`` at 50 Hz, scp sorted
by utterance id), first under temporary names, the scp renamed last. Layer k is the output of
block k (1-based), 0 the input of block 1; see ``espnet_ils.layer_features``.
"""

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import Dict, List, Optional

import kaldiio
import soundfile
from espnet2.fileio.sound_scp import SoundScpReader
from tqdm import tqdm

import espnet_ils  # noqa: F401  (registers our classes)
from espnet_ils.layer_features import LayerFeatureExtractor

logger = logging.getLogger("extract_layer_features")


def shard_keys(keys: List[str], nj: int, job: int) -> List[str]:
    """The ``job``-th (1-based) of ``nj`` contiguous slices of the sorted ``keys``."""
    if nj < 1 or not 1 <= job <= nj:
        raise ValueError(f"--job {job} --nj {nj}: need 1 <= job <= nj")
    keys = sorted(keys)
    return keys[(job - 1) * len(keys) // nj : job * len(keys) // nj]


def length_sorted_batches(lengths: Dict[str, int], batch_size: int) -> List[List[str]]:
    """Utterance ids grouped into batches of similar length (less padding)."""
    if batch_size < 1:
        raise ValueError(f"--batch_size {batch_size}: must be >= 1")
    ordered = sorted(lengths, key=lambda key: (lengths[key], key))
    return [ordered[start : start + batch_size] for start in range(0, len(ordered), batch_size)]


def extract_shard(
    extractor: LayerFeatureExtractor,
    wav_scp: Path,
    layer: int,
    out_dir: Path,
    nj: int = 1,
    job: int = 1,
    batch_size: int = 1,
) -> Path:
    """Write ``feats.<job>.ark`` / ``.scp`` of one shard of ``wav_scp``.

    Args:
        extractor: The model.
        wav_scp: Kaldi ``wav.scp`` (``utt_id path``; any format soundfile reads).
        layer: Layer to dump, ``0..extractor.num_layers``.
        out_dir: Output directory (created).
        nj: Number of shards.
        job: This shard, 1-based.
        batch_size: Utterances per forward pass.

    Returns:
        The scp file.

    Raises:
        ValueError: Bad shard or layer, or audio at another sampling rate.
    """
    extractor.check_layers([layer])
    reader = SoundScpReader(str(wav_scp), dtype="float32")
    keys = shard_keys(list(reader.keys()), nj, job)
    out_dir.mkdir(parents=True, exist_ok=True)
    ark, scp = out_dir / f"feats.{job}.ark", out_dir / f"feats.{job}.scp"
    ark_tmp, scp_tmp = ark.with_name(ark.name + ".tmp"), scp.with_name(scp.name + ".tmp")
    lengths = {key: soundfile.info(reader.data[key]).frames for key in keys}
    offsets: Dict[str, int] = {}
    with ark_tmp.open("wb") as ark_file:
        batches = length_sorted_batches(lengths, batch_size)
        for batch in tqdm(batches, desc=f"layer {layer}, shard {job}/{nj}"):
            waves = [_read(reader, key, extractor.sample_rate) for key in batch]
            for key, feats in zip(batch, extractor.extract(waves, layer)):
                offsets[key] = ark_file.tell() + len(key) + 1  # after "<key> "
                kaldiio.save_ark(ark_file, {key: feats.numpy()})
    scp_tmp.write_text(
        "".join(f"{key} {ark.resolve()}:{offsets[key]}\n" for key in sorted(offsets)),
        encoding="utf-8",
    )
    os.replace(ark_tmp, ark)
    os.replace(scp_tmp, scp)
    logger.info("wrote %d utterances to %s", len(offsets), scp)
    return scp


def _read(reader: SoundScpReader, key: str, sample_rate: int):
    rate, wave = reader[key]
    if rate != sample_rate:
        raise ValueError(f"utterance {key}: {rate} Hz, the model expects {sample_rate} Hz")
    if wave.ndim != 1:
        raise ValueError(f"utterance {key}: {wave.shape[1]} channels, expected mono")
    return wave


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--model_file", type=Path, required=True, help="ESPnet model weights")
    parser.add_argument(
        "--config", type=Path, default=None, help="its config.yaml (default: next to the weights)"
    )
    parser.add_argument("--wav_scp", type=Path, required=True, help="Kaldi wav.scp")
    parser.add_argument(
        "--layer", type=int, required=True, help="block output to dump (1-based; 0 = block-1 input)"
    )
    parser.add_argument("--out_dir", type=Path, required=True, help="writes feats.JOB.{ark,scp}")
    parser.add_argument("--nj", type=int, default=1, help="number of shards")
    parser.add_argument("--job", type=int, default=1, help="this shard, 1..nj (cmd.sh's JOB)")
    parser.add_argument("--batch_size", type=int, default=1, help="utterances per forward pass")
    parser.add_argument("--device", default="cpu", help="e.g. cpu, cuda, cuda:0")
    parser.add_argument("--log_level", default="INFO", choices=["DEBUG", "INFO", "WARNING"])
    return parser


def main(cmd: Optional[List[str]] = None) -> None:
    args = get_parser().parse_args(cmd)
    logging.basicConfig(
        level=args.log_level,
        stream=sys.stderr,
        format="%(asctime)s (%(module)s:%(lineno)d) %(levelname)s: %(message)s",
    )
    logger.info("%s", " ".join(f"--{key} {value}" for key, value in vars(args).items()))
    try:
        extractor = LayerFeatureExtractor.from_files(args.model_file, args.config, args.device)
        extract_shard(
            extractor, args.wav_scp, args.layer, args.out_dir, args.nj, args.job, args.batch_size
        )
    except ValueError as error:
        raise SystemExit(f"extract_layer_features: error: {error}") from error


if __name__ == "__main__":
    main()

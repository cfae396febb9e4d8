#!/usr/bin/env python3
"""Dump one layer of an ILS-SSL encoder for a Kaldi wav.scp as a kaldiio ark/scp, one shard per job.

    ${cmd} JOB=1:${nj} ${dir}/log/extract.JOB.log \\
        python -m espnet_ils.bin.extract_layer_features \\
            --model_file exp/ssl_it1/valid.loss.best.pth --layer 6 \\
            --wav_scp data/train/wav.scp --out_dir ${dir} --nj ${nj} --job JOB

Job J of N takes the J-th of N contiguous slices of the wav.scp's utterances (only those of
``--utt_list`` when given: the k-means portion, which is all stage 5 writes) and writes
``<out_dir>/feats.J.{ark,scp}`` (matrices ``(frames, dim)`` at 50 Hz, float32 or, with
``--storage two_byte``, Kaldi's two-byte compressed matrices: half the bytes, each value within
1/65535 of its matrix's range, read back by kaldiio as float32) and ``utt2num_samples.J`` through temporary names, then the
completion marker ``.done.J`` holding the layer, ``--nj``, the storage and the checksums of the
wav.scp, the utterance list, the model file and its config; a shard finished with the same identity
is skipped. Audio is read a batch at a time. Layer k is the output of block k (1-based), 0 the
input of block 1; see ``espnet_ils.targets.layer_features``.
"""

import argparse
import logging
from pathlib import Path
from typing import List, Optional

from tqdm import tqdm

import espnet_ils  # noqa: F401  (registers our classes)
from espnet_ils.bin import add_shard_arguments, bound_heap_growth, errors_exit, setup_logging
from espnet_ils.data.audio import load_waveform
from espnet_ils.data.datadir import num_samples_of
from espnet_ils.data.kaldi_files import read_key_file, write_text_atomic
from espnet_ils.data.markers import file_checksum, step_identity, up_to_date, write_marker
from espnet_ils.data.shards import feature_shard_writer, marker_path, shard
from espnet_ils.targets.label_model_files import label_model_identity

logger = logging.getLogger("extract_layer_features")

#: --storage -> kaldiio's compression_method (Kaldi's kTwoByteAuto: 2 B per value; kaldiio has no
#: float16 matrices).
FEATURE_STORAGE = {"float32": None, "two_byte": 3}


def extract_shard(
    model_file: Path,
    config: Optional[Path],
    wav_scp: Path,
    layer: int,
    out_dir: Path,
    nj: int = 1,
    job: int = 1,
    batch_size: int = 1,
    device: str = "cpu",
    utt_list: Optional[Path] = None,
    storage: str = "float32",
) -> Path:
    """Write ``feats.<job>.{ark,scp}`` and ``utt2num_samples.<job>`` of one shard of ``wav_scp``.

    The shard's identity is the layer, ``nj``, the storage and the checksums of the wav.scp, the
    utterance list, the model file and its config; a shard finished with the same identity is
    skipped before the model is loaded.

    Args:
        model_file: ESPnet weights of an ILS-SSL model (``valid.loss.best.pth``).
        config: Its ``config.yaml``; None: next to ``model_file``.
        wav_scp: Kaldi ``wav.scp`` (``utt_id path``; any format soundfile reads, 16 kHz mono).
        layer: Layer to dump, ``0..num_blocks`` of the model.
        out_dir: Output directory (created).
        nj: Number of shards.
        job: This shard, 1-based.
        batch_size: Utterances per forward pass.
        device: Where the model runs (``cpu``, ``cuda``, ``cuda:0``).
        utt_list: Only these utterances (one id per line; the others of the shard are skipped).
        storage: ``float32``, or ``two_byte`` (Kaldi's two-byte compressed matrices).

    Returns:
        The scp file.

    Raises:
        ValueError: Bad shard or layer, or unreadable audio (naming the utterance).
    """
    if storage not in FEATURE_STORAGE:
        raise ValueError(f"--storage {storage}: one of {sorted(FEATURE_STORAGE)}")
    inputs = {
        "wav_scp": file_checksum(wav_scp),
        "model": label_model_identity(model_file, config),
    }
    if utt_list is not None:
        inputs["utt_list"] = file_checksum(utt_list)
    identity = step_identity({"layer": layer, "nj": nj, "storage": storage}, inputs)
    scp = Path(out_dir) / f"feats.{job}.scp"
    if up_to_date(
        marker_path(out_dir, job), identity, f"layer-{layer} shard {job}/{nj} in {out_dir}"
    ):
        return scp
    # Only now: these import torch and ESPnet (about 10 s), which a skip never needs.
    from espnet_ils.targets.label_models import load_label_model
    from espnet_ils.targets.layer_features import length_sorted_batches

    extractor = load_label_model(model_file, config, device)
    extractor.check_layers([layer])
    entries = dict(shard(list(read_key_file(wav_scp).items()), job, nj))
    if utt_list is not None:
        wanted = set(Path(utt_list).read_text(encoding="utf-8").split())
        entries = {utt: path for utt, path in entries.items() if utt in wanted}
    num_samples = num_samples_of(Path(wav_scp).parent)
    lengths = {}
    with feature_shard_writer(out_dir, job, FEATURE_STORAGE[storage]) as writer:
        batches = length_sorted_batches({u: num_samples[u] for u in entries}, batch_size)
        for batch in tqdm(batches, desc=f"layer {layer}, shard {job}/{nj}"):
            waves = [load_waveform(entries[u], u, extractor.sample_rate) for u in batch]
            for utt, wave, feats in zip(batch, waves, extractor.extract(waves, layer)):
                lengths[utt] = wave.shape[0]
                writer[utt] = feats.numpy()
    write_text_atomic(
        Path(out_dir) / f"utt2num_samples.{job}", [f"{u} {n}" for u, n in sorted(lengths.items())]
    )
    write_marker(marker_path(out_dir, job), identity)
    logger.info("wrote %d utterances to %s", len(lengths), scp)
    return scp


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
    add_shard_arguments(parser)
    parser.add_argument("--batch_size", type=int, default=1, help="utterances per forward pass")
    parser.add_argument("--device", default="cpu", help="e.g. cpu, cuda, cuda:0")
    parser.add_argument(
        "--utt_list", type=Path, default=None, help="only these utterances (one id per line)"
    )
    parser.add_argument(
        "--storage",
        default="float32",
        choices=sorted(FEATURE_STORAGE),
        help="float32, or two_byte: Kaldi's two-byte compressed matrices (half the bytes)",
    )
    parser.add_argument("--log_level", default="INFO", choices=["DEBUG", "INFO", "WARNING"])
    return parser


def main(cmd: Optional[List[str]] = None) -> None:
    args = get_parser().parse_args(cmd)
    bound_heap_growth()  # memory bounded by the batch, not by the shard
    setup_logging(args, args.log_level)
    with errors_exit("extract_layer_features"):
        extract_shard(
            args.model_file,
            args.config,
            args.wav_scp,
            args.layer,
            args.out_dir,
            args.nj,
            args.job,
            args.batch_size,
            args.device,
            args.utt_list,
            args.storage,
        )


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Assign k-means labels to one feature shard, at the encoder's 50 Hz, checked per utterance.

    ${train_cmd} JOB=1:${nj} log/dump_labels.JOB.log \
        python -m espnet_ils.bin.dump_labels --feats_dir dump/mfcc/train --feature_rate 100 \
            --km_model exp/kmeans/mfcc_km100/km.joblib --outdir dump/labels/it1/train --nj ${nj} --job JOB

Writes ``labels.JOB`` (``utt c1 c2 ...``). Each utterance's label count must equal the encoder's
frame count for its length (``utt2num_samples.JOB`` of the feature shard); a mismatch names the
utterance. ``.done.JOB`` is written last with the checksums of the k-means model and of the feature
shard (its listing and marker); a shard is recomputed when either changes.
"""

import argparse
import logging
from pathlib import Path
from typing import List, Optional

from tqdm import tqdm

from espnet_ils.bin import add_shard_arguments, setup_logging
from espnet_ils.data.kaldi_files import read_key_file, write_text_atomic
from espnet_ils.data.labels import check_frame_count, format_labels, to_encoder_rate
from espnet_ils.data.markers import (
    file_checksum,
    files_checksum,
    step_identity,
    up_to_date,
    write_marker,
)
from espnet_ils.data.shards import feature_shard_files, marker_path, read_features
from espnet_ils.targets.kmeans import load_kmeans

logger = logging.getLogger("espnet_ils.dump_labels")


def dump_labels(
    feats_dir: Path, feature_rate: int, km_model: Path, outdir: Path, job: int, nj: int
) -> None:
    scp, lengths_file, feats_marker = feature_shard_files(feats_dir, job)
    if not all(path.is_file() for path in (scp, lengths_file, feats_marker)):
        raise FileNotFoundError(
            f"{scp}, {lengths_file} or {feats_marker} missing: dump features with the same --nj {nj} first"
        )
    identity = step_identity(
        {"feature_rate": feature_rate, "nj": nj},
        {
            "km_model": file_checksum(km_model),
            "features": files_checksum([scp, lengths_file, feats_marker]),
        },
    )
    if up_to_date(marker_path(outdir, job), identity, f"label shard {job}/{nj} in {outdir}"):
        return
    num_samples = {utt: int(n) for utt, n in read_key_file(lengths_file).items()}
    model = load_kmeans(km_model)
    lines = []
    for utt, features in tqdm(read_features(scp), desc=f"labels {job}/{nj}"):
        labels = to_encoder_rate(model.predict(features.astype("float32")), feature_rate)
        if utt not in num_samples:
            raise ValueError(f"utterance {utt}: in {scp} but not in {lengths_file}")
        check_frame_count(utt, labels, num_samples[utt])
        lines.append(format_labels(utt, labels))
    Path(outdir).mkdir(parents=True, exist_ok=True)
    write_text_atomic(Path(outdir) / f"labels.{job}", sorted(lines))
    write_marker(marker_path(outdir, job), identity)


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--feats_dir", type=Path, required=True, help="Directory of feats.JOB.scp")
    parser.add_argument(
        "--feature_rate",
        type=int,
        choices=[50, 100],
        required=True,
        help="Frame rate of the features in Hz",
    )
    parser.add_argument("--km_model", type=Path, required=True, help="k-means model (joblib)")
    parser.add_argument("--outdir", type=Path, required=True, help="Output label directory")
    add_shard_arguments(parser)
    return parser


def main(cmd: Optional[List[str]] = None) -> None:
    args = get_parser().parse_args(cmd)
    setup_logging(args)
    dump_labels(args.feats_dir, args.feature_rate, args.km_model, args.outdir, args.job, args.nj)


if __name__ == "__main__":
    main()

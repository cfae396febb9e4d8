#!/usr/bin/env python3
"""k-means labels of one shard of a wav.scp straight from audio, through a model's block output.

    ${cuda_cmd} JOB=1:${nj} ${labels}/log/model_labels.JOB.log \\
        python -m espnet_ils.bin.model_labels --model_file exp/ssl_it1/valid.loss.best.pth \\
            --layer 6 --km_model exp/kmeans/it2_L6_km500/km.joblib --n_clusters 500 \\
            --data_dir dump/raw/train_960 --outdir ${labels} --nj ${nj} --job JOB --device cuda

Job J of N labels the J-th of N contiguous slices of the data directory's wav.scp and writes
``labels.J`` (``utt c1 c2 ...``, one k-means id per 50 Hz frame, in wav.scp order) without
writing features (``espnet_ils.targets.model_labels``); ``.done.J`` is written last with the layer,
``--nj``, ``--batch_size`` and the checksums of the wav.scp, utt2num_samples, the model, its
config and the k-means model. A shard finished with the same identity is skipped.
"""

import argparse
import logging
from pathlib import Path
from typing import Dict, List, Optional

import espnet_ils  # noqa: F401  (registers our classes)
from espnet_ils.bin import add_shard_arguments, bound_heap_growth, errors_exit, setup_logging
from espnet_ils.data.datadir import num_samples_of
from espnet_ils.data.kaldi_files import read_key_file
from espnet_ils.data.markers import (
    file_checksum,
    files_checksum,
    step_identity,
    up_to_date,
    write_marker,
)
from espnet_ils.data.shards import feature_scps, marker_path, shard
from espnet_ils.targets.label_model_files import label_model_identity

logger = logging.getLogger("model_labels")


def label_shard(
    model_file: Path,
    config: Optional[Path],
    layer: int,
    km_model: Path,
    n_clusters: int,
    data_dir: Path,
    outdir: Path,
    nj: int = 1,
    job: int = 1,
    batch_size: int = 1,
    device: str = "cpu",
    feats_dir: Optional[Path] = None,
) -> Path:
    """Write ``labels.<job>`` of one shard of ``data_dir``'s wav.scp; see the module docstring.

    ``feats_dir``: feature shards of this model's ``layer`` already written for some utterances
    (stage 5's k-means portion, float32); those are labelled from them.

    Returns:
        The label file.

    Raises:
        ValueError: A k-means model of another cluster count or dimension, a bad layer or shard,
            unreadable audio or a length other than utt2num_samples (naming the utterance).
    """
    wav_scp, lengths_file = Path(data_dir) / "wav.scp", Path(data_dir) / "utt2num_samples"
    inputs = {
        "wav_scp": file_checksum(wav_scp),
        "utt2num_samples": file_checksum(lengths_file),
        "model": label_model_identity(model_file, config),
        "km_model": file_checksum(km_model),
    }
    stored_scps = feature_scps(feats_dir) if feats_dir is not None else []
    if stored_scps:  # their listings, and their markers, which hold what made them
        markers = sorted(Path(feats_dir).glob(".done.*"))
        inputs["stored_features"] = files_checksum([*stored_scps, *markers])
    options = {"layer": layer, "nj": nj, "batch_size": batch_size, "n_clusters": n_clusters}
    identity = step_identity(options, inputs)
    output = Path(outdir) / f"labels.{job}"
    if up_to_date(marker_path(outdir, job), identity, f"label shard {job}/{nj} in {outdir}"):
        return output
    # Only now: these import scikit-learn, torch and ESPnet (about 10 s), which a skip never needs.
    from espnet_ils.targets.kmeans import load_kmeans
    from espnet_ils.targets.label_models import load_label_model
    from espnet_ils.targets.model_labels import write_label_shard

    kmeans = load_kmeans(km_model)
    if kmeans.cluster_centers_.shape[0] != n_clusters:
        raise ValueError(
            f"--km_model {km_model} has {kmeans.cluster_centers_.shape[0]} clusters, but "
            f"--n_clusters is {n_clusters} (the token list and the loss's num_classes follow it)"
        )
    extractor = load_label_model(model_file, config, device)
    if kmeans.cluster_centers_.shape[1] != extractor.encoder.output_size():
        raise ValueError(
            f"--km_model {km_model} has {kmeans.cluster_centers_.shape[1]}-dimensional centroids, "
            f"but the blocks of {model_file} are {extractor.encoder.output_size()} wide: a k-means "
            "model of another model's layer?"
        )
    audio = dict(shard(list(read_key_file(wav_scp).items()), job, nj))
    Path(outdir).mkdir(parents=True, exist_ok=True)
    marker_path(outdir, job).unlink(missing_ok=True)
    stored: Dict[str, str] = {}
    for scp in stored_scps:
        stored.update((utt, where) for utt, where in read_key_file(scp).items() if utt in audio)
    write_label_shard(
        extractor,
        layer,
        kmeans,
        audio,
        num_samples_of(data_dir),
        output,
        batch_size,
        desc=f"layer-{layer} labels, shard {job}/{nj}",
        stored=stored,
    )
    write_marker(marker_path(outdir, job), identity)
    return output


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--model_file", type=Path, required=True, help="model weights")
    parser.add_argument(
        "--config", type=Path, default=None, help="its config.yaml (default: next to the weights)"
    )
    parser.add_argument(
        "--layer",
        type=int,
        required=True,
        help="block output to label (1-based; 0 = block-1 input)",
    )
    parser.add_argument("--km_model", type=Path, required=True, help="k-means model (joblib)")
    parser.add_argument(
        "--n_clusters", type=int, required=True, help="clusters the k-means model must have"
    )
    parser.add_argument(
        "--data_dir", type=Path, required=True, help="data directory (wav.scp, utt2num_samples)"
    )
    parser.add_argument("--outdir", type=Path, required=True, help="writes labels.JOB")
    add_shard_arguments(parser)
    parser.add_argument("--batch_size", type=int, default=1, help="utterances per forward pass")
    parser.add_argument("--device", default="cpu", help="e.g. cpu, cuda, cuda:0")
    parser.add_argument(
        "--feats_dir",
        type=Path,
        default=None,
        help="float32 features of this layer already written for some utterances (feats.*.scp): "
        "those are labelled from them",
    )
    return parser


def main(cmd: Optional[List[str]] = None) -> None:
    args = get_parser().parse_args(cmd)
    bound_heap_growth()  # memory bounded by the batch, not by the shard
    setup_logging(args)
    with errors_exit("model_labels"):
        label_shard(
            args.model_file,
            args.config,
            args.layer,
            args.km_model,
            args.n_clusters,
            args.data_dir,
            args.outdir,
            args.nj,
            args.job,
            args.batch_size,
            args.device,
            args.feats_dir,
        )


if __name__ == "__main__":
    main()

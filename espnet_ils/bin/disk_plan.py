#!/usr/bin/env python3
"""Log what each stage of a recipe run will write (an estimate) and stop when a disk cannot hold it.

    python -m espnet_ils.bin.disk_plan --stage 1 --stop_stage 12 --corpus librispeech \\
        --known_sizes local/corpus_sizes.yaml --corpus_root LIBRISPEECH=downloads/LibriSpeech \\
        --datadir data --dumpdir dump --expdir exp --sets "train_960 dev_clean ..." ...

ils.sh runs it once after its option checks, before stage 1 (``--disk_check false`` skips it),
with its own options and folders; ``espnet_ils.recipe.disk_plan`` states how each figure is made. The
table goes to stderr (logging); exit status 1, with the folders, the bytes they need and the bytes
free, when a filesystem's free space is smaller than what the stages write there.
"""

import argparse
import logging
import sys
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from espnet_ils.bin import add_run_arguments, optional_path, setup_logging, words
from espnet_ils.recipe.disk_plan import KnownSizes, RunOptions, plan_run

logger = logging.getLogger("espnet_ils.recipe.disk_plan")


def paths(value: str) -> List[Path]:
    return [Path(word) for word in value.split()]


def corpus_root(value: str) -> Tuple[str, Path]:
    name, sep, folder = value.partition("=")
    if not sep or not name or not folder:
        raise argparse.ArgumentTypeError(
            f"'{value}': expected NAME=FOLDER (LIBRISPEECH=downloads/LibriSpeech)"
        )
    return name, Path(folder)


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    add = parser.add_argument
    add("--stage", type=int, required=True, help="first stage of the run")
    add("--stop_stage", type=int, required=True, help="last stage of the run")
    add("--corpus", choices=["librispeech", "mini"], required=True)
    add("--mini_hours", type=float, default=1.5, help="hours of the mini corpus")
    add("--known_sizes", type=Path, required=True, help="the corpora's sizes (YAML)")
    add("--corpus_root", type=corpus_root, action="append", default=[], help="NAME=FOLDER (db.sh)")
    add("--audio_dir", type=Path, required=True, help="Libri-Light's cut utterances")
    add("--datadir", type=Path, required=True)
    add("--dumpdir", type=Path, required=True)
    add("--expdir", type=Path, required=True)
    add("--sets", type=words, required=True, help="every set of the run, space-separated")
    add("--nj", type=int, default=1, help="shards of the feature and label jobs")
    add("--inference_nj", type=int, default=1, help="shards of decoding")
    add("--it1_config", type=Path, required=True)
    add("--it1_tag", required=True, help="labels tag of iteration 1 (it1_mfcc_km100)")
    add("--it1_exp", type=Path, required=True, help="iteration-1 experiment folder")
    add("--it2_config", type=Path, required=True)
    add("--it2_tag", required=True, help="labels tag of iteration 2 (it2_L6_km500)")
    add("--ssl_exps", type=paths, default=[], help="iteration-2 experiment folder of each run")
    add("--kmeans_feats_storage", choices=["float32", "two_byte"], default="float32")
    add("--asr_config", type=Path, required=True)
    add("--asr_exps", type=paths, default=[], help="fine-tuning experiment folder of each run")
    add("--token_list", type=Path, required=True, help="the fine-tuning letters (stage 8)")
    add("--probe_pr_config", type=Path, default=None)
    add("--probe_sid_config", type=Path, default=None)
    add("--lm_config", type=optional_path, default=None)
    add("--lm_dir", type=optional_path, default=None, help="the letter LM's experiment folder")
    add("--lm_text", type=optional_path, default=None, help="the letter LM's text folder")
    add("--lm_train_corpus", type=paths, default=[])
    add("--pretrain_args", type=words, default=[], help="ils.sh's, as one string")
    add("--asr_args", type=words, default=[])
    add("--lm_args", type=words, default=[])
    add("--probe_args", type=words, default=[])
    add("--hub_folders", choices=["true", "false"], default="false", help="stage 12 writes them")
    add(
        "--hub_transformers",
        choices=["true", "false"],
        default="false",
        help="stage 12 writes the transformers exports too",
    )
    add_run_arguments(parser)
    return parser


def run_options(args: argparse.Namespace) -> RunOptions:
    probe_configs: Dict[str, Path] = {}
    for task in args.probe_tasks:
        config = getattr(args, f"probe_{task}_config", None)
        if config is None:
            raise ValueError(f"--probe_tasks {task}: give --probe_{task}_config")
        probe_configs[task] = config
    return RunOptions(
        stage=args.stage,
        stop_stage=args.stop_stage,
        corpus=args.corpus,
        mini_hours=args.mini_hours,
        known=KnownSizes.from_yaml(args.known_sizes),
        corpus_roots=dict(args.corpus_root),
        audio_dir=args.audio_dir,
        datadir=args.datadir,
        dumpdir=args.dumpdir,
        expdir=args.expdir,
        sets=args.sets,
        train_set=args.train_set,
        valid_set=args.valid_set,
        finetune_set=args.finetune_set,
        test_sets=args.test_sets,
        nj=args.nj,
        inference_nj=args.inference_nj,
        it1_config=args.it1_config,
        label_model=args.label_model,
        label_kmeans=args.label_kmeans,
        it1_tag=args.it1_tag,
        it1_exp=args.it1_exp,
        it2_config=args.it2_config,
        it2_tag=args.it2_tag,
        ssl_exps=args.ssl_exps,
        kmeans_portion=args.kmeans_portion,
        kmeans_max_hours=args.kmeans_max_hours,
        kmeans_feats_storage=args.kmeans_feats_storage,
        asr_config=args.asr_config,
        asr_exps=args.asr_exps,
        token_list=args.token_list,
        decode_modes=args.decode_modes,
        probe_tasks=args.probe_tasks,
        probe_configs=probe_configs,
        lm_config=args.lm_config,
        lm_exp=args.lm_exp,
        lm_dir=args.lm_dir,
        lm_text=args.lm_text,
        lm_train_corpus=args.lm_train_corpus,
        ngram_arpa=args.ngram_arpa,
        num_splits_ssl=args.num_splits_ssl,
        num_splits_asr=args.num_splits_asr,
        pretrain_args=args.pretrain_args,
        asr_args=args.asr_args,
        lm_args=args.lm_args,
        probe_args=args.probe_args,
        hub_folders=args.hub_folders == "true",
        hub_transformers=args.hub_transformers == "true",
    )


def main(cmd: Optional[List[str]] = None) -> None:
    args = get_parser().parse_args(cmd)
    setup_logging(args)
    try:
        plan_run(run_options(args))
    except ValueError as error:  # DiskSpaceError, or an option the plan cannot use
        logger.error("%s", error)
        sys.exit(1)


if __name__ == "__main__":
    main()

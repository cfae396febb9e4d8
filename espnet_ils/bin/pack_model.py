#!/usr/bin/env python3
"""Pack a fine-tuned ASR model with the SSL model its frontend loads, for Speech2Text elsewhere.

    python -m espnet_ils.bin.pack_model --asr_exp exp/asr_x --checkpoint valid.loss.best.pth \
        --outpath exp/asr_x/packed/asr_x.zip [--extra exp/RESULTS.md]

The ASR config points its ``espnet_ssl`` frontend at the SSL checkpoint by path. The archive holds
``asr/config.yaml``, ``asr/<checkpoint>``, ``ssl/config.yaml`` and ``ssl/model.pth`` with that path
rewritten to ``ssl/model.pth``, written by ESPnet's ``pack``; ESPnet's ``unpack`` (and the model
zoo) rewrite it again to where the archive is unpacked:

    files = espnet2.main_funcs.pack_funcs.unpack("asr_x.zip", "some/dir")
    Speech2Text(asr_train_config=files["asr_train_config"], asr_model_file=files["asr_model_file"])
"""

import argparse
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import List, Optional

import yaml

from espnet_ils.bin import setup_logging

logger = logging.getLogger("espnet_ils.pack_model")


def ssl_model_of(asr_config: dict, asr_exp: Path) -> Path:
    try:
        path = Path(asr_config["frontend_conf"]["frontend_conf"]["path_or_url"])
    except (KeyError, TypeError) as error:
        raise ValueError(
            f"{asr_exp}/config.yaml has no frontend_conf.frontend_conf.path_or_url: "
            "not a model fine-tuned through the espnet_ssl frontend"
        ) from error
    if not path.is_file() or not (path.parent / "config.yaml").is_file():
        raise FileNotFoundError(
            f"SSL model {path} (or its config.yaml) named by {asr_exp}/config.yaml is missing"
        )
    return path


def pack_model(asr_exp: Path, checkpoint: str, outpath: Path, extra: List[Path]) -> None:
    from espnet2.main_funcs.pack_funcs import pack

    asr_config = yaml.safe_load((asr_exp / "config.yaml").read_text())
    ssl_model = ssl_model_of(asr_config, asr_exp)
    if not (asr_exp / checkpoint).is_file():
        raise FileNotFoundError(f"{asr_exp / checkpoint}: no such checkpoint")
    asr_config["frontend_conf"]["frontend_conf"]["path_or_url"] = "ssl/model.pth"
    outpath = outpath.resolve()
    outpath.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as staging:
        stage = Path(staging)
        (stage / "asr").mkdir()
        (stage / "ssl").mkdir()
        (stage / "asr" / "config.yaml").write_text(yaml.safe_dump(asr_config, sort_keys=False))
        shutil.copy(asr_exp / checkpoint, stage / "asr" / checkpoint)
        shutil.copy(ssl_model.parent / "config.yaml", stage / "ssl" / "config.yaml")
        shutil.copy(ssl_model, stage / "ssl" / "model.pth")
        options = ["ssl/config.yaml", "ssl/model.pth"]
        for path in extra:
            shutil.copy(path, stage / path.name)
            options.append(path.name)
        tmp = outpath.with_name(outpath.stem + ".tmp.zip")
        cwd = os.getcwd()
        os.chdir(stage)  # archive names relative to the staging directory
        try:
            pack(
                files={"asr_model_file": f"asr/{checkpoint}"},
                yaml_files={"asr_train_config": "asr/config.yaml"},
                option=options,
                outpath=tmp,
            )
        finally:
            os.chdir(cwd)
        tmp.replace(outpath)
    logger.info("packed %s and %s into %s", asr_exp, ssl_model, outpath)


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--asr_exp", type=Path, required=True, help="Fine-tuning experiment directory"
    )
    parser.add_argument(
        "--checkpoint", default="valid.cer_ctc.best.pth", help="Weights file in --asr_exp"
    )
    parser.add_argument("--outpath", type=Path, required=True, help="Zip to write")
    parser.add_argument(
        "--extra", type=Path, action="append", default=[], help="More files (e.g. RESULTS.md)"
    )
    return parser


def main(cmd: Optional[List[str]] = None) -> None:
    args = get_parser().parse_args(cmd)
    setup_logging(args)
    pack_model(args.asr_exp, args.checkpoint, args.outpath, args.extra)


if __name__ == "__main__":
    main()

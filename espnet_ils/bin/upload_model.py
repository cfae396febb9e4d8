#!/usr/bin/env python3
"""Upload a Hub folder (``espnet_ils.bin.hub_folder``) to a Hugging Face model repository (needs
network and a token).

    python -m espnet_ils.bin.upload_model --folder exp/asr_x/hub --repo user/ils_base \
        [--transformers_dir exp/asr_x/hub_transformers]

The repository then holds exactly the folder (files it held before and the folder lacks are
deleted in the same commit), so that ``Speech2Text.from_pretrained("user/ils_base")`` loads it.
``--transformers_dir``, a transformers export of the same model with its card, goes to
``<repo>-transformers`` the same way.
"""

import argparse
import logging
from pathlib import Path
from typing import List, Optional

from espnet_ils.bin import setup_logging
from espnet_ils.export.hub import transformers_repo

logger = logging.getLogger("espnet_ils.upload_model")


def check_folder(folder: Path, marker: str, how: str) -> None:
    """``folder`` must hold ``marker`` (the file that makes it loadable), or it was not written."""
    if not (folder / marker).is_file() or not (folder / "README.md").is_file():
        raise FileNotFoundError(f"{folder}: no {marker} or README.md there; {how}")


def upload(folder: Path, repo: str) -> None:
    """Make the model repository ``repo`` hold exactly ``folder``'s files, in one commit."""
    from huggingface_hub import HfApi

    api = HfApi()
    try:
        api.create_repo(repo, repo_type="model", exist_ok=True)
        api.upload_folder(
            repo_id=repo,
            folder_path=folder,
            commit_message=f"Upload {folder.name} (espnet_ils.bin.upload_model)",
            delete_patterns="*",  # the Hub never deletes .gitattributes
        )
    except Exception as error:  # the Hub's HTTP errors, and its client's (no common base class)
        raise RuntimeError(
            f"cannot upload {folder} to Hugging Face repository {repo}: {error}. The upload needs "
            "network access and a token (hf auth login or HF_TOKEN); the folder is complete and "
            "can be uploaded later."
        ) from error
    logger.info("uploaded %s to %s", folder, repo)


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--folder", type=Path, required=True, help="Hub folder (hub_folder)")
    parser.add_argument("--repo", required=True, help="Hugging Face repository, e.g. user/ils_base")
    parser.add_argument(
        "--transformers_dir",
        type=Path,
        help="Transformers export with its card: <repo>-transformers",
    )
    return parser


def main(cmd: Optional[List[str]] = None) -> None:
    args = get_parser().parse_args(cmd)
    setup_logging(args)
    check_folder(args.folder, "meta.yaml", "write it with python -m espnet_ils.bin.hub_folder")
    if args.transformers_dir is not None:
        check_folder(
            args.transformers_dir,
            "config.json",
            "write it with espnet_ils.bin.export_transformers, its card with espnet_ils.bin.hub_folder",
        )
    upload(args.folder, args.repo)
    if args.transformers_dir is not None:
        upload(args.transformers_dir, transformers_repo(args.repo))


if __name__ == "__main__":
    main()

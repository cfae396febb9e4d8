#!/usr/bin/env python3
"""Upload a packed model zip to a Hugging Face model repository (needs network and a token)."""

import argparse
import logging
from pathlib import Path
from typing import List, Optional

from espnet_ils.bin import setup_logging

logger = logging.getLogger("espnet_ils.upload_model")


def upload(zip_path: Path, repo: str) -> None:
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError

    if not zip_path.is_file():
        raise FileNotFoundError(f"{zip_path}: no such file; run the packing stage first")
    api = HfApi()
    try:
        api.create_repo(repo, repo_type="model", exist_ok=True)
        api.upload_file(path_or_fileobj=str(zip_path), path_in_repo=zip_path.name, repo_id=repo)
    except (HfHubHTTPError, OSError) as error:
        raise RuntimeError(
            f"cannot upload {zip_path} to Hugging Face repository {repo}: {error}. The upload needs "
            "network access and a token (huggingface-cli login or HF_TOKEN); the packed zip is "
            "complete and can be uploaded later."
        ) from error
    logger.info("uploaded %s to %s", zip_path, repo)


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--zip", type=Path, required=True, help="Packed model (stage 11)")
    parser.add_argument("--repo", required=True, help="Hugging Face repository, e.g. user/ils_base")
    return parser


def main(cmd: Optional[List[str]] = None) -> None:
    args = get_parser().parse_args(cmd)
    setup_logging(args)
    upload(args.zip, args.repo)


if __name__ == "__main__":
    main()

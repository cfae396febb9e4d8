#!/usr/bin/env python3
"""Write a packed model as ESPnet's Hugging Face Hub models hold it, with its model card.

    python -m espnet_ils.bin.hub_folder --zip exp/asr_x/packed/asr_x.zip --outdir exp/asr_x/hub \
        --repo user/ils_base --results exp/RESULTS.md [--transformers_dir exp/asr_x/hub_transformers]

No network: the folder is what ``espnet_ils.bin.upload_model`` uploads, to inspect first (see
``espnet_ils.export.hub``). With ``--transformers_dir`` (a transformers export of the same model) the
export's own card is written there too, for the repository ``<repo>-transformers``; without
``--zip`` and ``--outdir`` only that card is written (the export is made from the Hub folder, so the
recipe writes its card once the export exists, leaving the Hub folder as it is).
"""

import argparse
import dataclasses
from pathlib import Path
from typing import List, Optional

from espnet_ils.bin import setup_logging
from espnet_ils.export.hub import (
    RECIPE,
    CardInfo,
    transformers_repo,
    write_hub_folder,
    write_transformers_card,
)


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--zip", type=Path, help="Packed model (stage 11), with --outdir")
    parser.add_argument("--outdir", type=Path, help="Hub folder to write from --zip")
    parser.add_argument("--repo", required=True, help="Hugging Face repository, e.g. user/ils_base")
    parser.add_argument(
        "--results", type=Path, action="append", default=[], help="Markdown shown in the card"
    )
    parser.add_argument("--recipe", default=RECIPE, help="Recipe that trained the model")
    parser.add_argument(
        "--dataset", action="append", help="Training corpus, once each (default: librispeech)"
    )
    parser.add_argument("--language", default="en", help="ISO 639-1 code of the speech")
    parser.add_argument("--license", default="cc-by-4.0", help="Hub licence id of the model")
    parser.add_argument(
        "--transformers_dir", type=Path, help="A transformers export of the model: gets its card"
    )
    return parser


def main(cmd: Optional[List[str]] = None) -> None:
    parser = get_parser()
    args = parser.parse_args(cmd)
    if (args.zip is None) != (args.outdir is None):
        parser.error("--zip and --outdir go together: the packed model and its Hub folder")
    if args.zip is None and args.transformers_dir is None:
        parser.error("nothing to write: give --zip and --outdir, --transformers_dir, or both")
    setup_logging(args)
    card = CardInfo(
        repo=args.repo,
        results=args.results,
        recipe=args.recipe,
        datasets=args.dataset or ["librispeech"],
        language=args.language,
        license=args.license,
    )
    if args.zip is not None:
        write_hub_folder(args.zip, args.outdir, card)
    if args.transformers_dir is not None:
        export_card = dataclasses.replace(card, repo=transformers_repo(args.repo))
        write_transformers_card(args.transformers_dir, export_card, args.repo)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""ESPnet's LM training (``espnet2.bin.lm_train``, same flags) without its offline network noise.

The letter LM of the recipe trains on ``espnet_ils.bin.prepare_lm_text``'s ``train/text`` with the
fine-tuned model's ``tokens.txt`` and ``--token_type char``; importing ``espnet_ils`` first keeps
ESPnet's g2p imports from trying to download NLTK data.
"""

from typing import List, Optional

from espnet2.tasks.lm import LMTask

import espnet_ils  # noqa: F401  (g2p_en placeholder)


def get_parser():
    return LMTask.get_parser()


def main(cmd: Optional[List[str]] = None) -> None:
    LMTask.main(cmd=cmd)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""ESPnet ASR training with ILS classes registered: same flags as ``espnet2.bin.asr_train``.

Fine-tune a model from ``espnet_ils.bin.ssl_train`` with ``frontend: espnet_ssl`` (ESPnet's
``ESPnetSSLFrontend``), which rebuilds the SSL model, ILS encoder included, in this process; its
keys must match the SSL checkpoint exactly, and checkpoints survive a kill
(``espnet_ils.train.tasks.ILSASRTask``).
"""

from typing import List, Optional

import espnet_ils  # noqa: F401  (registers our classes)
from espnet_ils.train.tasks import ILSASRTask


def get_parser():
    return ILSASRTask.get_parser()


def main(cmd: Optional[List[str]] = None) -> None:
    ILSASRTask.main(cmd=cmd)


if __name__ == "__main__":
    main()

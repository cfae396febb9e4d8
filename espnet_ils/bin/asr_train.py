#!/usr/bin/env python3
"""ESPnet ASR training with ILS classes registered: same flags as ``espnet2.bin.asr_train``.

Fine-tune a model from ``espnet_ils.bin.ssl_train`` with ``frontend: espnet_ssl`` (ESPnet's
``ESPnetSSLFrontend``), which rebuilds the SSL model, ILS encoder included, in this process.
"""

from typing import List, Optional

from espnet2.tasks.asr import ASRTask

import espnet_ils  # noqa: F401  (registers our classes)


def get_parser():
    return ASRTask.get_parser()


def main(cmd: Optional[List[str]] = None) -> None:
    ASRTask.main(cmd=cmd)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""ESPnet classification training with ILS classes registered: same flags as
``espnet2.bin.cls_train``.

The speaker-identification probe: ``frontend: frozen_ssl`` (``espnet_ils.model.probe_frontend``) weighs
the block outputs of a frozen model of ``espnet_ils.bin.ssl_train``, whose keys must match its
checkpoint exactly; checkpoints survive a kill (``espnet_ils.train.tasks.ILSCLSTask``).
"""

from typing import List, Optional

import espnet_ils  # noqa: F401  (registers our classes)
from espnet_ils.train.tasks import ILSCLSTask


def get_parser():
    return ILSCLSTask.get_parser()


def main(cmd: Optional[List[str]] = None) -> None:
    ILSCLSTask.main(cmd=cmd)


if __name__ == "__main__":
    main()

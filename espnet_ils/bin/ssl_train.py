#!/usr/bin/env python3
"""Pretrain with ESPnet's SSL task, ILS classes registered: same flags as ``espnet2.bin.ssl_train``.

The model is checked when built and checkpoints survive a kill (``espnet_ils.train.tasks.ILSSSLTask``).
"""

from typing import List, Optional

import espnet_ils  # noqa: F401  (registers our classes)
from espnet_ils.train.tasks import ILSSSLTask


def get_parser():
    return ILSSSLTask.get_parser()


def main(cmd: Optional[List[str]] = None) -> None:
    r"""SSL pretraining.

    Example:
        % python -m espnet_ils.bin.ssl_train --print_config --optim adamw
        % python -m espnet_ils.bin.ssl_train --config conf/tuning/train_ssl_ils_base_it2.yaml ...
    """
    ILSSSLTask.main(cmd=cmd)


if __name__ == "__main__":
    main()

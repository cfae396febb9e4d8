"""A tiny SSL model of the corpus's SSL config: its task arguments (``ssl_args``) and its directory
as ssl_train writes it (``write_ssl_dir``, conftest.py's fixture ``ssl_dir``)."""

import argparse
from pathlib import Path

import torch
import yaml
from espnet2.utils.yaml_no_alias_safe_dump import yaml_no_alias_safe_dump

from espnet_ils.train.tasks import ILSSSLTask
from helpers.corpus import SSL_CONFIG, write_corpus


def ssl_args(root: Path, **encoder_conf) -> argparse.Namespace:
    """``ILSSSLTask``'s arguments for ``SSL_CONFIG``, its encoder's options updated by
    ``encoder_conf``, with the token list of the corpus in ``root``."""
    config = dict(SSL_CONFIG, encoder_conf={**SSL_CONFIG["encoder_conf"], **encoder_conf})
    (root / "ssl.yaml").write_text(yaml.safe_dump(config))
    return ILSSSLTask.get_parser().parse_args(
        ["--config", str(root / "ssl.yaml"), "--token_list", str(root / "km_tokens.txt")]
    )


def write_ssl_dir(root: Path) -> Path:
    """The corpus and, beside it, an SSL model with random weights as ssl_train writes it:
    ``config.yaml`` and ``model.pth``."""
    write_corpus(root)
    args = ssl_args(root)
    model = ILSSSLTask.build_model(args)
    (root / "config.yaml").write_text(yaml_no_alias_safe_dump(vars(args)))
    torch.save(model.state_dict(), root / "model.pth")
    return root

"""An external LM fits the ASR model it is fused with: same token list, files present.

ESPnet's beam search adds the LM's score of token id ``i`` to the hypotheses that end in the ASR
model's token ``i``, and nothing compares the two lists: an LM of another list (letters in another
order, a list with one letter more) decodes without an error into wrong text, or fails with an
index error deep inside the search. ``espnet_ils.bin.asr_inference`` calls
:func:`check_lm_for_asr` before it builds anything.
"""

from pathlib import Path
from typing import List, Optional, Sequence, Union

import yaml

PathLike = Union[str, Path]


def config_token_list(config: PathLike) -> List[str]:
    """The ``token_list`` of an ESPnet training config: a list (an experiment's ``config.yaml``)
    or the path of a ``tokens.txt`` (a config written before training).

    Raises:
        FileNotFoundError: ``config`` or the token list it names does not exist.
        ValueError: ``config`` has no ``token_list``.
    """
    config = Path(config)
    if not config.is_file():
        raise FileNotFoundError(f"{config}: no such config")
    args = yaml.safe_load(config.read_text(encoding="utf-8"))
    token_list = args.get("token_list") if isinstance(args, dict) else None
    if isinstance(token_list, str):
        path = Path(token_list)
        if not path.is_file():
            raise FileNotFoundError(f"{config}: token_list {path}: no such file")
        return path.read_text(encoding="utf-8").splitlines()
    if not isinstance(token_list, list) or not token_list:
        raise ValueError(f"{config}: no token_list (is it an ESPnet training config?)")
    return [str(token) for token in token_list]


def first_difference(asr_tokens: Sequence[str], lm_tokens: Sequence[str]) -> str:
    """Where two token lists differ, in words (empty when they are the same).

    E.g. ``"at token 3: the LM has 'E' (14 tokens), the ASR model has 'C' (14 tokens)"``;
    ``no token`` past the end of the shorter list.
    """
    if list(asr_tokens) == list(lm_tokens):
        return ""
    index = next(
        (i for i, (a, b) in enumerate(zip(asr_tokens, lm_tokens)) if a != b),
        min(len(asr_tokens), len(lm_tokens)),
    )

    def token(tokens: Sequence[str]) -> str:
        return repr(tokens[index]) if index < len(tokens) else "no token"

    return (
        f"at token {index}: the LM has {token(lm_tokens)} ({len(lm_tokens)} tokens), "
        f"the ASR model has {token(asr_tokens)} ({len(asr_tokens)} tokens)"
    )


def check_same_token_list(asr_config: PathLike, lm_config: PathLike) -> None:
    """Raise unless the LM of ``lm_config`` has the token list of the ASR model of ``asr_config``.

    Raises:
        ValueError: Naming both configs and :func:`first_difference`.
    """
    difference = first_difference(config_token_list(asr_config), config_token_list(lm_config))
    if difference:
        raise ValueError(
            f"the LM's token list differs from the ASR model's {difference} (LM config "
            f"{lm_config}, ASR config {asr_config}); train the LM with the ASR model's tokens.txt "
            "(--token_list)"
        )


def check_lm_for_asr(
    asr_train_config: Optional[PathLike], lm_train_config: PathLike, lm_file: Optional[PathLike]
) -> None:
    """Check ``--lm_train_config`` and ``--lm_file`` of ``asr_inference`` against the ASR config.

    Args:
        asr_train_config: ``--asr_train_config``; ``None`` when the model comes by ``--model_tag``
            (then only the LM files are checked: the ASR config is not here yet).
        lm_train_config: ``--lm_train_config``, the LM experiment's ``config.yaml``.
        lm_file: ``--lm_file``, its checkpoint (e.g. ``valid.loss.ave.pth``).

    Raises:
        FileNotFoundError: A config or the LM file is missing, naming the option.
        ValueError: The token lists differ (see :func:`check_same_token_list`).
    """
    if lm_file is None or not Path(lm_file).is_file():
        raise FileNotFoundError(f"--lm_file {lm_file}: no such LM checkpoint")
    if not Path(lm_train_config).is_file():
        raise FileNotFoundError(f"--lm_train_config {lm_train_config}: no such LM config")
    if asr_train_config is not None:
        check_same_token_list(asr_train_config, lm_train_config)

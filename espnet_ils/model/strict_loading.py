"""Refuse partial weight loading into our modules.

ESPnet loads checkpoints with ``strict=False`` (``build_model_from_file``, ``--init_param``), so a
renamed or missing parameter would silently keep its random initial value. Our modules register a
``load_state_dict`` pre-hook that compares the keys offered under the module's prefix with the keys
the module expects and raises on any difference, whatever ``strict`` the caller passed.
"""

from typing import Any, Dict, List

import torch
from torch import nn


class StateDictKeyError(RuntimeError):
    """Weights offered to a module do not match its parameters and buffers."""


def _check_keys(
    module: nn.Module,
    state_dict: Dict[str, torch.Tensor],
    prefix: str,
    *args: Any,
) -> None:
    expected = {prefix + key for key in module.state_dict()}
    offered = {key for key in state_dict if key.startswith(prefix)}
    missing = sorted(expected - offered)
    unexpected = sorted(offered - expected)
    if missing or unexpected:
        raise StateDictKeyError(
            f"Loading weights into {type(module).__name__} at '{prefix}': "
            f"missing keys {_abbreviate(missing)}, unexpected keys {_abbreviate(unexpected)}. "
            "The checkpoint was written by a different model definition; convert it instead of "
            "loading it partially."
        )


def _abbreviate(keys: List[str], limit: int = 8) -> str:
    shown = ", ".join(keys[:limit])
    more = f" (+{len(keys) - limit} more)" if len(keys) > limit else ""
    return f"[{shown}]{more}"


def require_exact_keys(module: nn.Module) -> None:
    """Make ``module.load_state_dict`` (also as part of a parent) fail on missing or extra keys.

    Args:
        module: The module to guard; call this at the end of its ``__init__``.
    """
    module.register_load_state_dict_pre_hook(_check_keys)

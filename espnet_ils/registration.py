"""Add our classes to ESPnet's class choices (ESPnet has no plugin mechanism).

The task modules keep their choices in module-level ``ClassChoices`` dicts; a config can name our
classes once they are in those dicts, in every process that builds a model: training, inference,
and ``ESPnetSSLFrontend`` (which rebuilds the SSL model inside the ASR task). Only additions: a name
already taken by another class is an error, never overwritten.

Importing a task module costs seconds, and most of our tools (features, k-means, corpus) never
touch one. So ``install()`` registers into the task modules already imported and hooks the import
of the others: whoever imports ``espnet2.tasks.ssl`` or ``espnet2.tasks.asr`` after
``import espnet_ils`` finds our classes there.
"""

import importlib.abc
import importlib.machinery
import sys
from types import ModuleType
from typing import Optional

FRONTEND_NAME = "ils_cnn"
PREENCODER_NAME = "feature_projection"
ENCODER_NAME = "ils_transformer"
LOSS_NAME = "ils"
TASK_MODULES = ("espnet2.tasks.ssl", "espnet2.tasks.asr")


def _add(choices, name: str, cls: type) -> None:
    registered = choices.classes.get(name)
    if registered is not None and registered is not cls:
        raise RuntimeError(
            f"ESPnet's {choices.name} choice '{name}' is already taken by {registered}; "
            f"cannot register {cls}"
        )
    if choices.base_type is not None and not issubclass(cls, choices.base_type):
        raise TypeError(f"{cls} is not a {choices.base_type.__name__}")
    choices.classes[name] = cls


def register_into(task: ModuleType) -> None:
    """Register our classes into one task module (``espnet2.tasks.ssl`` or ``.asr``). Idempotent."""
    from espnet_ils.encoder import ILSTransformerEncoder
    from espnet_ils.frontend import ILSCNNFrontend
    from espnet_ils.preencoder import FeatureProjection

    _add(task.frontend_choices, FRONTEND_NAME, ILSCNNFrontend)
    _add(task.preencoder_choices, PREENCODER_NAME, FeatureProjection)
    _add(task.encoder_choices, ENCODER_NAME, ILSTransformerEncoder)
    if task.__name__ == "espnet2.tasks.ssl":
        from espnet_ils.loss import ILSLoss

        _add(task.loss_choices, LOSS_NAME, ILSLoss)
    else:
        from espnet2.asr.encoder.linear_encoder import LinearEncoder

        # ESPnet ships LinearEncoder but does not list it in the ASR task; with `input_layer: null`
        # it passes the SSL frontend's top block straight to CTC, the paper's fine-tuning model.
        _add(task.encoder_choices, "linear", LinearEncoder)


class _RegisterAfterImport(importlib.abc.MetaPathFinder):
    """Finds ESPnet's task modules as usual and registers our classes once one has executed."""

    def find_spec(self, name: str, path, target=None) -> Optional[importlib.machinery.ModuleSpec]:
        if name not in TASK_MODULES:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None or spec.loader is None:
            return None
        execute = spec.loader.exec_module

        def exec_module(module: ModuleType) -> None:
            execute(module)
            register_into(module)

        spec.loader.exec_module = exec_module
        return spec


def install() -> None:
    """Register into the task modules imported so far and hook the rest. Idempotent."""
    for name in TASK_MODULES:
        if name in sys.modules:
            register_into(sys.modules[name])
    if not any(isinstance(finder, _RegisterAfterImport) for finder in sys.meta_path):
        sys.meta_path.insert(0, _RegisterAfterImport())

"""Add our classes to ESPnet's class choices (ESPnet has no plugin mechanism).

ESPnet's task modules keep their choices in module-level ``ClassChoices`` (``frontend_choices``,
``encoder_choices``, ...). A config can name our classes once they are in there, in every process
that builds a model: training, inference, and ``ESPnetSSLFrontend``, which rebuilds the SSL model
inside the ASR task. Only additions: a name already taken by another class is an error.

When: importing ESPnet's tasks takes 10 s or more, ``import espnet_ils`` a tenth of a second, and
most of our tools (features, k-means, scoring) never build a model. So :func:`register` adds our
classes to the task modules already imported and, for the others, installs one import hook that
adds them as soon as Python has run such a module, before the importer gets it. Either way, after
``import espnet_ils``, ESPnet's tasks and ``Speech2Text`` know our classes, whichever was imported
first. (An explicit call would have to follow every ESPnet import, in our entry points and in
users' code; one forgotten fails only when a config is parsed.) A module is registered on its own:
``espnet2.tasks.asr`` imports ``espnet2.tasks.ssl`` while it runs.
"""

import importlib.abc
import importlib.machinery
import sys
from types import ModuleType
from typing import Optional, Sequence

FRONTEND_NAME = "ils_cnn"
PREENCODER_NAME = "feature_projection"
ENCODER_NAME = "ils_transformer"
LOSS_NAME = "ils"
TASK_MODULES = ("espnet2.tasks.ssl", "espnet2.tasks.asr", "espnet2.tasks.cls")


def _add(choices, name: str, cls: type) -> None:
    """Add ``cls`` as ``name`` to ``choices``, one of ESPnet's ``ClassChoices``."""
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
    """Register our classes into one task module (``espnet2.tasks.ssl``, ``.asr`` or ``.cls``).

    Idempotent. The ASR and classification tasks also get the frozen-probe front end and ESPnet's
    ``LinearEncoder`` (the probes' and the fine-tuning's pass-through encoder).
    """
    # Our classes import torch and ESPnet's modules: only here, never at ``import espnet_ils``.
    from espnet_ils.model.encoder import ILSTransformerEncoder
    from espnet_ils.model.frontend import ILSCNNFrontend
    from espnet_ils.model.preencoder import FeatureProjection

    _add(task.frontend_choices, FRONTEND_NAME, ILSCNNFrontend)
    _add(task.preencoder_choices, PREENCODER_NAME, FeatureProjection)
    _add(task.encoder_choices, ENCODER_NAME, ILSTransformerEncoder)
    if task.__name__ == "espnet2.tasks.ssl":
        from espnet_ils.model.loss import ILSLoss

        _add(task.loss_choices, LOSS_NAME, ILSLoss)
    else:
        from espnet2.asr.encoder.linear_encoder import LinearEncoder

        from espnet_ils.model.probe_frontend import PROBE_FRONTEND_NAME, FrozenSSLFrontend

        # ESPnet ships LinearEncoder but does not list it in these tasks; with `input_layer: null`
        # it passes the SSL frontend's output straight to CTC or to the classifier: the paper's
        # fine-tuning model, and SUPERB's linear probes.
        _add(task.encoder_choices, "linear", LinearEncoder)
        _add(task.frontend_choices, PROBE_FRONTEND_NAME, FrozenSSLFrontend)


class _RegisterAfterImport(importlib.abc.MetaPathFinder):
    """The import hook: finds a task module as Python would, and registers once it has run."""

    def find_spec(
        self, name: str, path: Optional[Sequence[str]], target: Optional[ModuleType] = None
    ) -> Optional[importlib.machinery.ModuleSpec]:
        if name not in TASK_MODULES:
            return None  # every other import goes on to Python's own finders, untouched
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None:
            return None
        run_module = spec.loader.exec_module

        def exec_module(module: ModuleType) -> None:
            run_module(module)  # ESPnet's module as it is
            register_into(module)

        spec.loader.exec_module = exec_module
        return spec


def register() -> None:
    """Register into the task modules imported so far and hook the import of the rest. Idempotent."""
    for name in TASK_MODULES:
        if name in sys.modules:
            register_into(sys.modules[name])
    if not any(isinstance(finder, _RegisterAfterImport) for finder in sys.meta_path):
        sys.meta_path.insert(0, _RegisterAfterImport())

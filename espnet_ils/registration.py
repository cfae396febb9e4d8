"""Add our classes to ESPnet's class choices (ESPnet has no plugin mechanism).

The task modules keep their choices in module-level ``ClassChoices`` dicts; a config can name our
classes once they are in those dicts, in every process that builds a model: training, inference,
and ``ESPnetSSLFrontend`` (which rebuilds the SSL model inside the ASR task).
Only additions: a name already taken by another class is an error, never overwritten.
"""

from espnet2.asr.encoder.linear_encoder import LinearEncoder
from espnet2.tasks import asr, ssl
from espnet2.train.class_choices import ClassChoices

from espnet_ils.encoder import ILSTransformerEncoder
from espnet_ils.frontend import ILSCNNFrontend
from espnet_ils.loss import ILSLoss
from espnet_ils.preencoder import FeatureProjection

FRONTEND_NAME = "ils_cnn"
PREENCODER_NAME = "feature_projection"
ENCODER_NAME = "ils_transformer"
LOSS_NAME = "ils"


def _add(choices: ClassChoices, name: str, cls: type) -> None:
    registered = choices.classes.get(name)
    if registered is not None and registered is not cls:
        raise RuntimeError(
            f"ESPnet's {choices.name} choice '{name}' is already taken by {registered}; "
            f"cannot register {cls}"
        )
    if choices.base_type is not None and not issubclass(cls, choices.base_type):
        raise TypeError(f"{cls} is not a {choices.base_type.__name__}")
    choices.classes[name] = cls


def register() -> None:
    """Register the ILS classes into the SSL and ASR tasks. Idempotent."""
    for task in (ssl, asr):
        _add(task.frontend_choices, FRONTEND_NAME, ILSCNNFrontend)
        _add(task.preencoder_choices, PREENCODER_NAME, FeatureProjection)
        _add(task.encoder_choices, ENCODER_NAME, ILSTransformerEncoder)
    _add(ssl.loss_choices, LOSS_NAME, ILSLoss)
    # ESPnet ships LinearEncoder but does not list it in the ASR task; with `input_layer: null` it
    # passes the SSL frontend's top block straight to CTC, the paper's fine-tuning model.
    _add(asr.encoder_choices, "linear", LinearEncoder)

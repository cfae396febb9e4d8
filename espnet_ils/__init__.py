"""ILS-SSL (intermediate layer supervision) for ESPnet.

Importing this package registers its classes into ESPnet's SSL and ASR tasks:

- frontend ``ils_cnn`` (:class:`espnet_ils.model.frontend.ILSCNNFrontend`)
- preencoder ``feature_projection`` (:class:`espnet_ils.model.preencoder.FeatureProjection`)
- encoder ``ils_transformer`` (:class:`espnet_ils.model.encoder.ILSTransformerEncoder`)
- SSL loss ``ils`` (:class:`espnet_ils.model.loss.ILSLoss`)
- ASR encoder ``linear`` (ESPnet's own ``LinearEncoder``, which 202511 does not list)

before or after ESPnet's task modules are imported (``espnet_ils.train.registration``), and keeps their
import offline (``espnet_ils.train.offline``). It imports neither torch nor ESPnet, does nothing else, and
is safe to run twice.
"""

from espnet_ils.train.offline import defer_g2p_en_import
from espnet_ils.train.registration import register

defer_g2p_en_import()  # before anything imports ESPnet's tasks
register()

__version__ = "0.1.0"

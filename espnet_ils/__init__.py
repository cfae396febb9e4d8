"""ILS-SSL (intermediate layer supervision) for ESPnet.

Importing this package registers its classes into ESPnet's SSL and ASR tasks:

- frontend ``ils_cnn`` (:class:`espnet_ils.frontend.ILSCNNFrontend`)
- preencoder ``feature_projection`` (:class:`espnet_ils.preencoder.FeatureProjection`)
- encoder ``ils_transformer`` (:class:`espnet_ils.encoder.ILSTransformerEncoder`)
- SSL loss ``ils`` (:class:`espnet_ils.loss.ILSLoss`)
- ASR encoder ``linear`` (ESPnet's own ``LinearEncoder``, which 202511 does not list)

Registration happens when ESPnet's task module is imported (at once if it already is), so tools
that never build a model do not pay for importing ESPnet's tasks. It does nothing else and is safe
to import twice.
"""

from espnet_ils.offline import defer_g2p_en_import

defer_g2p_en_import()

from espnet_ils.registration import install  # noqa: E402  (after the g2p_en placeholder)

install()

__version__ = "0.1.0"

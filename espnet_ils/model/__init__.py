"""The ILS-SSL model's parts: the waveform front end, the feature projection, the Transformer encoder
with its shared relative position bias, the multi-layer loss, and the probes' frozen front end.

Each is an ESPnet component (registered by :mod:`espnet_ils.train.registration`); none imports a task.
"""

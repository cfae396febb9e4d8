"""Builders and data the tests share, one module per subject; fixtures stay in conftest.py.

- ``shared_data``: the test data kept beside the repository (``../shared/data``) and the skip mark
  of the tests that need its LibriSpeech sample.
- ``models``: a tiny ILS encoder, a tiny SSL model config, and models saved with random weights.
- ``corpus``: the generated 8-utterance corpus, the tiny SSL and ASR training configs that train on
  it, and running ESPnet's entry points on it.
- ``librilight``: the LibriSpeech sample laid out as Libri-Light, with VAD JSONs.
- ``hubert``: tiny HuBERT models as torchaudio builds them and as fairseq checkpoints.
- ``stand_in_wget``: the ``wget`` that conftest.py's ``stand_in`` fixture puts on PATH.

The tests import them as ``helpers.<module>``: ``tests/`` is no package, so pytest's default
``prepend`` import mode puts it on ``sys.path`` before it imports conftest.py and the test files.
"""

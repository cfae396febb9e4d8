"""Builders and data the tests share, one module per subject; fixtures stay in conftest.py.

- ``shared_data``: the test data kept beside the repository (``../shared/data``) and the skip mark
  of the tests that need its LibriSpeech sample.
- ``scripts``: loading the scripts of bench/ and of the recipe's local/ by their path.
- ``models``: a tiny ILS encoder, a tiny SSL model config, and models saved with random weights.
- ``corpus``: the generated 8-utterance corpus, the tiny SSL and ASR training configs that train on
  it, and running ESPnet's entry points on it.
- ``ssl_model``: a tiny SSL model of that config, saved as ssl_train saves it.
- ``audio``: generated audio in a ``wav.scp`` and as a LibriSpeech subset.
- ``librilight``: the LibriSpeech sample laid out as Libri-Light, with VAD JSONs.
- ``hubert``: tiny HuBERT models as torchaudio builds them and as fairseq checkpoints.
- ``decoding``: the synthetic CTC log-probs, lexicon words and bigram of the decoding tests, and a
  tiny CTC model over their letters.
- ``lm``: the grammar texts and the letter Transformer LM of the LM tests.
- ``hub_cache``: a Hugging Face Hub cache holding a model repository, as ``snapshot_download``
  leaves it.
- ``stand_in_wget``: the ``wget`` that conftest.py's ``stand_in`` fixture puts on PATH.
- ``images``: a written PNG's pixel size.

No test file imports another test file or conftest.py. The tests import these modules as
``helpers.<module>``: ``tests/`` is no package, so pytest's default ``prepend`` import mode puts it
on ``sys.path`` before it imports conftest.py and the test files.
"""

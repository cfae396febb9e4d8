"""The embedded TTS mini corpus generator, recipe-local (run by local/make_mini_corpus.py)."""

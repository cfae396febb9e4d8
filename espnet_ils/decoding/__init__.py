"""From a fine-tuned model's CTC log-probs to scored words: lexicon search with a word n-gram,
rescoring with a letter Transformer LM, the LMs' training text, and WER/CER tables.
"""

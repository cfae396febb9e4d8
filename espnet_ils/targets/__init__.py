"""Where the k-means targets come from: MFCC or a model's block outputs, k-means fitted on them,
and every utterance's labels, from our models or the released ones (HuBERT, UniSpeech, torchaudio,
Hugging Face).
"""

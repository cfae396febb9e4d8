"""The recipe's files: 16 kHz audio, Kaldi-style data directories and keyed files, frame labels,
sharded jobs, training-set splits, and the markers that let a re-run trust what it finds.

The ground floor: these modules import neither the model nor ESPnet's tasks.
"""

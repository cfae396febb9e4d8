# shellcheck shell=bash
# Corpus locations. LibriSpeech: the folder holding train-clean-100/, dev-clean/, ... and, for the
# Libri-light limited fine-tuning sets, librispeech_finetuning/. When a subset is missing there,
# local/data.sh downloads it into this folder (needs network).
LIBRISPEECH=${LIBRISPEECH:-downloads/LibriSpeech}

# shellcheck shell=bash
# Corpus locations. LibriSpeech: the folder holding train-clean-100/, dev-clean/, ... and, for the
# Libri-light limited fine-tuning sets, librispeech_finetuning/. Only the subsets of the sets a run
# uses are needed; one missing here is downloaded into this folder, whatever it is called (needs
# network; see local/data.sh).
LIBRISPEECH=${LIBRISPEECH:-downloads/LibriSpeech}
# Libri-Light's unlabelled audio (sets unlab_small, unlab_medium, unlab_large, unlab_60k): the folder
# holding its subsets small/, medium/, large/ (<subset>/<speaker>/<book>/<file>.flac with a VAD
# <file>.json beside each). Only the subsets of the sets a run uses are needed; one missing here is
# downloaded into this folder, its md5 checked (needs network and, while it unpacks, twice its size:
# 35 GB, 321 GB, 3.05 TB; see local/data.sh).
LIBRILIGHT=${LIBRILIGHT:-downloads/librilight}
# LibriSpeech LM resources (OpenSLR resource 11): the folder holding 4-gram.arpa.gz,
# librispeech-lexicon.txt and librispeech-lm-norm.txt.gz; only the files a run uses are needed, one
# missing here is downloaded into this folder (needs network; see local/lm_resources.sh).
LIBRISPEECH_LM=${LIBRISPEECH_LM:-downloads/librispeech_lm}
# Forced phone alignments of the sets stage 7 scores (dev_clean, dev_other): the Montreal Forced
# Aligner's TextGrids (any layout; found by utterance id) or fairseq's frame-level .tsv files.
# Without them stage 7 is skipped, saying so; nothing is downloaded.
LIBRISPEECH_ALIGNMENTS=${LIBRISPEECH_ALIGNMENTS:-downloads/librispeech_alignments}
# The LARGE recipe's label model (run_large.sh): the released HuBERT BASE, whose block 9 gives the
# targets, and its k-means quantizer of that block (500 clusters, fitted on LibriSpeech 960 h), as
# fairseq's examples/hubert/README.md (commit 4a7835b) lists them:
#   https://dl.fbaipublicfiles.com/hubert/hubert_base_ls960.pt
#   https://dl.fbaipublicfiles.com/hubert/hubert_base_ls960_L9_km500.bin
# Nothing downloads them: run_large.sh stops, naming the missing file and its URL.
HUBERT_BASE=${HUBERT_BASE:-downloads/hubert/hubert_base_ls960.pt}
HUBERT_BASE_KMEANS=${HUBERT_BASE_KMEANS:-downloads/hubert/hubert_base_ls960_L9_km500.bin}

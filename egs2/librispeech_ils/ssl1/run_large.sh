#!/usr/bin/env bash
# ILS-SSL LARGE (paper section 4): pretraining on Libri-Light's unlab_60k (cut by its VAD in stage
# 1, LIBRILIGHT in db.sh) with targets from block 9 of the released HuBERT BASE and its k-means
# 500 quantizer (HUBERT_BASE, HUBERT_BASE_KMEANS in db.sh; there is no iteration 1, so stages 3
# and 4 are skipped), 600k updates of train_ssl_ils_large.yaml (24 pre-LN blocks, K = {9, 24});
# CTC fine-tuning on LibriSpeech's 960 h (train_asr_ctc_large_960h.yaml); decoding test_clean and
# test_other as run.sh does: CTC best path, the lexicon search with LibriSpeech's 4-gram (beam
# 1500) and the letter Transformer LM rescoring the 50 best, the LM trained on LibriSpeech's LM
# corpus and the train_960 transcripts (ils.sh's default when --train_set is Libri-Light's, which
# has none). Stage 7 scores the cluster quality per block against ${LIBRISPEECH_ALIGNMENTS}, as
# run.sh; the frozen probes are left out (their configs are BASE's, as the paper's table 2).
# Set for one node of 8 GPUs (./run_large.sh --ngpu 8); other GPU counts: README.md, "GPUs, nodes
# and the batch size". See ./ils.sh --help for every stage and option; options given here are
# passed on.
set -euo pipefail
. ./db.sh

# The files of db.sh that nothing here downloads, with where to get them (fairseq's
# examples/hubert/README.md).
declare -A url_of=(
    [HUBERT_BASE]=https://dl.fbaipublicfiles.com/hubert/hubert_base_ls960.pt
    [HUBERT_BASE_KMEANS]=https://dl.fbaipublicfiles.com/hubert/hubert_base_ls960_L9_km500.bin
)
for variable in HUBERT_BASE HUBERT_BASE_KMEANS; do
    if [ ! -f "${!variable}" ]; then
        echo "$0: ${variable} in db.sh is ${!variable}: no such file. Download ${url_of[${variable}]} there, or point ${variable} at a copy of it" >&2
        exit 1
    fi
done

args=(
    --corpus librispeech --train_set unlab_60k --valid_set dev_clean
    --label_model "${HUBERT_BASE}" --it2_layer 9
    --label_kmeans "${HUBERT_BASE_KMEANS}" --it2_n_clusters 500
    --label_batch_size 16  # utterances per forward pass of the label jobs (a GPU's batch)
    --it2_config conf/tuning/train_ssl_ils_large.yaml
    --num_splits_ssl 32    # a training process holds 1/32 of the 60k h of labels: 3.0 GiB instead of 48 (bench/README.md)
    --quality_sets "dev_clean dev_other" --phone_alignments "${LIBRISPEECH_ALIGNMENTS}"
    --probe_tasks ""
    --finetune_set train_960
    --asr_config conf/tuning/train_asr_ctc_large_960h.yaml
    --test_sets "test_clean test_other"
    --decode_modes "greedy ngram lm_rescore"
    --ngram_arpa "${LIBRISPEECH_LM}/4-gram.arpa.gz" --lexicon_beam_size 1500
    --lm_config conf/tuning/train_lm_transformer_librispeech.yaml
    --lm_train_corpus "${LIBRISPEECH_LM}/librispeech-lm-norm.txt.gz" --lm_max_chars 1000
)
./ils.sh "${args[@]}" "$@"

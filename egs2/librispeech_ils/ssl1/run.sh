#!/usr/bin/env bash
# ILS-SSL on LibriSpeech (paper section 4): BASE, iterations 1 and 2 on 960 h, CTC fine-tuning on
# Libri-light 10h (1h and 100h are one option away: --finetune_set finetune_1h --asr_config
# conf/tuning/train_asr_ctc_base_1h.yaml), decoding test_clean and test_other: CTC best path, the
# lexicon search with LibriSpeech's 4-gram (beam 1500 as the paper), and the letter Transformer LM
# trained on LibriSpeech's LM corpus rescoring the 50 best (--decode_modes lm_fusion fuses it in
# ESPnet's beam search instead: frames x letters per utterance, a GPU's job). The LM files come
# from ${LIBRISPEECH_LM} (db.sh), fetched in stage 1 when missing. Stage 7 (cluster quality per
# block, the paper's figure 2) scores dev_clean + dev_other against forced phone alignments in
# ${LIBRISPEECH_ALIGNMENTS} (db.sh; MFA TextGrids), and is skipped, saying so, without them.
# See ./ils.sh --help for every stage and option; options given here are passed on.
set -euo pipefail
. ./db.sh

./ils.sh \
    --corpus librispeech \
    --train_set train_960 \
    --valid_set dev_clean \
    --quality_sets "dev_clean dev_other" --phone_alignments "${LIBRISPEECH_ALIGNMENTS}" \
    --finetune_set finetune_10h \
    --probe_pr_train_set train_clean_100 --probe_sid_set train_clean_100 \
    --test_sets "test_clean test_other" \
    --it1_config conf/tuning/train_ssl_hubert_base_it1.yaml \
    --it2_config conf/tuning/train_ssl_ils_base_it2.yaml \
    --asr_config conf/tuning/train_asr_ctc_base_10h.yaml \
    --decode_modes "greedy ngram lm_rescore" \
    --ngram_arpa "${LIBRISPEECH_LM}/4-gram.arpa.gz" --lexicon_beam_size 1500 \
    --lm_config conf/tuning/train_lm_transformer_librispeech.yaml \
    --lm_train_corpus "${LIBRISPEECH_LM}/librispeech-lm-norm.txt.gz" --lm_max_chars 1000 \
    "$@"

#!/usr/bin/env bash
# ILS-SSL on LibriSpeech (paper section 4): BASE, iterations 1 and 2 on 960 h, CTC fine-tuning on
# Libri-light 10h (1h and 100h are one option away: --finetune_set finetune_1h --asr_config
# conf/tuning/train_asr_ctc_base_1h.yaml), decoding test_clean and test_other.
# See ./ils.sh --help for every stage and option; options given here are passed on.
set -euo pipefail

./ils.sh \
    --corpus librispeech \
    --train_set train_960 \
    --valid_set dev_clean \
    --finetune_set finetune_10h \
    --test_sets "test_clean test_other" \
    --it1_config conf/tuning/train_ssl_hubert_base_it1.yaml \
    --it2_config conf/tuning/train_ssl_ils_base_it2.yaml \
    --asr_config conf/tuning/train_asr_ctc_base_10h.yaml \
    "$@"

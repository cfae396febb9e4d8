#!/usr/bin/env bash
# ILS-SSL on the embedded mini corpus (synthesised here, no download): the whole pipeline on 2 CPU
# cores, ILS against the HuBERT baseline on the same labels, steps and seeds.
#   --profile ci    ~5 min of audio, a few steps per training stage (the CI recipe test)
#   --profile mini  ~1 h of audio, the demo (make demo): 400 (it1) and 500 (it2) pretraining steps
#                   of 10 s per model, 400 fine-tuning steps of 12 s, two trainings at once;
#                   decoded by best path, by the 3-gram lexicon search and by the letter LM's
#                   rescoring (RESULTS.md has the wall times per host; --decode_modes greedy saves
#                   about 4.5 min); no probes: after it, --stage 7 --stop_stage 10 --probe_tasks
#                   "pr sid" adds the frozen probes to its table
#   --profile small ~2 h of audio, 2000 pretraining steps of 12 s per model, 800 fine-tuning
#                   steps, the frozen probes: 70-80 min on 2 cores before the probes (about 10 min
#                   more, estimated from the mini run's probe steps), minutes on a GPU
# Other options are passed on to ils.sh, which accepts only its own (see ./ils.sh --help).
set -euo pipefail

profile=mini
args=()
while [ $# -gt 0 ]; do
    if [ "$1" = --profile ]; then
        if [ $# -lt 2 ] || [[ $2 == --* ]]; then
            echo "$0: --profile needs a value: ci, mini or small" >&2; exit 1
        fi
        profile=$2; shift 2
    else
        args+=("$1"); shift
    fi
done

common=(
    --corpus mini --train_set train --valid_set dev --finetune_set train_ft --test_sets test
    --it1_config conf/tuning/train_ssl_hubert_mini_it1.yaml
    --it2_config conf/tuning/train_ssl_ils_mini.yaml
    --asr_config conf/tuning/train_asr_ctc_mini.yaml --lm_config conf/tuning/train_lm_transformer_mini.yaml
    --baseline true --ngpu 0 --nj 2 --min_wav_duration 1.0
    --train_jobs 2  # two trainings of one thread at once: 1.5x the steps per second of one of two
    --inference_model valid.loss.best.pth  # at this size the CER of early epochs ties at 100%
    --quality_n_clusters 100  # the k of the iteration targets, so their PNMI compares with the blocks'
    --probe_pr_config conf/tuning/train_probe_pr_mini.yaml --probe_sid_config conf/tuning/train_probe_sid_mini.yaml
    --probe_pr_train_set train --probe_sid_set train  # phones of the whole aligned training set; its 12 voices
    --expdir "exp_${profile}" --dumpdir "dump_${profile}" --datadir "data_${profile}"
)
case ${profile} in
    ci)
        profile_args=(--mini_hours 0.08 --inference_nj 2 --it2_layer 2 --it1_n_clusters 100 --it2_n_clusters 100
            --quality_fit_hours 0.02 --kmeans_portion 0.5 --kmeans_n_init 1 --it2_seeds 0 --beam_size 2
            --decode_modes "greedy beam ngram lm_rescore" --ngram_order 3 --lexicon_beam_size 20
            --lexicon_lm_weights "0,2" --lexicon_word_scores 0
            --lm_args "--max_epoch 1 --num_iters_per_epoch 3" --rescore_beam_size 4
            --lm_weights 0.5 --lm_penalties 0 --probe_args "--max_epoch 1 --num_iters_per_epoch 3"
            --pretrain_args "--max_epoch 1 --num_iters_per_epoch 3 --batch_bins 64000"
            --asr_args "--max_epoch 1 --num_iters_per_epoch 3 --batch_bins 64000") ;;
    mini)
        # --inference_nj 1: a set of about 100 utterances takes 2 s to decode, a second shard a
        # process start of 7 s (two runs decode at once: --train_jobs)
        profile_args=(--mini_hours 1.0 --inference_nj 1 --it2_layer 2 --it1_n_clusters 100 --it2_n_clusters 100
            --quality_fit_hours 0.1 --kmeans_portion 0.5 --kmeans_n_init 3 --it2_seeds "0 1"
            --decode_modes "greedy ngram lm_rescore"
            --probe_tasks ""  # the probes would take the demo past 30 min: --stage 7 --stop_stage 10 --probe_tasks "pr sid" adds them
            --ngram_order 3 --lexicon_beam_size 50 --lexicon_lm_weights "1,2" --lexicon_word_scores "0,1"
            --rescore_beam_size 20 --lm_weights "0.5,1" --lm_penalties "0,1") ;;
    small)
        profile_args=(--mini_hours 2.0 --inference_nj 2 --it2_layer 2 --it1_n_clusters 100 --it2_n_clusters 100
            --quality_fit_hours 0.2 --kmeans_portion 0.5 --kmeans_n_init 5 --it2_seeds "0 1" --beam_size 10
            --decode_modes "greedy beam ngram lm_rescore" --ngram_order 3 --lexicon_beam_size 200
            --rescore_beam_size 20
            --pretrain_args "--max_epoch 20 --batch_bins 192000 --scheduler_conf warmup_steps_list=[0,200,2000]"
            --asr_args "--max_epoch 16 --num_iters_per_epoch 50 --batch_bins 192000 --scheduler_conf max_steps=800") ;;
    *) echo "$0: --profile ${profile}: ci, mini or small" >&2; exit 1 ;;
esac

./ils.sh "${common[@]}" "${profile_args[@]}" "${args[@]}"

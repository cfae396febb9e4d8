# shellcheck shell=bash disable=SC2154,SC2086
# (SC2154, SC2086: the options and names are ils.sh's, set before it sources this file; ${python}
# and the *_cmd runners are command lines, as in ils.sh)
# ils.sh's stages 4 and 6 (sourced): HuBERT-style pretraining of iteration 1, and of every
# iteration-2 run (the ILS model and, with --baseline true, the HuBERT baseline).

# SSL pretraining on a label set: ssl_pretrain <exp> <config> <labels tag> <seed>
ssl_pretrain() {
    local exp=$1 config=$2 labels_root=${dumpdir}/labels/$3 run_seed=$4 split=() data=()
    [ "${num_splits_ssl}" -eq 1 ] || split=(--option "num_splits_ssl=${num_splits_ssl}")
    if step_done "${exp}/.done" "pretraining ${exp}" --resumable true --option "seed=${run_seed}" \
            --option "pretrain_args=${pretrain_args}" "${split[@]}" --input "config=${config}" \
            --input "tokens=${labels_root}/tokens.txt" \
            --input "train_wav_scp=${dumpdir}/raw/${train_set}/wav.scp" \
            --input "train_labels=${labels_root}/${train_set}/text" \
            --input "valid_wav_scp=${dumpdir}/raw/${valid_set}/wav.scp" \
            --input "valid_labels=${labels_root}/${valid_set}/text"; then
        return
    fi
    training_set_args data "${num_splits_ssl}" "${dumpdir}/raw/${train_set}" "${labels_root}/${train_set}/text"
    data_args data valid "${dumpdir}/raw/${valid_set}" "${labels_root}/${valid_set}/text"
    log "pretraining ${exp} (config ${config}, labels ${labels_root}); log: ${exp}/train.log"
    launch_training "${exp}" valid.loss.best.pth espnet_ils.bin.ssl_train --config "${config}" \
        --token_list "${labels_root}/tokens.txt" --token_type word "${data[@]}" \
        --seed "${run_seed}" "${pretrain_argv[@]}"
    step_finished "${exp}/.done"
}

pretrain_run() {  # iteration-2 pretraining of run $1
    local run=$1 config
    config=$(ssl_config_of "${run}")
    if [ "${config}" != "${it2_config}" ]; then
        mkdir -p "$(dirname "${config}")"
        ${python} -m espnet_ils.bin.derive_baseline_config --config "${it2_config}" --output "${config}"
    fi
    log "Stage 6: iteration-2 ${run} pretraining -> $(ssl_exp_of "${run}")"
    ssl_pretrain "$(ssl_exp_of "${run}")" "${config}" "${it2_tag}" "${seed_of[${run}]}"
}

# Stage 4: iteration-1 HuBERT pretraining on the MFCC labels.
pretrain_iteration1() {
    log "Stage 4: iteration-1 HuBERT pretraining -> ${it1_exp}"
    require_dir "${dumpdir}/labels/${it1_tag}" "stage 3"
    ssl_pretrain "${it1_exp}" "${it1_config}" "${it1_tag}" "${seed}"
}

# Stage 6: iteration-2 pretraining of every run.
pretrain_iteration2() {
    require_dir "${dumpdir}/labels/${it2_tag}" "stage 5"
    each_run pretrain_run
}

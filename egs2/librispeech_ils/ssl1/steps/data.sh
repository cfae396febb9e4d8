# shellcheck shell=bash disable=SC2154,SC2086
# (SC2154, SC2086: the options and names are ils.sh's, set before it sources this file; ${python}
# and the *_cmd runners are command lines, as in ils.sh)
# ils.sh's stages 1 and 2 (sourced): the data directories, their formatted copies, and the check of
# what the later stages need of them.

# Stage 1: the data directories of every set of the run (local/data.sh), and LibriSpeech's LM files
# the decode modes use, fetched when missing.
prepare_data() {
    local resources=() file
    log "Stage 1: data preparation (corpus=${corpus}) -> ${datadir}/"
    local/data.sh --corpus "${corpus}" --datadir "${datadir}" --sets "${all_sets}" \
        --mini_hours "${mini_hours}" --seed "${seed}" --nj "${nj}" --audio_dir "${dumpdir}/librilight"
    [[ " ${decode_modes} " == *" ngram "* ]] && [ -n "${ngram_arpa}" ] && resources+=("${ngram_arpa}")
    # shellcheck disable=SC2206  # a list of paths
    [[ " ${decode_modes} " == *" lm_"* ]] && [ -z "${lm_exp}" ] && resources+=(${lm_train_corpus})
    for file in "${resources[@]}"; do
        if [ ! -f "${file}" ] && [ "${corpus}" = librispeech ] && lm_resource "${file}"; then
            local/lm_resources.sh --files "$(basename "${file}")"
        fi
    done
}

# Stage 2: every set formatted into ${dumpdir}/raw/<set> (duration filters: --min_wav_duration for
# the train set, --max_wav_duration for the training sets; shape files).
format_data() {
    local dset min max
    log "Stage 2: format ${datadir}/{${all_sets// /,}} -> ${dumpdir}/raw/"
    for dset in ${all_sets}; do require_dir "${datadir}/${dset}" "stage 1"; done
    for dset in ${all_sets}; do
        min=0; max=${max_wav_duration}
        [ "${dset}" = "${train_set}" ] && min=${min_wav_duration}
        [[ " ${test_sets} ${valid_set} " == *" ${dset} "* ]] && max=100000
        ${python} -m espnet_ils.bin.format_data_dir --src "${datadir}/${dset}" \
            --dst "${dumpdir}/raw/${dset}" --min_duration "${min}" --max_duration "${max}"
    done
}

# "check_data <first stage>": what the stages from <first stage> to --stop_stage need of the
# formatted sets (espnet_ils/recipe/data_requirements.py: transcripts, utterances per speaker, frames per
# k-means, parts of a split), checked at the end of stage 2 and before a run that starts later, so
# that a set which cannot serve a later stage stops the run now, named with what it lacks.
check_data() {
    ${python} -m espnet_ils.bin.check_data --raw_dir "${dumpdir}/raw" --stage "$1" \
        --stop_stage "${stop_stage}" "${run_args[@]}" --transcribed_set "${transcribed_set}" \
        --seed "${seed}" --it1_n_clusters "${it1_n_clusters}" --it2_n_clusters "${it2_n_clusters}" \
        --it2_layer_auto "$([ "${it2_layer_option}" = auto ] && echo true || echo false)" \
        --it2_encoder "${it2_encoder}" --quality_sets "${quality_sets}" \
        --quality_fit_hours "${quality_fit_hours}" --quality_n_clusters "${quality_n_clusters}" \
        --phone_alignments "${phone_alignments}" --probe_pr_train_set "${probe_pr_train_set}" \
        --probe_sid_set "${probe_sid_set}" --ngram_text "${ngram_text}" --lm_train_text "${lm_train_text}" \
        || die "the data cannot serve stages $1-${stop_stage} (see the errors above)"
}

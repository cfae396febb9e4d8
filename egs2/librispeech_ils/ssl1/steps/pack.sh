# shellcheck shell=bash disable=SC2154,SC2086
# (SC2154, SC2086: the options and names are ils.sh's, set before it sources this file; ${python}
# and the *_cmd runners are command lines, as in ils.sh)
# ils.sh's stages 11 and 12 (sourced): packing the fine-tuned models, and sharing them on the
# Hugging Face Hub.

# Stage 11: each fine-tuned model packed with its SSL model and RESULTS.md into a zip for Speech2Text.
pack_runs() {
    local run asr_exp ssl_exp zip
    for run in ${runs}; do
        asr_exp=$(asr_exp_of "${run}") ssl_exp=$(ssl_exp_of "${run}")
        zip=${asr_exp}/packed/$(basename "${asr_exp}").zip
        if step_done "${zip}.done" "Stage 11: packing ${zip}" --option "checkpoint=${inference_model}" \
                --input "asr_model=${asr_exp}/${inference_model}" --input "asr_config=${asr_exp}/config.yaml" \
                --input "ssl_model=${ssl_exp}/valid.loss.best.pth" --input "results=${expdir}/RESULTS.md"; then
            continue
        fi
        log "Stage 11: packing ${asr_exp} with ${ssl_exp} -> ${zip}"
        ${python} -m espnet_ils.bin.pack_model --asr_exp "${asr_exp}" --checkpoint "${inference_model}" \
            --outpath "${zip}" --extra "${expdir}/RESULTS.md"
        step_finished "${zip}.done"
    done
}

# Stage 12's model cards show the scoring of stage 10; the datasets name the corpora trained on.
# hub_folder_run <run> <repo>: the run's packed model -> <asr exp>/hub, uploaded to <repo> (--hf_upload).
hub_folder_run() {
    local asr_exp zip hub repo=$2 inputs=() card=() dset
    asr_exp=$(asr_exp_of "$1")
    zip=${asr_exp}/packed/$(basename "${asr_exp}").zip hub=${asr_exp}/hub
    [ -f "${zip}.done" ] || die "${zip} is not packed: run stage 11 first"
    inputs=(--input "zip=${zip}" --input "results=${expdir}/RESULTS.md")
    card=(--results "${expdir}/RESULTS.md" --dataset "${corpus}" --license "${hf_license}")
    [[ ${train_set} == unlab_* ]] && card+=(--dataset libri-light)
    for dset in ${test_sets}; do
        if [ -f "${expdir}/comparison_${dset}.md" ]; then
            inputs+=(--input "comparison_${dset}=${expdir}/comparison_${dset}.md")
            card+=(--results "${expdir}/comparison_${dset}.md")
        fi
    done
    if ! step_done "${hub}.done" "Stage 12: Hub folder ${hub}" --option "repo=${repo}" \
            --option "license=${hf_license}" "${inputs[@]}"; then
        log "Stage 12: ${zip} -> ${hub} (the files of ${repo} and their model card)"
        ${python} -m espnet_ils.bin.hub_folder --zip "${zip}" --outdir "${hub}" --repo "${repo}" "${card[@]}"
        step_finished "${hub}.done"
    fi
    if [ "${hf_upload}" = true ]; then
        log "Stage 12: uploading ${hub} to https://huggingface.co/${repo}"
        ${python} -m espnet_ils.bin.upload_model --folder "${hub}" --repo "${repo}"
    else
        log "Stage 12: ${hub} not uploaded (--hf_upload false)"
    fi
}

# Stage 12: each run's Hub folder, uploaded to --hf_repo (one repository per run when there are
# several: <repo>_<run>); skipped without --hf_repo.
share_runs() {
    local run run_list=()
    if [ -z "${hf_repo}" ]; then
        log "Stage 12: skipped: no --hf_repo given"
        return
    fi
    [ -f "${expdir}/.scoring.done" ] || die "${expdir}/RESULTS.md is not scored: run stage 10 first"
    read -r -a run_list <<< "${runs}"
    for run in "${run_list[@]}"; do
        if [ "${#run_list[@]}" -eq 1 ]; then hub_folder_run "${run}" "${hf_repo}"
        else hub_folder_run "${run}" "${hf_repo}_${run}"; fi
    done
}

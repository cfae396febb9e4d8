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
# hub_folder_run <run> <repo>: the run's packed model -> <asr exp>/hub, with transformers_export its
# transformers export -> <asr exp>/hub_transformers; uploaded to <repo> and <repo>-transformers
# (--hf_upload).
hub_folder_run() {
    local asr_exp zip hub transformers_dir repo=$2 inputs=() card=() upload=() targets dset
    asr_exp=$(asr_exp_of "$1")
    zip=${asr_exp}/packed/$(basename "${asr_exp}").zip hub=${asr_exp}/hub transformers_dir=${asr_exp}/hub_transformers
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
    upload=(--folder "${hub}" --repo "${repo}") targets="${hub} -> https://huggingface.co/${repo}"
    if [ "${transformers_export}" = true ]; then
        transformers_export_run "${hub}" "${transformers_dir}" "${repo}" "${card[@]}"
        upload+=(--transformers_dir "${transformers_dir}")
        targets+=", ${transformers_dir} -> https://huggingface.co/${repo}-transformers"
    fi
    if [ "${hf_upload}" = true ]; then
        log "Stage 12: uploading ${targets}"
        ${python} -m espnet_ils.bin.upload_model "${upload[@]}"
    else
        log "Stage 12: not uploaded (--hf_upload false): ${targets}"
    fi
}

# transformers_export_run <hub> <dir> <repo> <card option>...: the ESPnet model of the Hub folder
# <hub> exported to transformers (python -m espnet_ils.bin.export_transformers: WavLMForCTC, its
# tokenizer and processor) -> <dir>, then the export's model card for <repo>-transformers
# (hub_folder --transformers_dir, which leaves <hub> as it is). Redone when <hub> was.
transformers_export_run() {
    local hub=$1 transformers_dir=$2 repo=$3 export_path; shift 3
    step_done "${transformers_dir}.done" "Stage 12: transformers export ${transformers_dir}" --input "hub=${hub}.done" && return 0
    log "Stage 12: ${hub} -> ${transformers_dir} (transformers' WavLMForCTC, tokenizer and processor, and their model card)"
    rm -rf "${transformers_dir}"
    export_path=$(cd "$(dirname "${transformers_dir}")" && pwd)/$(basename "${transformers_dir}")
    # The Hub folder's configs name its files (the SSL model) by their paths relative to its root,
    # as espnet_model_zoo resolves them in a Hub snapshot: exported from there.
    (cd "${hub}" && ${python} -m espnet_ils.bin.export_transformers --model_dir . --output_dir "${export_path}") \
        || die "Stage 12: the transformers export of ${hub} failed (see above; --hf_transformers false shares the ESPnet model only)"
    ${python} -m espnet_ils.bin.hub_folder --repo "${repo}" "$@" --transformers_dir "${transformers_dir}"
    step_finished "${transformers_dir}.done"
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

# shellcheck shell=bash disable=SC2154,SC2086
# (SC2154, SC2086: the options and names are ils.sh's, set before it sources this file; ${python}
# and the *_cmd runners are command lines, as in ils.sh)
# ils.sh's stages 11 and 12 (sourced): packing the fine-tuned models, and their upload.

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

# Stage 12: the packed zips uploaded to --hf_repo (skipped without it).
upload_runs() {
    local run zip
    if [ -z "${hf_repo}" ]; then
        log "Stage 12: skipped: no --hf_repo given"
        return
    fi
    for run in ${runs}; do
        zip=$(asr_exp_of "${run}")/packed/$(basename "$(asr_exp_of "${run}")").zip
        log "Stage 12: uploading ${zip} to ${hf_repo}"
        ${python} -m espnet_ils.bin.upload_model --zip "${zip}" --repo "${hf_repo}"
    done
}

# shellcheck shell=bash disable=SC2154,SC2086
# (SC2154, SC2086: the options and names are ils.sh's, set before it sources this file; ${python}
# and the *_cmd runners are command lines, as in ils.sh)
# ils.sh's stage 10 (sourced): scoring, and the ILS vs HuBERT comparison.

# Stage 10: WER and CER of every decoding into ${expdir}/RESULTS.md (with the LMs' perplexities),
# and with --baseline true the ILS vs HuBERT table of each test set.
score_runs() {
    local decode_dirs=() inputs=() dset run mode dir quality probes report
    local -A probe_paths=()
    for dset in ${test_sets}; do inputs+=(--input "ref_${dset}=${dumpdir}/raw/${dset}/text"); done
    for run in ${runs}; do
        for mode in ${decode_modes}; do
            for dset in ${test_sets}; do
                dir=$(asr_exp_of "${run}")/decode_${mode}/${dset}
                [ -f "${dir}.done" ] || die "${dir} is not decoded: run stage 9 first"
                decode_dirs+=("${dir}")
                inputs+=(--input "hyp_${run}_${mode}_${dset}=${dir}/text")
            done
        done
    done
    load_probe_layout probe_paths
    quality=${expdir}/cluster_quality_${it2_tag}/cluster_quality.tsv probes=${probe_paths[results]}
    [ "${baseline}" = true ] && [ -f "${quality}" ] && inputs+=(--input "cluster_quality=${quality}")
    [ "${baseline}" = true ] && [ -f "${probes}" ] && inputs+=(--input "probes=${probes}")
    if step_done "${expdir}/.scoring.done" "Stage 10: scoring into ${expdir}" --option "runs=${runs}" \
            --option "baseline=${baseline}" "${inputs[@]}"; then
        return
    fi
    log "Stage 10: scoring -> ${expdir}/RESULTS.md"
    ${python} -m espnet_ils.bin.score --ref_dir "${dumpdir}/raw" --results "${expdir}/RESULTS.md" "${decode_dirs[@]}"
    # The LMs' fit to the test sets, next to the error rates they decode to: an LM built from
    # text close to the test set (the mini corpus's) flatters them.
    for report in "${ngram_dir}/perplexity.tsv" "${lm_dir}/perplexity.tsv"; do
        if [ -f "${report}" ]; then
            { printf '\n## %s\n\n' "${report}"; sed 's/^/    /' "${report}"; } >> "${expdir}/RESULTS.md"
        fi
    done
    if [ "${baseline}" = true ]; then
        for dset in ${test_sets}; do
            log "Stage 10: ILS vs HuBERT on ${dset} -> ${expdir}/comparison_${dset}.md"
            # shellcheck disable=SC2086  # one argument per mode
            ${python} -m espnet_ils.bin.compare_runs --runs "${expdir}/runs.tsv" --test_set "${dset}" \
                --decode_modes ${decode_modes} --output "${expdir}/comparison_${dset}.md" \
                --cluster_quality "${quality}" --probes "${probes}"
        done
    fi
    step_finished "${expdir}/.scoring.done"
}

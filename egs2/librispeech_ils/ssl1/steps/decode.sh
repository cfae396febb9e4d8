# shellcheck shell=bash disable=SC2154,SC2086
# (SC2154, SC2086: the options and names are ils.sh's, set before it sources this file; ${python}
# and the *_cmd runners are command lines, as in ils.sh)
# ils.sh's stage 9 (sourced): decoding every run's fine-tuned model in each of --decode_modes.

# decode_shards <wav.scp>: --inference_nj, or fewer when the set has fewer utterances (each shard is
# a process that loads the model).
decode_shards() {
    local num_utts
    num_utts=$(wc -l < "$1")
    echo $(( inference_nj < num_utts ? inference_nj : num_utts ))
}

# The keys of a wav.scp in <shards> decoding shards (decode_shards):
# split_keys <wav.scp> <dir> <shards> -> <dir>/split/keys.JOB for JOB=1..<shards> (<dir> is emptied first).
split_keys() {
    local job
    rm -rf "$2"; mkdir -p "$2/split"
    ${python} -m espnet2.bin.split_scps --scps "$1" --num_splits "$3" --output_dir "$2/split"
    for job in $(seq 1 "$3"); do  # ESPnet numbers the splits from 0
        mv "$2/split/$(basename "$1")/split.$((job - 1))" "$2/split/keys.${job}"
    done
}

# The CTC log-probs of one set under one model, computed once and shared by the greedy, ngram and
# lm_* modes: dump_logprobs <scps> <inputs> <asr exp> <set> [<checkpoint> <wav.scp>] ->
# <asr exp>/ctc_logprobs/<set>/feats.JOB.{ark,scp} (by default of --inference_model and the formatted
# set's wav.scp; the phone probe passes its own), in decode_shards shards. Each shard skips itself
# when its marker holds the same wav.scp, config and model checksums; within one run of a stage a
# set is checked once. Fills the arrays named <scps> (the shards) and <inputs> (their markers, for
# the callers' own markers).
declare -A logprobs_checked=()
dump_logprobs() {
    local -n logprob_scps=$1 logprob_inputs=$2
    local asr_exp=$3 dset=$4 out=$3/ctc_logprobs/$4 job shards
    local model=${5:-$3/${inference_model}} wav_scp=${6:-${dumpdir}/raw/$4/wav.scp}
    shards=$(decode_shards "${wav_scp}")
    if [ -z "${logprobs_checked[${out}]:-}" ]; then
        ${decode_cmd} JOB=1:"${shards}" "${out}/log/dump.JOB.log" \
            ${python} -m espnet_ils.bin.dump_ctc_logprobs --asr_train_config "${asr_exp}/config.yaml" \
                --asr_model_file "${model}" --wav_scp "${wav_scp}" \
                --outdir "${out}" --nj "${shards}" --job JOB
        logprobs_checked[${out}]=1
    fi
    logprob_scps=() logprob_inputs=()
    for job in $(seq 1 "${shards}"); do
        logprob_scps+=("${out}/feats.${job}.scp")
        logprob_inputs+=(--input "logprobs=${out}/.done.${job}")
    done
}

# Decode mode beam, through ESPnet's Speech2Text: decode_beam <asr exp> <set>
decode_beam() {
    local asr_exp=$1 dset=$2 dir=$1/decode_beam/$2 shards
    if step_done "${dir}.done" "Stage 9: decoding ${dir}" --option "beam_size=${beam_size}" \
            --input "model=${asr_exp}/${inference_model}" --input "config=${asr_exp}/config.yaml" \
            --input "wav_scp=${dumpdir}/raw/${dset}/wav.scp"; then
        return
    fi
    log "Stage 9: decoding ${dumpdir}/raw/${dset} with ${asr_exp} (beam ${beam_size}) -> ${dir}"
    shards=$(decode_shards "${dumpdir}/raw/${dset}/wav.scp")
    split_keys "${dumpdir}/raw/${dset}/wav.scp" "${dir}" "${shards}"
    ${decode_cmd} JOB=1:"${shards}" "${dir}/log/decode.JOB.log" \
        ${python} -m espnet_ils.bin.asr_inference --ngpu 0 --batch_size 1 \
            --data_path_and_name_and_type "${dumpdir}/raw/${dset}/wav.scp,speech,sound" \
            --key_file "${dir}/split/keys.JOB" \
            --asr_train_config "${asr_exp}/config.yaml" --asr_model_file "${asr_exp}/${inference_model}" \
            --output_dir "${dir}/output.JOB" --ctc_weight 1.0 --lm_weight 0.0 --beam_size "${beam_size}"
    ${python} -m espnet_ils.bin.merge_decoding --decode_dir "${dir}" --nj "${shards}" --output "${dir}/text"
    step_finished "${dir}.done"
}

# Decode mode greedy: the CTC best path of each utterance. decode_greedy <asr exp> <set>
decode_greedy() {
    local asr_exp=$1 dset=$2 dir=$1/decode_greedy/$2 scps=() inputs=()
    dump_logprobs scps inputs "${asr_exp}" "${dset}"
    if step_done "${dir}.done" "Stage 9: decoding ${dir}" --input "tokens=${token_dir}/tokens.txt" \
            "${inputs[@]}"; then
        return
    fi
    log "Stage 9: best-path decoding of ${dset} with ${asr_exp} -> ${dir}"
    ${python} -m espnet_ils.bin.ctc_decode greedy --logprobs_scp "${scps[@]}" \
        --token_list "${token_dir}/tokens.txt" --output "${dir}/text"
    step_finished "${dir}.done"
}

# Decode modes ngram, lm_fusion and lm_rescore for one fine-tuned model: the LM weight and the
# bonus (ngram: per word, lm_*: per letter) chosen on the valid set from the grid
# (decode_<mode>/tune_<valid set>/{wer_grid.tsv,best.json}), the test sets decoded with them.
# decode_tuned <asr exp> <mode>
decode_tuned() {
    local asr_exp=$1 mode=$2 dset dir marker tune_dir=$1/decode_$2/tune_${valid_set} search grid inputs
    case ${mode} in
        ngram)
            search=(--search lexicon --lexicon "${ngram_dir}/lexicon.txt" --lm "${ngram_lm}"
                --beam_size "${lexicon_beam_size}" --beam_threshold "${lexicon_beam_threshold}")
            grid=(--lm_weights "${lexicon_lm_weights}" --word_scores="${lexicon_word_scores}")
            inputs=(--input "lexicon=${ngram_dir}/lexicon.txt" --input "ngram=${ngram_dir}/.done") ;;
        lm_fusion | lm_rescore)
            search=(--search "${mode}" --lm_train_config "${lm_dir}/config.yaml"
                --lm_file "${lm_dir}/${lm_inference_model}" --beam_size
                "$(if [ "${mode}" = lm_fusion ]; then echo "${fusion_beam_size}"; else echo "${rescore_beam_size}"; fi)")
            grid=(--lm_weights "${lm_weights}" --penalties="${lm_penalties}")
            inputs=(--input "lm=${lm_dir}/${lm_inference_model}" --input "lm=${lm_dir}/config.yaml") ;;
    esac
    inputs+=(--option "search=${search[*]}" --option "grid=${grid[*]}"
        --input "ref=${dumpdir}/raw/${valid_set}/text")
    # One process tunes on the valid set and decodes the test sets (the search and LM load once);
    # it runs when any of their markers is out of date, and only those markers are rewritten.
    local tests=() pending=() tune_scps=() tune_logprobs=() scps inputs_of_set
    dump_logprobs tune_scps tune_logprobs "${asr_exp}" "${valid_set}"
    # (named apart from each test set's: an input's files must have distinct names)
    local tune_inputs=("${inputs[@]}" "${tune_logprobs[@]/#logprobs=/valid_logprobs=}")
    step_done "${tune_dir}.done" "Stage 9: ${mode}: LM weight x bonus on ${valid_set}" \
        "${tune_inputs[@]}" || pending+=("${tune_dir}.done")
    for dset in ${test_sets}; do
        dir=${asr_exp}/decode_${mode}/${dset}
        scps=() inputs_of_set=()
        dump_logprobs scps inputs_of_set "${asr_exp}" "${dset}"
        tests+=(--decode "${dir}/text" "${scps[@]}")
        step_done "${dir}.done" "Stage 9: decoding ${dir}" "${tune_inputs[@]}" "${inputs_of_set[@]}" \
            || pending+=("${dir}.done")
    done
    [ "${#pending[@]}" -gt 0 ] || return 0
    log "Stage 9: ${mode}: ${grid[*]} on ${valid_set} -> ${tune_dir}, then ${test_sets} with the best pair"
    ${decode_cmd} "${tune_dir}/log/tune_and_decode.log" ${python} -m espnet_ils.bin.ctc_decode tune \
        --logprobs_scp "${tune_scps[@]}" --ref_text "${dumpdir}/raw/${valid_set}/text" \
        --token_list "${token_dir}/tokens.txt" "${search[@]}" "${grid[@]}" --outdir "${tune_dir}" "${tests[@]}"
    log "Stage 9: ${mode}: chosen on ${valid_set}: $(tr -d ' \n' < "${tune_dir}/best.json")"
    for marker in "${pending[@]}"; do step_finished "${marker}"; done
}

decode_run() {  # every decode mode of run $1's fine-tuned model
    local asr_exp mode dset
    asr_exp=$(asr_exp_of "$1")
    [ -f "${asr_exp}/${inference_model}" ] || die "${asr_exp}/${inference_model} missing: run stage 8 first"
    for mode in ${decode_modes}; do
        case ${mode} in
            greedy) for dset in ${test_sets}; do decode_greedy "${asr_exp}" "${dset}"; done ;;
            beam) for dset in ${test_sets}; do decode_beam "${asr_exp}" "${dset}"; done ;;
            ngram)
                [ -f "${ngram_dir}/.done" ] || die "${ngram_dir} is not built: run stage 8 first"
                decode_tuned "${asr_exp}" ngram ;;
            lm_fusion | lm_rescore)
                [ -f "${lm_dir}/${lm_inference_model}" ] || die "${lm_dir}/${lm_inference_model} missing: run stage 8 first"
                decode_tuned "${asr_exp}" "${mode}" ;;
        esac
    done
}

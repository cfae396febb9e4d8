# shellcheck shell=bash disable=SC2154,SC2086
# (SC2154, SC2086: the options and names are ils.sh's, set before it sources this file; ${python}
# and the *_cmd runners are command lines, as in ils.sh)
# ils.sh's analysis of the pretrained models (sourced): the cluster quality per block (stage 5 with
# --it2_layer auto, stage 7) and the frozen probes (stage 7). The probes decode with the shards
# and log-probs of steps/decode.sh.

# "prepare_alignments <inputs> <what> <sets>": phone alignments of <sets> in
# dump/raw/<set>/phone_alignment: the corpus's own (mini), or imported from --phone_alignments
# (cheap and deterministic: redone on every run; the markers of the steps that read them key on
# their content). Fills the array named <inputs> (each set's wav.scp and alignment, for the callers'
# markers); fails, logging why, when a set has none.
prepare_alignments() {
    local -n alignment_inputs=$1
    local what=$2 sets=$3 dset alignment unaligned=""
    for dset in ${sets}; do
        require_dir "${dumpdir}/raw/${dset}" "stage 2"
        alignment=${dumpdir}/raw/${dset}/phone_alignment
        if [ -n "${phone_alignments}" ] && [ -e "${phone_alignments}" ]; then
            log "${what}: phone alignments of ${dset} from ${phone_alignments} -> ${alignment}"
            ${python} -m espnet_ils.bin.import_alignments --source "${phone_alignments}" \
                --data_dir "${dumpdir}/raw/${dset}" --output "${alignment}" \
                || die "${what}: the phone alignments of ${dset} did not import (see above)"
        fi
        if [ -f "${alignment}" ]; then
            alignment_inputs+=(--input "wav_scp_${dset}=${dumpdir}/raw/${dset}/wav.scp" --input "alignment_${dset}=${alignment}")
        else
            unaligned+=" ${dset}"
        fi
    done
    if [ -n "${phone_alignments}" ] && [ ! -e "${phone_alignments}" ]; then
        log "${what}: no phone alignments: --phone_alignments ${phone_alignments} does not exist (put the Montreal Forced Aligner's TextGrids of${unaligned} there, or fairseq's frame-level .tsv files; LibriSpeech: LIBRISPEECH_ALIGNMENTS in db.sh)"
        return 1
    elif [ -n "${unaligned}" ]; then
        log "${what}: no phone alignments of${unaligned} (give --phone_alignments)"
        return 1
    fi
}

# "layer_quality <what> <outdir> NAME=EXPDIR...": cluster quality per block of the models, k-means
# per block fitted on --quality_fit_hours of --train_set and scored on --quality_sets (the paper's
# figure 2) -> <outdir>/cluster_quality.{tsv,png}; fails, logging why, without alignments. (Its
# callers test its status, which turns set -e off inside it: errors stop the run through die.)
layer_quality() {
    local what=$1 out=$2 spec models=() inputs=() quality_dirs=() dset; shift 2
    prepare_alignments inputs "${what}" "${quality_sets}" || { log "${what}: cluster quality skipped"; return 1; }
    for dset in ${quality_sets}; do quality_dirs+=(--score_dir "${dumpdir}/raw/${dset}"); done
    inputs+=(--input "fit_wav_scp=${dumpdir}/raw/${train_set}/wav.scp")
    for spec in "$@"; do
        models+=(--model "${spec}")
        inputs+=(--input "model_${spec%%=*}=${spec#*=}/valid.loss.best.pth" --input "model_${spec%%=*}=${spec#*=}/config.yaml")
    done
    step_done "${out}/.done" "${what}: cluster quality ${out}" --option "models=$*" \
        --option "n_clusters=${quality_n_clusters}" --option "fit_hours=${quality_fit_hours}" \
        --option "seed=${seed}" "${inputs[@]}" && return 0
    log "${what}: cluster quality per block, k-means fitted on ${quality_fit_hours} h of ${train_set}, scored on ${quality_sets} -> ${out}/cluster_quality.{tsv,png}"
    solo ${train_cmd} "${out}/log/cluster_quality.log" ${python} -m espnet_ils.bin.cluster_quality layers \
        "${models[@]}" --checkpoint valid.loss.best.pth "${quality_dirs[@]}" \
        --fit_dir "${dumpdir}/raw/${train_set}" --fit_hours "${quality_fit_hours}" \
        --n_clusters "${quality_n_clusters}" --seed "${seed}" --outdir "${out}" \
        || die "${what}: cluster quality failed; log: ${out}/log/cluster_quality.log"
    step_finished "${out}/.done"
}

# The frozen probes of stage 7 (espnet_ils.analysis.probes) read their paths from the probe layout
# that analyse_runs loads (load_probe_layout), passed on by the name of its array (<layout>).

# "prepare_probe_data <layout> <ready>": phone transcripts (from the phone alignments) of the pr
# probe's sets, and the speakers' train / valid / test split of the sid probe's set. Sets the
# variable named <ready> to the tasks of --probe_tasks whose data is there (pr is skipped, saying
# so, without phone alignments, as the cluster quality is).
prepare_probe_data() {
    local -n data_paths=$1 probes_ready=$2
    local pr_sets="${data_paths[pr/sets]:-}" sets=() dset utt2spk inputs=()
    probes_ready=""
    if [[ " ${probe_tasks} " == *" pr "* ]]; then
        if prepare_alignments inputs "Stage 7" "${pr_sets}"; then
            for dset in ${pr_sets}; do sets+=(--set "${dumpdir}/raw/${dset}" "${data_paths[pr/set/${dset}]}"); done
            if ! step_done "${data_paths[pr/done]}" "Stage 7: phone-recognition probe data ${data_paths[pr/data]}" \
                    --option "sets=${pr_sets}" "${inputs[@]}"; then
                log "Stage 7: phone transcripts of ${pr_sets} -> ${data_paths[pr/data]}"
                ${python} -m espnet_ils.bin.prepare_probes pr "${sets[@]}" --token_list "${data_paths[pr/tokens]}" \
                    || die "Stage 7: the phone transcripts failed (see above)"
                step_finished "${data_paths[pr/done]}"
            fi
            probes_ready+=" pr"
        else
            log "Stage 7: pr probe skipped: it needs the phone alignments of ${pr_sets}"
        fi
    fi
    if [[ " ${probe_tasks} " == *" sid "* ]]; then
        utt2spk=${dumpdir}/raw/${probe_sid_set}/utt2spk
        [ -f "${utt2spk}" ] || die "Stage 7: ${utt2spk} missing: run stage 2 (the sid probe's set, --probe_sid_set)"
        if ! step_done "${data_paths[sid/done]}" "Stage 7: speaker-identification probe data ${data_paths[sid/data]}" \
                --option "held_out=${probe_held_out}" --option "seed=${seed}" --input "utt2spk=${utt2spk}" \
                --input "wav_scp=${dumpdir}/raw/${probe_sid_set}/wav.scp"; then
            sets=()
            for dset in ${data_paths[sid/sets]}; do sets+=(--split "${dset}" "${data_paths[sid/set/${dset}]}"); done
            log "Stage 7: the utterances of ${probe_sid_set} split per speaker into ${data_paths[sid/sets]} -> ${data_paths[sid/data]}"
            ${python} -m espnet_ils.bin.prepare_probes sid --src "${dumpdir}/raw/${probe_sid_set}" "${sets[@]}" \
                --token_list "${data_paths[sid/tokens]}" --held_out "${probe_held_out}" --seed "${seed}" \
                || die "Stage 7: the speaker split failed (see above)"
            step_finished "${data_paths[sid/done]}"
        fi
        probes_ready+=" sid"
    fi
}

# One probe of one run: probe_train <layout> <run> <task>, through ESPnet's ASR (pr) or
# classification (sid) task, on the frozen model of the run's iteration-2 pretraining.
probe_train() {
    local -n train_paths=$1
    local run=$2 task=$3 exp ssl_model config module train valid label data=()
    exp=${train_paths[${task}/exp/${run}]} ssl_model=$(ssl_exp_of "${run}")/valid.loss.best.pth
    train=${train_paths[${task}/train]} valid=${train_paths[${task}/valid]}
    [ -f "${ssl_model}" ] || die "${ssl_model} missing: run stage 6 first"
    case ${task} in
        pr) config=${probe_pr_config} module=espnet_ils.bin.asr_train label=text ;;
        sid) config=${probe_sid_config} module=espnet_ils.bin.cls_train label=label ;;
    esac
    if step_done "${exp}/.done" "Stage 7: ${task} probe ${exp}" --resumable true --option "seed=${seed_of[${run}]}" \
            --option "probe_args=${probe_args}" --input "config=${config}" --input "ssl_model=${ssl_model}" \
            --input "data=${train_paths[${task}/done]}"; then
        return
    fi
    data_args data train "${train}" "${train}/text" "${label}"
    data_args data valid "${valid}" "${valid}/text" "${label}"
    log "Stage 7: ${task} probe of ${ssl_model} -> ${exp}; log: ${exp}/train.log"
    launch_training "${exp}" valid.loss.best.pth "${module}" --config "${config}" \
        --frontend_conf "frontend_conf.path_or_url=${ssl_model}" \
        --token_list "${train_paths[${task}/tokens]}" --token_type word --use_preprocessor true \
        "${data[@]}" --seed "${seed_of[${run}]}" "${probe_argv[@]}"
    step_finished "${exp}/.done"
}

# A probe's output on its test sets: probe_decode <layout> <run> <task> -> text in each of its
# decode dirs: the phone recogniser's best paths on --test_sets (pr), the predicted speakers of the
# held-out utterances (sid).
probe_decode() {
    local -n decode_paths=$1
    local run=$2 task=$3 exp dset
    exp=${decode_paths[${task}/exp/${run}]}
    for dset in ${decode_paths[${task}/tests]}; do
        "probe_decode_${task}" "${exp}" "${decode_paths[${task}/decode/${run}/${dset}]}" "${dset}" \
            "${decode_paths[${task}/set/${dset}]}" "${decode_paths[${task}/tokens]}"
    done
}

# probe_decode_<task> <exp> <decode dir> <set> <set's probe data dir> <token list>
probe_decode_pr() {
    local exp=$1 dir=$2 tokens=$5 scps=() inputs=()
    dump_logprobs scps inputs "${exp}" "$3" "${exp}/valid.loss.best.pth" "$4/wav.scp"
    step_done "${dir}.done" "Stage 7: pr probe decoding ${dir}" --input "tokens=${tokens}" "${inputs[@]}" && return 0
    ${python} -m espnet_ils.bin.ctc_decode greedy --token_type word --logprobs_scp "${scps[@]}" \
        --token_list "${tokens}" --output "${dir}/text"
    step_finished "${dir}.done"
}

probe_decode_sid() {
    local exp=$1 dir=$2 wav_scp=$4/wav.scp model=$1/valid.loss.best.pth shards
    step_done "${dir}.done" "Stage 7: sid probe decoding ${dir}" --input "model=${model}" \
        --input "config=${exp}/config.yaml" --input "wav_scp=${wav_scp}" && return 0
    shards=$(decode_shards "${wav_scp}")
    split_keys "${wav_scp}" "${dir}" "${shards}"
    ${decode_cmd} JOB=1:"${shards}" "${dir}/log/classify.JOB.log" \
        ${python} -m espnet_ils.bin.cls_inference --ngpu 0 --batch_size 1 \
            --data_path_and_name_and_type "${wav_scp},speech,sound" \
            --key_file "${dir}/split/keys.JOB" --classification_train_config "${exp}/config.yaml" \
            --classification_model_file "${model}" --output_dir "${dir}/output.JOB"
    ${python} -m espnet_ils.bin.merge_decoding --decode_dir "${dir}" --nj "${shards}" \
        --hypotheses prediction/text --output "${dir}/text"
    step_finished "${dir}.done"
}

probe_run() {  # probe_run <run> <layout> <tasks>: the probes <tasks> of <run>
    local task
    for task in $3; do
        probe_train "$2" "$1" "${task}"
        probe_decode "$2" "$1" "${task}"
    done
}

# "probe_report <layout> <tasks>": PER and accuracy of every run's probes of <tasks> and their
# layer weights -> probes.tsv, layer_weights.tsv and layer_weights.png in the probes' experiments
# folder (cheap: redone on every run of stage 7).
probe_report() {
    local -n report_paths=$1
    ${python} -m espnet_ils.bin.probe_report --runs "${expdir}/runs.tsv" --dumpdir "${dumpdir}" \
        --expdir "${expdir}" --it2_tag "${it2_tag}" --probe_tasks "$2" --test_sets "${test_sets}" \
        || die "Stage 7: the probes' report failed (see above)"
    log "Stage 7: probes -> ${report_paths[results]} and the layer weights' plot beside it: $(tail -n +2 "${report_paths[results]}" | cut -f 1,3,4 | tr '\t\n' ' ;')"
}

# Stage 5 with --it2_layer auto: the block of the iteration-1 model whose k-means labels score the
# highest PNMI on --quality_sets, written to ${it2_choice}; the paper's block 6 where the blocks
# cannot be scored (no phone alignments).
choose_it2_layer() {
    local quality_dir
    quality_dir=$(dirname "${it2_choice}")
    if layer_quality "Stage 5" "${quality_dir}" "it1=${it1_exp}"; then
        ${python} -m espnet_ils.bin.cluster_quality best --model it1 \
            --table "${quality_dir}/cluster_quality.tsv" --output "${it2_choice}"
    else  # the paper's block, where the blocks cannot be scored
        mkdir -p "${quality_dir}" && echo 6 > "${it2_choice}"
    fi
    log "Stage 5: --it2_layer auto: block $(cat "${it2_choice}"); PNMI per layer (0: block-1 input): $(awk -F '\t' '$1 == "it1" {printf "%s:%s ", $2, $5}' "${quality_dir}/cluster_quality.tsv" 2> /dev/null)"
}

# Stage 7: the cluster quality per block of every run's iteration-2 model, and the frozen probes.
analyse_runs() {
    local models=() run probe_tasks_ready
    # shellcheck disable=SC2034  # filled and read by name (load_probe_layout, the probe_* functions)
    local -A probe_paths=()
    if [ "${it2_encoder}" != ils_transformer ]; then
        # LayerFeatureExtractor takes ILSTransformerEncoder only (the others convolve over padding).
        log "Stage 7: cluster quality skipped: the per-block analysis needs the ils_transformer encoder; ${it2_config} has ${it2_encoder}"
    else
        for run in ${runs}; do models+=("${run}=$(ssl_exp_of "${run}")"); done
        layer_quality "Stage 7" "${expdir}/cluster_quality_${it2_tag}" "${models[@]}" || true
    fi
    if [ -z "${probe_tasks}" ]; then
        log "Stage 7: no probes (--probe_tasks is empty)"
        return
    fi
    load_probe_layout probe_paths
    prepare_probe_data probe_paths probe_tasks_ready
    if [ -n "${probe_tasks_ready}" ]; then
        each_run probe_run probe_paths "${probe_tasks_ready}"
        probe_report probe_paths "${probe_tasks_ready}"
    fi
}

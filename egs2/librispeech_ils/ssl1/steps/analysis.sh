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
    ${train_cmd} "${out}/log/cluster_quality.log" ${python} -m espnet_ils.bin.cluster_quality layers \
        "${models[@]}" --checkpoint valid.loss.best.pth "${quality_dirs[@]}" \
        --fit_dir "${dumpdir}/raw/${train_set}" --fit_hours "${quality_fit_hours}" \
        --n_clusters "${quality_n_clusters}" --seed "${seed}" --outdir "${out}" \
        || die "${what}: cluster quality failed; log: ${out}/log/cluster_quality.log"
    step_finished "${out}/.done"
}

# "prepare_probe_data <ready>": phone transcripts (from the phone alignments) of the pr probe's
# sets, and the speakers' train / valid / test split of the sid probe's set. Sets the variable named
# <ready> to the tasks of --probe_tasks whose data is there (pr is skipped, saying so, without phone
# alignments, as the cluster quality is).
prepare_probe_data() {
    local -n probes_ready=$1
    local pr_sets="${probe_pr_train_set} ${valid_set} ${test_sets}" sets=() dset utt2spk inputs=()
    probes_ready=""
    if [[ " ${probe_tasks} " == *" pr "* ]]; then
        if prepare_alignments inputs "Stage 7" "${pr_sets}"; then
            for dset in ${pr_sets}; do sets+=(--set "${dumpdir}/raw/${dset}" "${probe_data}/pr/${dset}"); done
            if ! step_done "${probe_data}/pr/.done" "Stage 7: phone-recognition probe data ${probe_data}/pr" \
                    --option "sets=${pr_sets}" "${inputs[@]}"; then
                log "Stage 7: phone transcripts of ${pr_sets} -> ${probe_data}/pr"
                ${python} -m espnet_ils.bin.prepare_probes pr "${sets[@]}" --token_list "${probe_data}/pr/tokens.txt" \
                    || die "Stage 7: the phone transcripts failed (see above)"
                step_finished "${probe_data}/pr/.done"
            fi
            probes_ready+=" pr"
        else
            log "Stage 7: pr probe skipped: it needs the phone alignments of ${pr_sets}"
        fi
    fi
    if [[ " ${probe_tasks} " == *" sid "* ]]; then
        utt2spk=${dumpdir}/raw/${probe_sid_set}/utt2spk
        [ -f "${utt2spk}" ] || die "Stage 7: ${utt2spk} missing: run stage 2 (the sid probe's set, --probe_sid_set)"
        if ! step_done "${probe_data}/sid/.done" "Stage 7: speaker-identification probe data ${probe_data}/sid" \
                --option "held_out=${probe_held_out}" --option "seed=${seed}" --input "utt2spk=${utt2spk}" \
                --input "wav_scp=${dumpdir}/raw/${probe_sid_set}/wav.scp"; then
            log "Stage 7: the utterances of ${probe_sid_set} split per speaker -> ${probe_data}/sid/{train,valid,test}"
            ${python} -m espnet_ils.bin.prepare_probes sid --src "${dumpdir}/raw/${probe_sid_set}" \
                --outdir "${probe_data}/sid" --held_out "${probe_held_out}" --seed "${seed}" \
                || die "Stage 7: the speaker split failed (see above)"
            step_finished "${probe_data}/sid/.done"
        fi
        probes_ready+=" sid"
    fi
}

# One probe of one run: probe_train <run> <task>, through ESPnet's ASR (pr) or classification (sid)
# task, on the frozen model of the run's iteration-2 pretraining.
probe_train() {
    local run=$1 task=$2 exp ssl_model config module train valid label data=()
    exp=$(probe_exp_of "${run}" "${task}") ssl_model=$(ssl_exp_of "${run}")/valid.loss.best.pth
    [ -f "${ssl_model}" ] || die "${ssl_model} missing: run stage 6 first"
    case ${task} in
        pr) config=${probe_pr_config} module=espnet_ils.bin.asr_train label=text
            train=${probe_data}/pr/${probe_pr_train_set} valid=${probe_data}/pr/${valid_set} ;;
        sid) config=${probe_sid_config} module=espnet_ils.bin.cls_train label=label
            train=${probe_data}/sid/train valid=${probe_data}/sid/valid ;;
    esac
    if step_done "${exp}/.done" "Stage 7: ${task} probe ${exp}" --resumable true --option "seed=${seed_of[${run}]}" \
            --option "probe_args=${probe_args}" --input "config=${config}" --input "ssl_model=${ssl_model}" \
            --input "data=${probe_data}/${task}/.done"; then
        return
    fi
    data_args data train "${train}" "${train}/text" "${label}"
    data_args data valid "${valid}" "${valid}/text" "${label}"
    log "Stage 7: ${task} probe of ${ssl_model} -> ${exp}; log: ${exp}/train.log"
    launch_training "${exp}" valid.loss.best.pth "${module}" --config "${config}" \
        --frontend_conf "frontend_conf.path_or_url=${ssl_model}" \
        --token_list "${probe_data}/${task}/tokens.txt" --token_type word --use_preprocessor true \
        "${data[@]}" --seed "${seed_of[${run}]}" "${probe_argv[@]}"
    step_finished "${exp}/.done"
}

# A probe's output on its test sets: probe_decode <run> <task> -> <exp>/decode_<set>/text: the
# phone recogniser's best paths on --test_sets (pr), the predicted speakers of the held-out
# utterances (sid).
probe_decode() {
    local run=$1 task=$2 exp dset dir model shards scps=() inputs=()
    exp=$(probe_exp_of "${run}" "${task}")
    model=${exp}/valid.loss.best.pth
    if [ "${task}" = pr ]; then
        for dset in ${test_sets}; do
            dir=${exp}/decode_${dset}
            scps=() inputs=()
            dump_logprobs scps inputs "${exp}" "${dset}" "${model}" "${probe_data}/pr/${dset}/wav.scp"
            step_done "${dir}.done" "Stage 7: pr probe decoding ${dir}" --input "tokens=${probe_data}/pr/tokens.txt" \
                "${inputs[@]}" && continue
            ${python} -m espnet_ils.bin.ctc_decode greedy --token_type word --logprobs_scp "${scps[@]}" \
                --token_list "${probe_data}/pr/tokens.txt" --output "${dir}/text"
            step_finished "${dir}.done"
        done
    else
        dir=${exp}/decode_test
        step_done "${dir}.done" "Stage 7: sid probe decoding ${dir}" --input "model=${model}" \
            --input "config=${exp}/config.yaml" --input "wav_scp=${probe_data}/sid/test/wav.scp" && return 0
        shards=$(decode_shards "${probe_data}/sid/test/wav.scp")
        split_keys "${probe_data}/sid/test/wav.scp" "${dir}" "${shards}"
        ${decode_cmd} JOB=1:"${shards}" "${dir}/log/classify.JOB.log" \
            ${python} -m espnet_ils.bin.cls_inference --ngpu 0 --batch_size 1 \
                --data_path_and_name_and_type "${probe_data}/sid/test/wav.scp,speech,sound" \
                --key_file "${dir}/split/keys.JOB" --classification_train_config "${exp}/config.yaml" \
                --classification_model_file "${model}" --output_dir "${dir}/output.JOB"
        ${python} -m espnet_ils.bin.merge_decoding --decode_dir "${dir}" --nj "${shards}" \
            --hypotheses prediction/text --output "${dir}/text"
        step_finished "${dir}.done"
    fi
}

probe_run() {  # probe_run <run> <tasks>: the probes <tasks> of <run>
    local task
    for task in $2; do
        probe_train "$1" "${task}"
        probe_decode "$1" "${task}"
    done
}

# PER and accuracy of every run's probes of the tasks $1 and their layer weights ->
# $(probes_dir)/{probes.tsv,layer_weights.tsv,layer_weights.png} (cheap: redone on every run of stage 7).
probe_report() {
    local tasks=$1 references=() dset
    if [[ " ${tasks} " == *" pr "* ]]; then
        for dset in ${test_sets}; do references+=(--reference pr "${dset}" "${probe_data}/pr/${dset}/text"); done
    fi
    if [[ " ${tasks} " == *" sid "* ]]; then
        references+=(--reference sid test "${probe_data}/sid/test/text")
    fi
    ${python} -m espnet_ils.bin.probe_report --runs "${expdir}/runs.tsv" --probe_dir "$(probes_dir)" \
        "${references[@]}" || die "Stage 7: the probes' report failed (see above)"
    log "Stage 7: probes -> $(probes_dir)/{probes.tsv,layer_weights.png}: $(tail -n +2 "$(probes_dir)/probes.tsv" | cut -f 1,3,4 | tr '\t\n' ' ;')"
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
    prepare_probe_data probe_tasks_ready
    if [ -n "${probe_tasks_ready}" ]; then
        each_run probe_run "${probe_tasks_ready}"
        probe_report "${probe_tasks_ready}"
    fi
}

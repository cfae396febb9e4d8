# shellcheck shell=bash disable=SC2154,SC2086
# (SC2154, SC2086: the options and names are ils.sh's, set before it sources this file; ${python}
# and the *_cmd runners are command lines, as in ils.sh)
# ils.sh's helpers for every stage (sourced): option tests, skip markers, the stage filter, runs at
# once, ESPnet's data and training arguments, the experiments' names, the probes' layout and the
# run manifest.

die() { log "Error: $*"; exit 1; }

# path.sh gives every process one thread (OMP_NUM_THREADS=1) because most steps run --nj or
# --train_jobs processes side by side. "solo <command>..." runs a train_cmd job that runs alone (a
# k-means fit, the cluster quality of stage 7) with cmd.sh's train_cmd_threads instead (this
# machine's cores where cmd.sh sets none); a training gets a share of this machine's cores
# (launch_training). GNU nproc honours OMP_NUM_THREADS, hence env -u.
cores=$(env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc)
solo() { OMP_NUM_THREADS=${train_cmd_threads:-${cores}} "$@"; }
is_int() { [[ $1 =~ ^[0-9]+$ ]]; }
is_number() { [[ $1 =~ ^[0-9]*\.?[0-9]+([eE][+-]?[0-9]+)?$ ]]; }  # non-negative: 0.5, 2, 1e9
is_positive_number() { is_number "$1" && awk -v x="$1" 'BEGIN { exit !(x > 0) }'; }
# "require_positive_ints <option name>...": each option's value is an integer >= 1.
require_positive_ints() {
    local option
    for option in "$@"; do
        { is_int "${!option}" && [ "${!option}" -ge 1 ]; } || die "--${option} must be a positive integer, got '${!option}'"
    done
}
# A file of LibriSpeech's LM resources in ${LIBRISPEECH_LM} (db.sh), which stage 1 fetches when
# missing (local/lm_resources.sh); a file elsewhere must exist.
lm_resource() {
    [ "$(dirname "$1")" -ef "${LIBRISPEECH_LM}" ] || [ "$(dirname "$1")" = "${LIBRISPEECH_LM}" ] || return 1
    case $(basename "$1") in 4-gram.arpa.gz | librispeech-lexicon.txt | librispeech-lm-norm.txt.gz) ;; *) return 1 ;; esac
}
exists_or_fetched() { [ -f "$1" ] || { [ "${corpus}" = librispeech ] && lm_resource "$1"; }; }

# A stage that needs the outputs of an earlier stage which is not run now checks them itself.
require_dir() { [ -d "$1" ] || die "$1 does not exist: run the stage that makes it ($2) first"; }

# Skip decisions (espnet_ils.data.markers): "step_done <marker> <what> [--option NAME=VALUE]
# [--input NAME=FILE] [--resumable true]..." succeeds, and logs why, when the marker holds these
# options and the checksums of these inputs; otherwise it logs what changed and fails, and the caller
# does the work and then "step_finished <marker>" writes the marker (last) with what the check saw.
# Training is resumable: one done or started with other inputs stops the pipeline instead.
step_done() {
    local marker=$1 what=$2 status=0; shift 2
    ${python} -m espnet_ils.bin.marker check "${marker}" --what "${what}" "$@" || status=$?
    [ "${status}" -le 1 ] || die "${what}: stopped (see the error above)"
    return "${status}"
}
step_finished() { ${python} -m espnet_ils.bin.marker write "$1"; }

run_stage() { [ "${stage}" -le "$1" ] && [ "${stop_stage}" -ge "$1" ]; }

# "each_run <function> [<argument>...]": <function> <run> <argument>... for every run, --train_jobs
# of them at once; when one fails the pipeline stops after the others have ended (the failed ones'
# messages say why).
each_run() {
    local func=$1 run pids=() failed=() i=0; shift
    # read by launch_training (bash locals are seen by the functions this one calls)
    local runs_at_once
    runs_at_once=$(wc -w <<< "${runs}")
    [ "${runs_at_once}" -le "${train_jobs}" ] || runs_at_once=${train_jobs}
    if [ "${train_jobs}" -le 1 ]; then
        for run in ${runs}; do "${func}" "${run}" "$@"; done
        return
    fi
    for run in ${runs}; do
        while [ "$(jobs -rp | wc -l)" -ge "${train_jobs}" ]; do wait -n || true; done
        "${func}" "${run}" "$@" &
        pids+=("$!")
    done
    for run in ${runs}; do
        wait "${pids[${i}]}" || failed+=("${run}")
        i=$((i + 1))
    done
    [ "${#failed[@]}" -eq 0 ] || die "${func}: run(s) ${failed[*]} failed (see above)"
}

# "data_args <array> <train|valid> <folder> <targets> [<name>]" appends to the array named <array>
# ESPnet's data arguments of one split: speech from <folder>/wav.scp, the targets file <targets> as
# <name> (default text), and the shapes <folder>/speech_shape.
data_args() {
    local -n data_args_out=$1
    local split=$2 folder=$3 targets=$4 name=${5:-text}
    data_args_out+=(--"${split}"_data_path_and_name_and_type "${folder}/wav.scp,speech,sound"
        --"${split}"_data_path_and_name_and_type "${targets},${name},text"
        --"${split}"_shape_file "${folder}/speech_shape")
}

# "training_set_args <array> <num_splits> <data dir> <text>" appends to the array named <array> the
# training-set arguments of ssl_train and asr_train (wav.scp and speech_shape: in <data dir>).
# With num_splits > 1 the three files are cut by utterance (espnet_ils.bin.split_scps) into
# <text's folder>/split<num_splits>/{wav.scp,text,speech_shape}/split.<i> for ESPnet's split
# iterator (--multiple_iterator true), once per content of the files; runs at once (--train_jobs)
# wait for the one that cuts them.
training_set_args() {
    local -n training_set_out=$1
    local num_splits=$2 folder=$3 wav_scp=$3/wav.scp text=$4 shape=$3/speech_shape split_dir
    if [ "${num_splits}" -gt 1 ]; then
        split_dir=$(dirname "${text}")/split${num_splits}
        mkdir -p "${split_dir}"
        (
            flock 9
            if ! step_done "${split_dir}/.done" "splitting ${split_dir}" --option "num_splits=${num_splits}" \
                    --input "wav.scp=${wav_scp}" --input "text=${text}" --input "speech_shape=${shape}"; then
                log "splitting ${wav_scp}, ${text}, ${shape} into ${num_splits} parts -> ${split_dir}"
                ${python} -m espnet_ils.bin.split_scps --scps "${wav_scp}" "${text}" "${shape}" \
                    --num_splits "${num_splits}" --output_dir "${split_dir}"
                step_finished "${split_dir}/.done"
            fi
        ) 9> "${split_dir}/.lock"
        folder=${split_dir} text=${split_dir}/text
        training_set_out+=(--multiple_iterator true)
    fi
    data_args training_set_out train "${folder}" "${text}"
}

# "launch_training <exp> <checkpoint> <module> <argument>...": a training through ESPnet's launcher
# (DDP, multi-node), resumed from its checkpoint; it stops the run unless it leaves <exp>/<checkpoint>.
# Its threads: --train_threads, else the cores shared by the trainings running at once (each_run's
# runs_at_once; a training outside each_run, such as iteration 1 or the LM, runs alone).
launch_training() {
    local exp=$1 checkpoint=$2 module=$3; shift 3
    mkdir -p "${exp}"
    local threads=${train_threads}
    [ "${threads}" -gt 0 ] || threads=$(( cores / ${runs_at_once:-1} ))
    [ "${threads}" -gt 0 ] || threads=1
    OMP_NUM_THREADS=${threads} ${python} -m espnet2.bin.launch --cmd "${cuda_cmd}" --log "${exp}/train.log" \
        --ngpu "${ngpu}" --num_nodes "${num_nodes}" --init_file_prefix "${exp}/.dist_init_" \
        --multiprocessing_distributed true -- \
        ${python} -m "${module}" --resume true --output_dir "${exp}" --seed "${seed}" "$@"
    [ -f "${exp}/${checkpoint}" ] || die "${exp}: training ended without ${checkpoint}"
}

# A run's experiments and pretraining config (the baseline's is derived from the ILS config):
ssl_exp_of() { echo "${expdir}/ssl_${it2_tag}_$1"; }

ssl_config_of() {
    if [ "${arm_of[$1]}" = hubert ]; then echo "$(ssl_exp_of "$1")/derived_config.yaml"; else echo "${it2_config}"; fi
}

asr_exp_of() { echo "${expdir}/asr_${it2_tag}_$1_$(basename "${asr_config}" .yaml)"; }

# "load_probe_layout <array>": where the frozen probes' data and experiments go
# (espnet_ils.analysis.probes.ProbeLayout) into the associative array named <array>, one path per key
# (the keys: python -m espnet_ils.bin.probe_layout --help). Read when needed, as it names the
# iteration-2 tag that stage 5 may have chosen (--it2_layer auto).
load_probe_layout() {
    local -n layout_out=$1
    local layout key value
    layout=$(${python} -m espnet_ils.bin.probe_layout --dumpdir "${dumpdir}" --expdir "${expdir}" \
        --it2_tag "${it2_tag}" --probe_tasks "${probe_tasks}" --runs "${runs}" \
        --pr_train_set "${probe_pr_train_set}" --valid_set "${valid_set}" --test_sets "${test_sets}") \
        || die "the probes' layout failed (see above)"
    layout_out=()
    while IFS=$'\t' read -r key value; do layout_out+=(["${key}"]="${value}"); done <<< "${layout}"
}

# The run manifest: what the runs are, as data for the tools that read them (compare_runs).
write_runs_manifest() {
    local manifest=${expdir}/runs.tsv run
    mkdir -p "${expdir}"
    {
        printf 'run\tarm\tseed\titeration\tssl_config\tssl_exp\tasr_config\tasr_exp\n'
        for run in ${runs}; do
            printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "${run}" "${arm_of[${run}]}" "${seed_of[${run}]}" \
                "${it2_tag}" "$(ssl_config_of "${run}")" "$(ssl_exp_of "${run}")" "${asr_config}" "$(asr_exp_of "${run}")"
        done
    } > "${manifest}.tmp"
    mv "${manifest}.tmp" "${manifest}"
}

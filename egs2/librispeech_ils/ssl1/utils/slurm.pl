#!/usr/bin/env bash
# Submit jobs to Slurm, in the calling convention of Kaldi's slurm.pl. It is a bash script: the name
# is what ESPnet's launcher (espnet2.bin.launch) looks for to start multi-node DDP through srun.
#   utils/slurm.pl [--gpu N] [--num_threads N] [--num_nodes N] [--mem X] [sbatch options...] \
#       [JOB=1:N] log[.JOB].log command args...
# --gpu N asks for --gres=gpu:N (per node), --num_threads N for --cpus-per-task=N, --num_nodes N for
# --nodes=N with one task per node (the command then starts its tasks with srun), --mem X for
# --mem=X. Other options go to sbatch as they are, "--opt=value" or "--opt value"; a flag without a
# value (--exclusive) would take the next word as its value: set it through sbatch's environment
# (SBATCH_EXCLUSIVE=1) instead.
# The jobs are one sbatch array, waited for (--wait); every "JOB" in the log path and the command
# becomes the job's index (SLURM_ARRAY_TASK_ID). Each log starts with the command and ends with its
# exit status, as utils/run.sh writes it; on failure the tail of each failed job's log is shown and
# the exit status is 1.
set -euo pipefail

sbatch_opts=()
while [[ ${1:-} == --* ]]; do
    case $1 in
        --gpu | --num_threads | --num_nodes)
            if ! [[ ${2:-} =~ ^[0-9]+$ ]]; then
                echo "$0: $1 '${2:-}': expected a whole number" >&2
                exit 2
            fi ;;&
        --gpu) [ "$2" -gt 0 ] && sbatch_opts+=("--gres=gpu:$2"); shift 2 ;;
        --num_threads) sbatch_opts+=("--cpus-per-task=$2"); shift 2 ;;
        --num_nodes) sbatch_opts+=("--nodes=$2" "--ntasks-per-node=1"); shift 2 ;;
        --mem) sbatch_opts+=("--mem=$2"); shift 2 ;;
        *=*) sbatch_opts+=("$1"); shift ;;
        *) sbatch_opts+=("$1" "$2"); shift 2 ;;
    esac
done
# shellcheck source=utils/job_range.sh
. "$(dirname "$0")/job_range.sh"
read_job_range "$@"
set -- "${command[@]}"

# Slurm opens each log before the job starts: its directory must exist. A log left by an earlier
# run would be read as this run's result, so it goes.
for job in $(seq "${first}" "${last}"); do
    log=${log_pattern//JOB/${job}}
    mkdir -p "$(dirname "${log}")"
    rm -f "${log}"
done

# The batch script: the command with JOB replaced, between the lines utils/run.sh writes.
script=$(mktemp)
trap 'rm -f "${script}"' EXIT
{
    echo '#!/usr/bin/env bash'
    printf 'args=(%s)\n' "$(printf '%q ' "$@")"
    cat <<'EOF'
args=("${args[@]//JOB/${SLURM_ARRAY_TASK_ID}}")
printf '# %s\n# started at %s on %s\n' "${args[*]}" "$(date)" "$(hostname)"
status=0
"${args[@]}" || status=$?
printf '# ended at %s with status %s\n' "$(date)" "${status}"
exit "${status}"
EOF
} > "${script}"

output=${log_pattern//%/%%}  # sbatch expands %-patterns in --output; %a is the array index
status=0
sbatch --wait --array="${first}-${last}" "${sbatch_opts[@]}" --output="${output//JOB/%a}" \
    --export=ALL "${script}" || status=$?

failed=()
for job in $(seq "${first}" "${last}"); do
    log=${log_pattern//JOB/${job}}
    [ -f "${log}" ] && [[ $(tail -n 1 "${log}") == "# ended at "*" with status 0" ]] \
        || failed+=("${job}")
done
for job in "${failed[@]}"; do
    log=${log_pattern//JOB/${job}}
    if [ -f "${log}" ]; then
        echo "$0: job ${job} failed; last lines of ${log}:" >&2
        tail -n 20 "${log}" >&2
    else
        echo "$0: job ${job} failed and wrote no log ${log} (sbatch exit status ${status})" >&2
    fi
done
if [ ${#failed[@]} -eq 0 ] && [ "${status}" -ne 0 ]; then
    echo "$0: sbatch exited with status ${status} although every job's log ends with status 0" >&2
fi
[ ${#failed[@]} -eq 0 ] && [ "${status}" -eq 0 ]

#!/usr/bin/env bash
# Run jobs on this machine, in the calling convention of Kaldi's run.pl (which ESPnet's launcher and
# our pipeline use):
#   utils/run.sh [--max_jobs N] [--gpu N] [--num_threads N] [--mem X] JOB=1:N log.JOB.log command...
#   utils/run.sh [options] log command...
# Every "JOB" in the log path and the command is replaced by the job index; up to --max_jobs (default:
# the number of cores) run at once. --gpu/--num_threads/--mem are scheduler requests that this local
# runner has nothing to do with; they are accepted so that the same ${cmd} works with utils/slurm.pl.
# On failure the tail of each failed log is shown and the exit status is 1.
set -euo pipefail

max_jobs=$(env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc)  # the cores, whatever OMP_NUM_THREADS says
while [[ ${1:-} == --* ]]; do
    case $1 in
        --max_jobs) max_jobs=$2 ;;
        --gpu | --num_threads | --mem) ;;
        *) echo "$0: unknown option $1" >&2; exit 2 ;;
    esac
    shift 2
done
# shellcheck source=utils/job_range.sh
. "$(dirname "$0")/job_range.sh"
read_job_range "$@"
set -- "${command[@]}"

run_one() {
    local job=$1; shift
    local log=${log_pattern//JOB/${job}}
    local args=()
    for arg in "$@"; do args+=("${arg//JOB/${job}}"); done
    mkdir -p "$(dirname "${log}")"
    printf '# %s\n# started at %s\n' "${args[*]}" "$(date)" > "${log}"
    local status=0
    "${args[@]}" >> "${log}" 2>&1 || status=$?
    printf '# ended at %s with status %s\n' "$(date)" "${status}" >> "${log}"
    return "${status}"
}

pids=(); job_of_pid=(); failed=()
for job in $(seq "${first}" "${last}"); do
    while [ "$(jobs -rp | wc -l)" -ge "${max_jobs}" ]; do wait -n || true; done
    run_one "${job}" "$@" &
    pids+=($!); job_of_pid+=("${job}")
done
for i in "${!pids[@]}"; do
    wait "${pids[$i]}" || failed+=("${job_of_pid[$i]}")
done
for job in "${failed[@]}"; do
    log=${log_pattern//JOB/${job}}
    echo "$0: job ${job} failed; last lines of ${log}:" >&2
    tail -n 20 "${log}" >&2
done
[ ${#failed[@]} -eq 0 ]

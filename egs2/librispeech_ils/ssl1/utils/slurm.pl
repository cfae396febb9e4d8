#!/usr/bin/env bash
# Submit jobs to Slurm, in the calling convention of Kaldi's slurm.pl. It is a bash script: the name
# is what ESPnet's launcher (espnet2.bin.launch) looks for to start multi-node DDP through srun.
#   utils/slurm.pl [--gpu N] [--num_threads N] [--num_nodes N] [--mem X] [sbatch options...] \
#       [JOB=1:N] log[.JOB].log command args...
# One sbatch array (--wait); "JOB" becomes SLURM_ARRAY_TASK_ID in the log path and the command.
set -euo pipefail

sbatch_opts=()
while [ $# -gt 0 ] && [[ $1 == --* ]]; do
    case $1 in
        --gpu) [ "$2" -gt 0 ] && sbatch_opts+=("--gres=gpu:$2"); shift 2 ;;
        --num_threads) sbatch_opts+=("--cpus-per-task=$2"); shift 2 ;;
        --num_nodes) sbatch_opts+=("--nodes=$2" "--ntasks-per-node=1"); shift 2 ;;
        --mem) sbatch_opts+=("--mem=$2"); shift 2 ;;
        *=*) sbatch_opts+=("$1"); shift ;;
        *) sbatch_opts+=("$1" "$2"); shift 2 ;;
    esac
done
first=1; last=1
if [[ ${1:-} =~ ^JOB=([0-9]+):([0-9]+)$ ]]; then
    first=${BASH_REMATCH[1]}; last=${BASH_REMATCH[2]}; shift
fi
if [ $# -lt 2 ]; then
    echo "Usage: $0 [options] [JOB=1:N] log[.JOB].log command args..." >&2
    exit 2
fi
log_pattern=$1; shift
mkdir -p "$(dirname "${log_pattern}")"

script=$(mktemp "$(dirname "${log_pattern}")/slurm.XXXXXX.sh")
{
    echo '#!/usr/bin/env bash'
    printf 'args=(%s)\n' "$(printf '%q ' "$@")"
    echo 'exec "${args[@]//JOB/${SLURM_ARRAY_TASK_ID}}"'
} > "${script}"
status=0
sbatch --wait --array="${first}-${last}" "${sbatch_opts[@]}" \
    --output="${log_pattern//JOB/%a}" --export=ALL "${script}" || status=$?
rm -f "${script}"
if [ "${status}" -ne 0 ]; then
    echo "$0: a job of ${log_pattern} failed; see its log" >&2
    exit 1
fi

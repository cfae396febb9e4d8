# shellcheck shell=bash
# The Kaldi calling convention after the options, shared by utils/run.sh and utils/slurm.pl:
#   [JOB=first:last] log[.JOB].log command args...
# read_job_range "$@" sets first and last (1 and 1 without a range), log_pattern and the array
# command; a call without a log and a command prints the usage and exits 2.
# shellcheck disable=SC2034  # its variables are read by the script that sources this file
read_job_range() {
    first=1; last=1
    if [[ ${1:-} =~ ^JOB=([0-9]+):([0-9]+)$ ]]; then
        first=${BASH_REMATCH[1]}; last=${BASH_REMATCH[2]}; shift
    fi
    if [ $# -lt 2 ]; then
        echo "Usage: $0 [options] [JOB=1:N] log[.JOB].log command args..." >&2
        exit 2
    fi
    log_pattern=$1; shift
    command=("$@")
}

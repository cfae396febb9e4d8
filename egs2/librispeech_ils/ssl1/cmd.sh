# shellcheck shell=bash
# How sharded and training jobs run: "local" (this machine) or "slurm" (sbatch through srun).
# Each *_cmd is called as: ${cmd} [--gpu N] JOB=1:N log.JOB.log command args... (JOB is replaced per
# job); ESPnet's launcher adds --gpu for training. utils/slurm.pl turns --gpu into --gres.
cmd_backend=${cmd_backend:-local}

# train_cmd_threads: the threads of a train_cmd job that runs alone (a k-means fit, the cluster
# quality; ils.sh's "solo"), as many as the job has cores; unset: this machine's cores.
if [ "${cmd_backend}" = local ]; then
    train_cmd="utils/run.sh"
    cuda_cmd="utils/run.sh"
    decode_cmd="utils/run.sh"
elif [ "${cmd_backend}" = slurm ]; then
    # Edit the partitions and resources for your cluster.
    train_cmd="utils/slurm.pl --partition cpu --cpus-per-task 4 --mem 16G"
    train_cmd_threads=4
    cuda_cmd="utils/slurm.pl --partition gpu --cpus-per-task 8 --mem 64G"
    decode_cmd="utils/slurm.pl --partition cpu --cpus-per-task 2 --mem 8G"
else
    echo "cmd.sh: unknown cmd_backend=${cmd_backend} (local or slurm)" >&2
    return 1
fi
export train_cmd cuda_cmd decode_cmd train_cmd_threads

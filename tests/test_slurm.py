"""utils/slurm.pl against stand-in sbatch and srun: array jobs, resources, failures, ESPnet's launcher.

The stand-in ``sbatch`` does what the real one does with the options slurm.pl gives it: runs the
batch script once per array index with ``SLURM_ARRAY_TASK_ID`` set, writes each task's stdout and
stderr to ``--output`` with ``%a`` (and ``%%``) expanded, fails a task whose log directory is
missing, and with ``--wait`` exits with the highest task status. It records its arguments.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

RECIPE = Path(__file__).resolve().parents[1] / "egs2/librispeech_ils/ssl1"
SLURM = RECIPE / "utils/slurm.pl"

SBATCH = r"""#!/usr/bin/env bash
printf '%s\n' "$@" > "${FAKE_SLURM_LOG}/sbatch.args"
[ -z "${FAKE_SBATCH_REJECT:-}" ] || { echo "sbatch: error: ${FAKE_SBATCH_REJECT}" >&2; exit 1; }
script=${*: -1}; output=slurm-%a.out; first=1; last=1
for arg in "$@"; do
    case ${arg} in
        --array=*) range=${arg#--array=}; first=${range%-*}; last=${range#*-} ;;
        --output=*) output=${arg#--output=} ;;
    esac
done
copy=$(mktemp); cp "${script}" "${copy}"  # sbatch sends the script's text at submission
worst=0
for ((task = first; task <= last; task++)); do
    log=${output//%%/$'\x01'}; log=${log//%a/${task}}; log=${log//$'\x01'/%}
    if [ ! -d "$(dirname "${log}")" ]; then worst=1; continue; fi
    status=0
    SLURM_ARRAY_TASK_ID=${task} bash "${copy}" > "${log}" 2>&1 || status=$?
    [ "${status}" -le "${worst}" ] || worst=${status}
done
rm -f "${copy}"
exit "${worst}"
"""

# srun inside the batch script: records its arguments and runs the command after its options.
SRUN = r"""#!/usr/bin/env bash
printf '%s\n' "$@" > "${FAKE_SLURM_LOG}/srun.args"
while [[ $1 == --* ]]; do shift; done
exec "$@"
"""


@pytest.fixture
def slurm(tmp_path):
    """Run utils/slurm.pl from ``tmp_path`` with the stand-ins first on PATH."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, text in (("sbatch", SBATCH), ("srun", SRUN)):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    env = dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}", FAKE_SLURM_LOG=str(tmp_path))

    def run(*args, **extra_env):
        return subprocess.run(
            [str(SLURM), *map(str, args)],
            cwd=tmp_path,
            env=dict(env, **extra_env),
            capture_output=True,
            text=True,
            timeout=60,
        )

    run.sbatch_args = lambda: (tmp_path / "sbatch.args").read_text().splitlines()
    run.env = env
    return run


def test_array_job_writes_each_jobs_output_with_job_replaced_to_its_own_log(slurm, tmp_path):
    # The log directory does not exist yet (Slurm would fail the job); JOB also names a directory.
    pattern = tmp_path / "exp" / "split JOB" / "log.JOB.log"
    command = ["sh", "-c", 'echo "out $1 JOB"; echo "err JOB" >&2', "-", "a b"]
    result = slurm("JOB=1:3", pattern, *command)
    assert result.returncode == 0, result.stderr
    assert "--wait" in slurm.sbatch_args() and "--array=1-3" in slurm.sbatch_args()
    for job in (1, 2, 3):
        lines = Path(str(pattern).replace("JOB", str(job))).read_text().splitlines()
        assert lines[0] == "# " + " ".join(command).replace("JOB", str(job))
        assert f"out a b {job}" in lines and f"err {job}" in lines
        assert lines[-1].endswith("with status 0")


def test_single_job_without_job_range(slurm, tmp_path):
    result = slurm(tmp_path / "one.log", "echo", "JOB")
    assert result.returncode == 0, result.stderr
    assert "--array=1-1" in slurm.sbatch_args()
    assert "1" in (tmp_path / "one.log").read_text().splitlines()


@pytest.mark.parametrize(
    "options, expected, absent",
    [
        (["--gpu", "2"], ["--gres=gpu:2"], []),
        (["--gpu", "0"], [], ["--gres"]),
        (["--num_threads", "4"], ["--cpus-per-task=4"], []),
        (["--mem", "16G"], ["--mem=16G"], []),
        (["--num_nodes", "2"], ["--nodes=2", "--ntasks-per-node=1"], []),
        (["--partition", "gpu", "--time=1:00:00"], ["--partition", "gpu", "--time=1:00:00"], []),
    ],
)
def test_resource_options_become_sbatch_options(slurm, tmp_path, options, expected, absent):
    result = slurm(*options, "JOB=1:2", tmp_path / "log.JOB.log", "true")
    assert result.returncode == 0, result.stderr
    args = slurm.sbatch_args()
    for option in expected:
        assert option in args
    for prefix in absent:
        assert not any(arg.startswith(prefix) for arg in args), args
    assert args[-1] != "true"  # the command is in the batch script, not on sbatch's line


def test_a_failing_job_is_named_with_its_log_and_fails_the_call(slurm, tmp_path):
    pattern = tmp_path / "log" / "job.JOB.log"
    result = slurm("JOB=1:3", pattern, "sh", "-c", '[ JOB -ne 2 ] || { echo "boom"; exit 3; }')
    assert result.returncode == 1
    failed_log = tmp_path / "log" / "job.2.log"
    assert f"job 2 failed; last lines of {failed_log}" in result.stderr
    assert "boom" in result.stderr and "with status 3" in result.stderr
    assert "job 1 failed" not in result.stderr and "job 3 failed" not in result.stderr
    assert (tmp_path / "log" / "job.3.log").read_text().splitlines()[-1].endswith("status 0")


def test_a_rejected_submission_fails_and_an_old_log_is_not_taken_for_success(slurm, tmp_path):
    old = tmp_path / "log.1.log"
    old.write_text("# true\n# ended at yesterday with status 0\n")
    result = slurm("JOB=1:1", tmp_path / "log.JOB.log", "true", FAKE_SBATCH_REJECT="bad partition")
    assert result.returncode == 1
    assert "sbatch: error: bad partition" in result.stderr
    assert f"job 1 failed and wrote no log {old}" in result.stderr


@pytest.mark.parametrize("value", ["two", ""])
def test_a_non_numeric_gpu_count_is_refused(slurm, tmp_path, value):
    result = slurm("--gpu", value, tmp_path / "log", "true")
    assert result.returncode == 2
    assert f"--gpu '{value}': expected a whole number" in result.stderr
    assert not (tmp_path / "sbatch.args").exists()


def test_espnet_launcher_multi_node_goes_through_slurm_and_srun(slurm, tmp_path):
    """espnet2.bin.launch with --num_nodes 2 picks slurm.pl by its name and runs srun inside it."""
    log = tmp_path / "exp" / "train.log"
    result = subprocess.run(
        [sys.executable, "-m", "espnet2.bin.launch", "--cmd", f"{SLURM} --partition gpu"]
        + ["--log", str(log), "--ngpu", "1", "--num_nodes", "2", "--master_port", "29500"]
        + ["--", sys.executable, "-c", "import sys; print('trainer', sys.argv[1:])"],
        cwd=tmp_path,
        env=slurm.env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    args = slurm.sbatch_args()
    for option in ("--partition", "--gres=gpu:1", "--cpus-per-task=1", "--nodes=2"):
        assert option in args
    srun_args = (tmp_path / "srun.args").read_text().splitlines()
    assert srun_args[0] == "--export=ALL"
    text = log.read_text()
    assert "trainer" in text and "'--dist_launcher', 'slurm'" in text

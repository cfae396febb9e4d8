# shellcheck shell=bash
# The project's one environment: .venv/ at the repository root (make install).
ILS_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)
if [ ! -x "${ILS_ROOT}/.venv/bin/python" ]; then
    echo "path.sh: ${ILS_ROOT}/.venv is missing; run 'make install' in ${ILS_ROOT}" >&2
    # shellcheck disable=SC2317  # exit only when executed instead of sourced
    return 1 2>/dev/null || exit 1
fi
# shellcheck disable=SC1091
. "${ILS_ROOT}/.venv/bin/activate"
export PYTHONUNBUFFERED=1
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}

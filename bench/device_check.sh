#!/usr/bin/env bash
# The GPU device check in one command (bench/device_check.py; bench/README.md, "Device check
# (GPU)"). Run from anywhere; the options go to device_check.py (default: all parts on CUDA,
# results to $OUT). On the lent GPU machine, install the wheels of bench/fetch_device_wheels.sh
# first:
#
#   python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
#     --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site && bash bench/device_check.sh
#
# Dry run on a CPU: PYTHON=.venv/bin/python bash bench/device_check.sh --device cpu --tiny --out DIR
set -euo pipefail

python=${PYTHON:-python3}
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

if ! "${python}" -c "import espnet, typeguard, humanfriendly, configargparse, kaldiio, soundfile" \
    2> /dev/null; then
  echo "$0: ${python} cannot import espnet and its helpers: install the wheels of" \
    "bench/fetch_device_wheels.sh (see the top of this script)" >&2
  exit 1
fi
export PYTHONUNBUFFERED=1
exec "${python}" "${repo}/bench/device_check.py" "$@"

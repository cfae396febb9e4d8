#!/usr/bin/env bash
# Download into .whl/ the wheels that the lent GPU machine lacks for bench/device_check.py:
# importing espnet_ils and running espnet_ils.bin.ssl_train there. That machine's python3 (3.12)
# has torch 2.11, torchaudio 2.11, numpy, scipy, scikit-learn, matplotlib, tensorboard, PyYAML and
# tqdm, but not espnet and not the pure-Python packages below; it reaches no package registry.
#
# The list was found by running `bench/device_check.py --device cpu --tiny` under Python 3.12 with
# only torch, torchaudio and packages of that machine's list installed, adding what failed to
# import (bench/README.md, "Device check (GPU)"). Versions equal those of .venv (a test checks).
# espnet's other requirements (nltk, lightning, pyworld, ci_sdr, ...) are not imported on this
# path and stay behind. .whl/ is emptied first: two versions of one package stop the install.
#
# Usage: bash bench/fetch_device_wheels.sh   (or: make device-wheels)
set -euo pipefail

python=${PYTHON:-python3}
dest=.whl

# Wheels from the package registry, for CPython 3.12 on x86-64 Linux.
wheels=(
  espnet==202511
  typeguard==4.6.1
  humanfriendly==10.0
  configargparse==1.9.0
  torch-complex==0.4.4
  kaldiio==2.18.1
  soundfile==0.14.0
  cffi==2.1.1
  librosa==0.11.0
  hydra-core==1.3.8
  omegaconf==2.3.1
  jamo==0.4.1
  espnet-tts-frontend==0.0.4
  unidecode==1.4.0
  jaconv==0.5.0
  # typeguard 4.6.1 needs typing_extensions >= 4.14; the machine's version is not on its list.
  typing-extensions==4.16.0
)
# Published as source only (omegaconf 2.3 needs exactly 4.9.*): built here, pure Python.
sources=(
  antlr4-python3-runtime==4.9.3
)

cd "$(dirname "${BASH_SOURCE[0]}")/.."
rm -rf "${dest}"
mkdir -p "${dest}"
"${python}" -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 \
  --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 -d "${dest}" "${wheels[@]}"
"${python}" -m pip wheel --quiet --no-deps -w "${dest}" "${sources[@]}"

count=$(find "${dest}" -type f -name '*.whl' | wc -l)
expected=$(( ${#wheels[@]} + ${#sources[@]} ))
if [ "${count}" -ne "${expected}" ]; then
  echo "$0: ${dest} holds ${count} wheels, expected ${expected}" >&2
  exit 1
fi
ls -l "${dest}" >&2
echo "$0: ${count} wheels, $(du -sh "${dest}" | cut -f1) in ${dest}" >&2

#!/usr/bin/env bash
# Install IRSTLM, the n-gram toolkit that estimates the word LM of lexicon decoding
# (python -m espnet_ils.bin.build_ngram: build-lm.sh and compile-lm from /usr/lib/irstlm/bin).
# The decoder itself (Flashlight with KenLM) comes with the Python package flashlight-text.
# Safe to run again: quiet and without effect when IRSTLM is installed; otherwise it needs root
# and apt-get (Debian and Ubuntu package irstlm).
set -euo pipefail

package=irstlm
tools=(build-lm.sh compile-lm)

if dpkg-query -W -f='${Status}' "${package}" 2>/dev/null | grep -q "install ok installed"; then
  exit 0
fi
if ! command -v apt-get > /dev/null 2>&1; then
  echo "$0: IRSTLM is missing and there is no apt-get here: install IRSTLM" \
    "(https://github.com/irstlm-team/irstlm) and set IRSTLM to the folder that holds" \
    "bin/${tools[0]} and bin/${tools[1]}" >&2
  exit 1
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "$0: IRSTLM is missing: run this script as root (sudo $0)," \
    "or run: sudo apt-get install -y ${package}" >&2
  exit 1
fi
echo "$0: installing ${package}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${package}" > /dev/null
for tool in "${tools[@]}"; do
  if [ ! -x "/usr/lib/irstlm/bin/${tool}" ]; then
    echo "$0: ${package} is installed but /usr/lib/irstlm/bin/${tool} is missing" >&2
    exit 1
  fi
done

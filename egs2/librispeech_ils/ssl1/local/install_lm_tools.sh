#!/usr/bin/env bash
# Install IRSTLM, the n-gram toolkit that estimates the word LM of lexicon decoding
# (python -m espnet_ils.bin.build_ngram: build-lm.sh and compile-lm from /usr/lib/irstlm/bin).
# The decoder itself (Flashlight with KenLM) comes with the Python package flashlight-text.
# Safe to run again: quiet and without effect when IRSTLM is installed; otherwise
# local/apt_install.sh installs the Debian and Ubuntu package irstlm (as root or through sudo,
# or says the command).
set -euo pipefail

package=irstlm
tools=(build-lm.sh compile-lm)

bash "$(dirname "$0")/apt_install.sh" \
  --purpose "IRSTLM, for the word n-gram of decode mode ngram" \
  --no_apt_get "install IRSTLM (https://github.com/irstlm-team/irstlm) and set IRSTLM to the folder that holds bin/${tools[0]} and bin/${tools[1]}" \
  "${package}"
# espnet_ils.decoding.ngram looks for the tools there unless IRSTLM says otherwise.
for tool in "${tools[@]}"; do
  if [ ! -x "/usr/lib/irstlm/bin/${tool}" ]; then
    echo "$0: ${package} is installed but /usr/lib/irstlm/bin/${tool} is missing" >&2
    exit 1
  fi
done

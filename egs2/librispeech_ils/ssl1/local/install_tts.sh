#!/usr/bin/env bash
# Install the Debian packages of the offline speech synthesisers that build the embedded mini
# corpus (python local/make_mini_corpus.py): festival with its kal, ked and slt voices,
# flite (kal16, awb, rms, slt built in) and espeak-ng (its library and English dialects).
# Safe to run again: quiet and without effect when everything is installed; otherwise
# local/apt_install.sh installs what is missing (as root or through sudo, or says the command).
# The list must equal all_packages() in local/mini_corpus/voices.py (a test checks).
set -euo pipefail

packages=(espeak-ng festival festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts flite)

exec bash "$(dirname "$0")/apt_install.sh" \
  --purpose "the speech synthesisers of the mini corpus" \
  --no_apt_get "install festival, its voices kal, ked and slt, flite and espeak-ng with this system's package manager" \
  "${packages[@]}"

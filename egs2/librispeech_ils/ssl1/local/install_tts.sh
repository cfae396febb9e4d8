#!/usr/bin/env bash
# Install the Debian packages of the offline speech synthesisers that build the embedded mini
# corpus (python local/make_mini_corpus.py): festival with its kal, ked and slt voices,
# flite (kal16, awb, rms, slt built in) and espeak-ng (its library and English dialects).
# Safe to run again: quiet and without effect when everything is installed; otherwise it needs
# root and apt-get. The list must equal all_packages() in local/mini_corpus/voices.py (a test checks).
set -euo pipefail

packages=(espeak-ng festival festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts flite)

missing=()
for package in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "${package}" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("${package}")
  fi
done
if [ "${#missing[@]}" -eq 0 ]; then
  exit 0
fi

if ! command -v apt-get > /dev/null 2>&1; then
  echo "$0: missing ${missing[*]} and no apt-get here: install festival, its voices kal, ked" \
    "and slt, flite and espeak-ng with this system's package manager" >&2
  exit 1
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "$0: missing ${missing[*]}: run this script as root (sudo $0)," \
    "or run: sudo apt-get install -y ${missing[*]}" >&2
  exit 1
fi
echo "$0: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" > /dev/null

#!/usr/bin/env bash
# Install the Debian packages that a recipe installer needs (local/install_tts.sh,
# local/install_lm_tools.sh), so that `make demo` and `make test` also work for a user who is not
# root but has sudo.
#
# Usage: local/apt_install.sh --purpose TEXT --no_apt_get TEXT PACKAGE...
#   --purpose     what the packages are for (said before installing them)
#   --no_apt_get  what to do instead on a system without apt-get
#
# Quiet and without effect when every PACKAGE is installed. Otherwise apt-get installs the missing
# ones: directly as root; through `sudo -n` when sudo needs no password; through `sudo`, which asks
# for the password, when stdin is a terminal. Anything else stops with the one command to run as root.
set -euo pipefail

purpose=""
no_apt_get=""
while [ $# -gt 0 ]; do
  case "$1" in
    --purpose) purpose=$2; shift 2 ;;
    --no_apt_get) no_apt_get=$2; shift 2 ;;
    *) break ;;
  esac
done
if [ -z "${purpose}" ] || [ -z "${no_apt_get}" ] || [ $# -eq 0 ]; then
  echo "usage: $0 --purpose TEXT --no_apt_get TEXT PACKAGE..." >&2
  exit 2
fi

missing=()
for package in "$@"; do
  if ! dpkg-query -W -f='${Status}' "${package}" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("${package}")
  fi
done
if [ "${#missing[@]}" -eq 0 ]; then
  exit 0
fi

if ! command -v apt-get > /dev/null 2>&1; then
  echo "$0: missing ${missing[*]} (${purpose}) and there is no apt-get here: ${no_apt_get}" >&2
  exit 1
fi

# install_missing COMMAND...: apt-get update and install through COMMAND (env for root, or sudo),
# without questions (a debconf prompt would hang make) and with only errors on the terminal.
install_missing() {
  "$@" DEBIAN_FRONTEND=noninteractive apt-get update -qq
  "$@" DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" > /dev/null
}

install_command="apt-get install -y ${missing[*]}"
if [ "$(id -u)" -eq 0 ]; then
  echo "$0: installing ${missing[*]} (${purpose})" >&2
  install_missing env
elif ! command -v sudo > /dev/null 2>&1; then
  echo "$0: missing ${missing[*]} (${purpose}); installing them needs root and there is no sudo" \
    "here: run as root: ${install_command}   (for instance: su -c '${install_command}')" >&2
  exit 1
elif sudo -n true 2> /dev/null; then
  echo "$0: installing ${missing[*]} (${purpose}) through sudo -n" >&2
  install_missing sudo -n
elif [ -t 0 ]; then
  echo "$0: missing ${missing[*]} (${purpose}): installing them with sudo apt-get," \
    "which asks for your password" >&2
  install_missing sudo
else
  echo "$0: missing ${missing[*]} (${purpose}); installing them needs root and sudo asks for" \
    "a password, which cannot be typed here: run: sudo ${install_command}" >&2
  exit 1
fi

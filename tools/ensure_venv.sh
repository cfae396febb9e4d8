#!/usr/bin/env bash
# Make sure VENV (the Makefile's .venv) is a virtual environment of a Python that setup.py's
# python_requires accepts; `make install` then pip-installs into it.
#
# Usage: tools/ensure_venv.sh VENV    (PYTHON3=/path/to/python3.X picks the interpreter)
#
# An existing VENV whose python is of another version, or does not run, is removed and rebuilt:
# pip refuses this package there, and every later `make` would reuse it. A new VENV takes the
# first supported interpreter among python3 and python3.<newest> ... python3.<oldest> on PATH, or
# only $PYTHON3 when it is set. With none, it stops naming the versions found, the versions that
# work and how to get one.
set -euo pipefail

venv=$1
setup_py="$(dirname "$0")/../setup.py"

# The supported range, read from setup.py so that it is written in one place only.
requires=$(sed -n 's/^ *python_requires="\([^"]*\)",$/\1/p' "${setup_py}")
range_pattern='^>=3\.([0-9]+),<3\.([0-9]+)$'
if [[ ! ${requires} =~ ${range_pattern} ]]; then
  echo "$0: ${setup_py}: expected python_requires=\">=3.A,<3.B\", found \"${requires}\"" >&2
  exit 1
fi
oldest=${BASH_REMATCH[1]}
newest=$((BASH_REMATCH[2] - 1))
supported_versions="3.${oldest}"
for ((minor = oldest + 1; minor <= newest; minor++)); do
  if [ "${minor}" -eq "${newest}" ]; then
    supported_versions+=" or 3.${minor}"
  else
    supported_versions+=", 3.${minor}"
  fi
done

# python_version PYTHON: its major.minor, or nothing when it does not run.
python_version() {
  "$1" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2> /dev/null || true
}

# is_supported VERSION: whether python_requires accepts VERSION (major.minor).
is_supported() {
  [[ $1 =~ ^3\.([0-9]+)$ ]] && [ "${BASH_REMATCH[1]}" -ge "${oldest}" ] \
    && [ "${BASH_REMATCH[1]}" -le "${newest}" ]
}

if [ -e "${venv}" ]; then
  version=$(python_version "${venv}/bin/python")
  if is_supported "${version}"; then
    exit 0
  fi
  echo "$0: removing ${venv}: its python is ${version:-broken (it does not run)}," \
    "and this package needs Python ${supported_versions}; building it again" >&2
  rm -rf "${venv}"
fi

if [ -n "${PYTHON3:-}" ]; then
  candidates=("${PYTHON3}")
else
  candidates=(python3)
  for ((minor = newest; minor >= oldest; minor--)); do
    candidates+=("python3.${minor}")
  done
fi

tried=""  # "python3 (3.13), python3.12 (not found), ...", for the message when none fits
for candidate in "${candidates[@]}"; do
  if ! command -v "${candidate}" > /dev/null 2>&1; then
    tried+="${tried:+, }${candidate} (not found)"
    continue
  fi
  version=$(python_version "${candidate}")
  if ! is_supported "${version}"; then
    tried+="${tried:+, }${candidate} (${version:-does not run})"
    continue
  fi
  echo "$0: creating ${venv} with ${candidate} (Python ${version})" >&2
  if ! "${candidate}" -m venv "${venv}"; then
    # Debian's python3.X lacks ensurepip without its venv package; a VENV without pip stays broken.
    rm -rf "${venv}"
    echo "$0: ${candidate} -m venv ${venv} failed (above); on Debian and Ubuntu" \
      "install the package python${version}-venv" >&2
    exit 1
  fi
  exit 0
done

newest_version="3.${newest}"
cat >&2 << EOF
$0: no supported Python for ${venv} among ${tried}.
This package needs Python ${supported_versions} (setup.py: python_requires="${requires}").
Get one and name it with PYTHON3, for instance:
  uv python install ${newest_version} && make PYTHON3=\$(uv python find ${newest_version})
  pyenv install ${newest_version} && make PYTHON3=\$(pyenv root)/versions/\$(pyenv latest ${newest_version})/bin/python3
  or the distribution's python${newest_version} and python${newest_version}-venv packages, where it has them
EOF
exit 1

"""The ``wget`` that conftest.py's ``stand_in`` fixture puts on PATH for the recipe's download
tests (``STAND_IN_WGET``, a bash script), and what the fixture returns (``StandInWget``)."""

from dataclasses import dataclass
from pathlib import Path
from typing import List

STAND_IN_WGET = r"""#!/usr/bin/env bash
echo "$*" >> "${WGET_CALLS}"
[ "${WGET_OFFLINE:-0}" = 1 ] && exit 4  # wget's "network failure"
prefix=. continue=0 spider=0 url=
while [ $# -gt 0 ]; do
    case $1 in
        --directory-prefix) prefix=$2; shift 2 ;;
        --continue) continue=1; shift ;;
        --spider) spider=1; shift ;;
        --*) shift ;;
        *) url=$1; shift ;;
    esac
done
source=${WGET_SERVES}/${url##*/}
[ -f "${source}" ] || exit 8  # the server's 404
[ "${spider}" = 1 ] && exit 0
out=${prefix}/${url##*/}
have=0
if [ "${continue}" = 1 ] && [ -f "${out}" ]; then have=$(stat -c %s "${out}"); else : > "${out}"; fi
tail -c +$((have + 1)) "${source}" >> "${out}"
"""


@dataclass
class StandInWget:
    """The ``stand_in`` fixture's ``wget``: what it serves and what it was asked."""

    served: Path  # the files it serves, found by the basename of the URL asked for
    call_log: Path  # one line of arguments per call

    def calls(self) -> List[str]:
        """Its calls so far, each as the line of its arguments."""
        return self.call_log.read_text().splitlines() if self.call_log.exists() else []

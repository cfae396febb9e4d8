#!/usr/bin/env bash
# The LibriSpeech LM resources (OpenSLR resource 11) a run uses, in ${LIBRISPEECH_LM} (db.sh):
#   4-gram.arpa.gz              the official word 4-gram, ARPA (1.3 GB)
#   librispeech-lexicon.txt     the pronunciation lexicon: a word, then its phones, per line (5.4 MB)
#   librispeech-lm-norm.txt.gz  the normalised LM text corpus, one sentence per line (1.4 GB)
# A file found there is used as it is. A missing one is downloaded into that folder (bounded
# time-outs and retries, a partial download resumes on the next run; a .gz is tested before it is
# moved into place, in one rename); offline, it stops within seconds naming the file, its URL and
# where to put it. Every name is checked before any download.
# Usage: local/lm_resources.sh --files "4-gram.arpa.gz librispeech-lexicon.txt" [--dir <folder>]
# Logs on stderr, nothing on stdout; exit status 0 when every file named is in place.
set -euo pipefail

log() { echo -e "$(date '+%Y-%m-%dT%H:%M:%S') (${BASH_SOURCE[1]##*/}:${BASH_LINENO[0]}) $*" >&2; }
die() { log "Error: $*"; exit 1; }

files=    # the files needed, names from KNOWN below, separated by spaces
dir=      # the folder that holds them; default ${LIBRISPEECH_LM} from db.sh
while [ $# -gt 0 ]; do
    case $1 in
        --files | --dir)
            [ $# -ge 2 ] || die "option $1 needs a value"
            printf -v "${1#--}" '%s' "$2"; shift 2 ;;
        *) die "unknown option $1" ;;
    esac
done

. ./db.sh
dir=${dir:-${LIBRISPEECH_LM}}

OPENSLR_LM=https://www.openslr.org/resources/11
KNOWN=(4-gram.arpa.gz librispeech-lexicon.txt librispeech-lm-norm.txt.gz)
# shellcheck source=local/download.sh
. local/download.sh   # download(): the reachability probe and the bounded, resumable wget

known_list=$(printf '%s, ' "${KNOWN[@]}")
known_list=${known_list%, }
[ -n "${files// /}" ] || die "option --files is needed: one or more of ${known_list}"
for name in ${files}; do
    [[ " ${KNOWN[*]} " == *" ${name} "* ]] \
        || die "--files: ${name} is not a LibriSpeech LM resource; the files are ${known_list} (${OPENSLR_LM}/)"
done

for name in ${files}; do
    target=${dir}/${name}
    if [ -f "${target}" ]; then
        log "${name}: using ${target}"
        continue
    fi
    url=${OPENSLR_LM}/${name}
    partial=${dir}/.download/${name}
    where="put ${name} at ${target} (from ${url}), or point LIBRISPEECH_LM in db.sh to a folder that has it"
    download "${url}" "${dir}/.download" "${name} is not in ${dir}" "${where}" "run it again"
    if [[ ${name} == *.gz ]] && ! gzip -t "${partial}"; then
        rm -f "${partial}"
        die "${partial} is damaged (removed): run it again to download it anew"
    fi
    mv "${partial}" "${target}"
    log "${name} -> ${target}"
done

#!/usr/bin/env bash
# Stage 1: Kaldi-style data directories of the sets the run uses (--sets).
#   corpus=librispeech: each set from its subsets in ${LIBRISPEECH} (db.sh):
#     train_960 = train-clean-100 + train-clean-360 + train-other-500; train_clean_100,
#     train_clean_360, train_other_500, dev_clean, dev_other, test_clean, test_other; and the
#     Libri-light limited sets finetune_1h / finetune_10h from ${LIBRISPEECH}/librispeech_finetuning.
#     A subset missing there is downloaded into ${LIBRISPEECH} itself (bounded time-outs and retries,
#     a partial download resumes); offline, the stage stops within seconds naming the subset and
#     where to put it.
#   corpus=mini: the embedded multi-speaker TTS corpus, synthesised here (no network); it always
#     makes its four sets (train, dev, test, train_ft).
set -euo pipefail

log() { echo -e "$(date '+%Y-%m-%dT%H:%M:%S') (${BASH_SOURCE[1]##*/}:${BASH_LINENO[0]}) $*" >&2; }
die() { log "Error: $*"; exit 1; }

corpus=librispeech
datadir=data
sets="train_960 dev_clean test_clean test_other finetune_10h"
mini_hours=1.5
seed=0
nj=4
while [ $# -gt 0 ]; do
    case $1 in
        --corpus | --datadir | --sets | --mini_hours | --seed | --nj)
            [ $# -ge 2 ] || die "option $1 needs a value"
            printf -v "${1#--}" '%s' "$2"; shift 2 ;;
        *) die "unknown option $1" ;;
    esac
done

. ./db.sh

if [ "${corpus}" = mini ]; then
    python local/make_mini_corpus.py --outdir "${datadir}" --hours "${mini_hours}" \
        --seed "${seed}" --nj "${nj}"
    exit 0
fi

OPENSLR=https://www.openslr.org/resources/12
LIBRILIGHT_FT=https://dl.fbaipublicfiles.com/librilight/data/librispeech_finetuning.tgz
root=${LIBRISPEECH}
# shellcheck source=local/download.sh
. local/download.sh   # download(): the reachability probe and the bounded, resumable wget

# The corpus folders (under ${root}) a set is made from.
subsets_of() {
    case $1 in
        train_960) echo train-clean-100 train-clean-360 train-other-500 ;;
        train_clean_100 | train_clean_360 | train_other_500 | dev_clean | dev_other | test_clean | test_other)
            echo "${1//_/-}" ;;
        finetune_1h | finetune_10h) echo librispeech_finetuning ;;
        *) return 1 ;;
    esac
}

url_of() {
    if [ "$1" = librispeech_finetuning ]; then echo "${LIBRILIGHT_FT}"; else echo "${OPENSLR}/$1.tar.gz"; fi
}

# fetch <subset>: download its tarball into ${root}/.download (resuming a partial one), unpack it
# there and move the subset into ${root} in one rename, so a half-unpacked subset is never seen.
fetch() {
    local subset=$1 url tarball member unpack
    url=$(url_of "${subset}")
    tarball=${root}/.download/$(basename "${url}")
    unpack=${root}/.download/${subset}.unpacked
    # The LibriSpeech tarballs unpack into LibriSpeech/<subset>, Libri-light's into <subset>.
    member=LibriSpeech/${subset}
    [ "${subset}" = librispeech_finetuning ] && member=${subset}
    local where="put the subset at ${root}/${subset} (unpack ${url##*/} from ${url%/*}/ and move its ${member}/ there), or point LIBRISPEECH in db.sh to a copy that has it"
    download "${url}" "${root}/.download" "${subset} is not in ${root}" "${where}" "run stage 1 again"
    log "unpacking ${tarball}"
    rm -rf "${unpack}"; mkdir -p "${unpack}"
    if ! tar -xzf "${tarball}" -C "${unpack}"; then
        rm -rf "${tarball}" "${unpack}"
        die "${tarball} is damaged (removed): run stage 1 again to download it anew"
    fi
    [ -d "${unpack}/${member}" ] || die "${tarball} holds no ${member}/: is ${url} the right file?"
    mv "${unpack}/${member}" "${root}/${subset}"
    rm -rf "${unpack}" "${tarball}"
    log "${subset} -> ${root}/${subset}"
}

# The source folders of a set (inside its subsets), one per line.
sources_of() {
    local set=$1 ft=${root}/librispeech_finetuning fold
    case ${set} in
        finetune_1h | finetune_10h)
            # Libri-light: 1h = six 10-minute folds (clean and other); 10h = 1h + 9h.
            for fold in 0 1 2 3 4 5; do printf '%s\n' "${ft}/1h/${fold}/clean" "${ft}/1h/${fold}/other"; done
            if [ "${set}" = finetune_10h ]; then printf '%s\n' "${ft}/9h/clean" "${ft}/9h/other"; fi ;;
        *) for subset in $(subsets_of "${set}"); do printf '%s\n' "${root}/${subset}"; done ;;
    esac
}

# Check every set name before any download.
needed=()
for set in ${sets}; do
    subsets=$(subsets_of "${set}") || die "set ${set}: not a LibriSpeech set; the sets are train_960, train_clean_100, train_clean_360, train_other_500, dev_clean, dev_other, test_clean, test_other, finetune_1h, finetune_10h"
    for subset in ${subsets}; do
        [[ " ${needed[*]} " == *" ${subset} "* ]] || needed+=("${subset}")
    done
done
for subset in "${needed[@]}"; do
    [ -d "${root}/${subset}" ] || fetch "${subset}"
done

# prepare_librispeech.py skips a data directory (and logs why) when its marker holds the same
# source folders and listing.
for set in ${sets}; do
    args=()
    mapfile -t sources < <(sources_of "${set}")
    for src in "${sources[@]}"; do args+=(--src "${src}"); done
    python local/prepare_librispeech.py "${args[@]}" --dst "${datadir}/${set}"
done

#!/usr/bin/env bash
# Stage 1: Kaldi-style data directories.
#   corpus=librispeech: train_960, train_clean_100, dev_clean, dev_other, test_clean, test_other
#     from ${LIBRISPEECH} (db.sh), and the Libri-light limited sets finetune_1h / finetune_10h from
#     ${LIBRISPEECH}/librispeech_finetuning. A missing subset is downloaded (needs network).
#   corpus=mini: the embedded multi-speaker TTS corpus, synthesised here (no network).
set -euo pipefail

log() { echo -e "$(date '+%Y-%m-%dT%H:%M:%S') (data.sh:${BASH_LINENO[0]}) $*" >&2; }

corpus=librispeech
datadir=data
mini_hours=1.5
seed=0
nj=4
while [ $# -gt 0 ]; do
    case $1 in
        --corpus | --datadir | --mini_hours | --seed | --nj) printf -v "${1#--}" '%s' "$2"; shift 2 ;;
        *) log "Unknown option $1"; exit 1 ;;
    esac
done

. ./db.sh

SUBSETS="train-clean-100 train-clean-360 train-other-500 dev-clean dev-other test-clean test-other"
OPENSLR=https://www.openslr.org/resources/12
LIBRILIGHT_FT=https://dl.fbaipublicfiles.com/librilight/data/librispeech_finetuning.tgz

# download <url> <destination folder>: fetch and unpack a tarball, or stop with a clear message.
download() {
    local url=$1 dest=$2 tarball
    tarball=${dest}/$(basename "${url}")
    mkdir -p "${dest}"
    log "downloading ${url} -> ${dest}"
    if ! wget --no-verbose --continue -O "${tarball}" "${url}"; then
        log "Error: cannot download ${url}. Put the corpus at LIBRISPEECH=${LIBRISPEECH} (db.sh) by hand."
        exit 1
    fi
    tar -xzf "${tarball}" -C "${dest}" && rm -f "${tarball}"
}

# prepare <set> <source folder>...: one data directory; prepare_librispeech.py skips it (and logs
# why) when its marker holds the same source folders and listing.
prepare() {
    local name=$1; shift
    local args=()
    for src in "$@"; do args+=(--src "${src}"); done
    python local/prepare_librispeech.py "${args[@]}" --dst "${datadir}/${name}"
}

if [ "${corpus}" = mini ]; then
    python -m espnet_ils.bin.make_mini_corpus --outdir "${datadir}" --hours "${mini_hours}" \
        --seed "${seed}" --nj "${nj}"
    exit 0
fi

root=${LIBRISPEECH}
for subset in ${SUBSETS}; do
    # The official tarballs unpack into LibriSpeech/<subset>.
    [ -d "${root}/${subset}" ] || { download "${OPENSLR}/${subset}.tar.gz" "$(dirname "${root}")"; }
done
[ -d "${root}/librispeech_finetuning" ] || download "${LIBRILIGHT_FT}" "${root}"

prepare train_960 "${root}/train-clean-100" "${root}/train-clean-360" "${root}/train-other-500"
for subset in train-clean-100 dev-clean dev-other test-clean test-other; do
    prepare "${subset//-/_}" "${root}/${subset}"
done
# Libri-light: 1h = six 10-minute folds (clean and other); 10h = 1h + 9h.
ft=${root}/librispeech_finetuning
one_hour=()
for fold in 0 1 2 3 4 5; do one_hour+=("${ft}/1h/${fold}/clean" "${ft}/1h/${fold}/other"); done
prepare finetune_1h "${one_hour[@]}"
prepare finetune_10h "${one_hour[@]}" "${ft}/9h/clean" "${ft}/9h/other"

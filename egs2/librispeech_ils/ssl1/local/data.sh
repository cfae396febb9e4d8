#!/usr/bin/env bash
# Stage 1: Kaldi-style data directories of the sets the run uses (--sets).
#   corpus=librispeech: each set from its subsets in ${LIBRISPEECH} (db.sh):
#     train_960 = train-clean-100 + train-clean-360 + train-other-500; train_clean_100,
#     train_clean_360, train_other_500, dev_clean, dev_other, test_clean, test_other; and the
#     Libri-light limited sets finetune_1h / finetune_10h from ${LIBRISPEECH}/librispeech_finetuning.
#     Libri-Light's unlabelled sets from ${LIBRILIGHT} (db.sh): unlab_small, unlab_medium, unlab_large
#     (its subsets small/, medium/, large/) and unlab_60k (all three), cut by their VAD into
#     utterances of at most --segment_max_s seconds, written as FLAC under --audio_dir
#     (local/prepare_librilight.py: --nj shards through ${train_cmd}, then a merge per set).
#     A subset missing there is downloaded into ${LIBRISPEECH} (${LIBRILIGHT}) itself (bounded
#     time-outs and retries, a partial download resumes, Libri-Light's md5 checked); offline, the
#     stage stops within seconds naming the subset and where to put it.
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
audio_dir=dump/librilight  # Libri-Light's cut utterances, one folder per subset (about its size)
segment_max_s=20           # Libri-Light: longest utterance in seconds (speechbrain's choice)
while [ $# -gt 0 ]; do
    case $1 in
        --corpus | --datadir | --sets | --mini_hours | --seed | --nj | --audio_dir | --segment_max_s)
            [ $# -ge 2 ] || die "option $1 needs a value"
            printf -v "${1#--}" '%s' "$2"; shift 2 ;;
        *) die "unknown option $1" ;;
    esac
done

[[ ${segment_max_s} =~ ^[0-9]*[.]?[0-9]+$ && ! ${segment_max_s} =~ ^[0.]+$ ]] \
    || die "--segment_max_s ${segment_max_s}: the longest Libri-Light utterance, seconds > 0 (default 20)"

. ./db.sh
. ./cmd.sh

if [ "${corpus}" = mini ]; then
    python local/make_mini_corpus.py --outdir "${datadir}" --hours "${mini_hours}" \
        --seed "${seed}" --nj "${nj}"
    exit 0
fi

OPENSLR=https://www.openslr.org/resources/12
LIBRILIGHT_DATA=https://dl.fbaipublicfiles.com/librilight/data
# md5 of Libri-Light's unlabelled tarballs, from facebookresearch/libri-light's
# data_preparation/README.md (commit 3fb5006, 2023-07-11).
declare -A LIBRILIGHT_MD5=([small]=c49207eb86a8e8ac895561c37232041e
    [medium]=c75e7ac62471bfbf2db77528d62a9b74 [large]=4dfbac018f50b99797ece101fc9f0c30)
# shellcheck source=local/download.sh
. local/download.sh   # download(): the reachability probe and the bounded, resumable wget

# The corpus folders a set is made from (each under the root that root_of names).
subsets_of() {
    case $1 in
        train_960) echo train-clean-100 train-clean-360 train-other-500 ;;
        train_clean_100 | train_clean_360 | train_other_500 | dev_clean | dev_other | test_clean | test_other)
            echo "${1//_/-}" ;;
        finetune_1h | finetune_10h) echo librispeech_finetuning ;;
        unlab_small | unlab_medium | unlab_large) echo "${1#unlab_}" ;;
        unlab_60k) echo small medium large ;;
        *) return 1 ;;
    esac
}

# The db.sh variable of the corpus root that holds a subset.
root_of() {
    case $1 in small | medium | large) echo LIBRILIGHT ;; *) echo LIBRISPEECH ;; esac
}

url_of() {
    case $1 in
        librispeech_finetuning) echo "${LIBRILIGHT_DATA}/librispeech_finetuning.tgz" ;;
        small | medium | large) echo "${LIBRILIGHT_DATA}/$1.tar" ;;
        *) echo "${OPENSLR}/$1.tar.gz" ;;
    esac
}

# fetch <subset>: download its tarball into <root>/.download (resuming a partial one), check its
# md5 where it is published, unpack it there and move the subset into <root> in one rename, so a
# half-unpacked subset is never seen.
fetch() {
    local subset=$1 variable root url tarball member unpack md5=${LIBRILIGHT_MD5[$1]:-}
    variable=$(root_of "${subset}")
    root=${!variable}
    url=$(url_of "${subset}")
    tarball=${root}/.download/$(basename "${url}")
    unpack=${root}/.download/${subset}.unpacked
    # The LibriSpeech tarballs unpack into LibriSpeech/<subset>, Libri-light's into <subset>.
    member=LibriSpeech/${subset}
    [[ ${url} == "${LIBRILIGHT_DATA}"/* ]] && member=${subset}
    local where="put the subset at ${root}/${subset} (unpack ${url##*/} from ${url%/*}/ and move its ${member}/ there), or point ${variable} in db.sh to a copy that has it"
    download "${url}" "${root}/.download" "${subset} is not in ${root}" "${where}" "run stage 1 again"
    if [ -n "${md5}" ]; then
        log "checking the md5 of ${tarball}"
        if [ "$(md5sum < "${tarball}" | cut -d' ' -f1)" != "${md5}" ]; then
            rm -f "${tarball}"
            die "${tarball} does not have the md5 Libri-Light publishes (${md5}); removed: run stage 1 again to download it anew"
        fi
    fi
    log "unpacking ${tarball}"
    rm -rf "${unpack}"; mkdir -p "${unpack}"
    local compressed=()
    [[ ${url} == *.tar ]] || compressed=(-z)
    if ! tar -x "${compressed[@]}" -f "${tarball}" -C "${unpack}"; then
        rm -rf "${tarball}" "${unpack}"
        die "${tarball} is damaged (removed): run stage 1 again to download it anew"
    fi
    [ -d "${unpack}/${member}" ] || die "${tarball} holds no ${member}/: is ${url} the right file?"
    mv "${unpack}/${member}" "${root}/${subset}"
    rm -rf "${unpack}" "${tarball}"
    log "${subset} -> ${root}/${subset}"
}

# The source folders of a LibriSpeech set (inside its subsets), one per line.
sources_of() {
    local set=$1 ft=${LIBRISPEECH}/librispeech_finetuning fold
    case ${set} in
        finetune_1h | finetune_10h)
            # Libri-light: 1h = six 10-minute folds (clean and other); 10h = 1h + 9h.
            for fold in 0 1 2 3 4 5; do printf '%s\n' "${ft}/1h/${fold}/clean" "${ft}/1h/${fold}/other"; done
            if [ "${set}" = finetune_10h ]; then printf '%s\n' "${ft}/9h/clean" "${ft}/9h/other"; fi ;;
        *) for subset in $(subsets_of "${set}"); do printf '%s\n' "${LIBRISPEECH}/${subset}"; done ;;
    esac
}

# Check every set name before any download.
needed=()
for set in ${sets}; do
    subsets=$(subsets_of "${set}") || die "set ${set}: not a LibriSpeech set; the sets are train_960, train_clean_100, train_clean_360, train_other_500, dev_clean, dev_other, test_clean, test_other, finetune_1h, finetune_10h, and Libri-Light's unlab_small, unlab_medium, unlab_large, unlab_60k"
    for subset in ${subsets}; do
        [[ " ${needed[*]} " == *" ${subset} "* ]] || needed+=("${subset}")
    done
done
for subset in "${needed[@]}"; do
    variable=$(root_of "${subset}")
    [ -d "${!variable}/${subset}" ] || fetch "${subset}"
done

# Libri-Light: each subset cut once (for all the sets that use it) in --nj shards; a shard whose
# marker holds the same options and file listing is skipped, and says so in its log.
for subset in "${needed[@]}"; do
    case ${subset} in small | medium | large) ;; *) continue ;; esac
    out=${audio_dir}/${subset}
    log "cutting ${LIBRILIGHT}/${subset} by its VAD (at most ${segment_max_s} s) -> ${out} (${nj} jobs, logs in ${out}/log)"
    ${train_cmd} JOB=1:"${nj}" "${out}/log/cut.JOB.log" python local/prepare_librilight.py cut \
        --src "${LIBRILIGHT}/${subset}" --out "${out}" --nj "${nj}" --job JOB --segment_max_s "${segment_max_s}"
done

# prepare_librispeech.py and prepare_librilight.py merge skip a data directory (and log why) when
# its marker holds the same sources and options.
for set in ${sets}; do
    args=()
    case ${set} in
        unlab_*)
            for subset in $(subsets_of "${set}"); do args+=(--shards "${audio_dir}/${subset}"); done
            python local/prepare_librilight.py merge "${args[@]}" --nj "${nj}" \
                --segment_max_s "${segment_max_s}" --dst "${datadir}/${set}" ;;
        *)
            mapfile -t sources < <(sources_of "${set}")
            for src in "${sources[@]}"; do args+=(--src "${src}"); done
            python local/prepare_librispeech.py "${args[@]}" --dst "${datadir}/${set}" ;;
    esac
done

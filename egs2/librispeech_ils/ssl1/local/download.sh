# shellcheck shell=bash
# Sourced by local/data.sh and local/lm_resources.sh: one bounded, resumable download with wget.
# The sourcing script defines log (to stderr) and die (log "Error: ...", then exit non-zero).
PROBE_TIMEOUT=15      # s: how long the reachability check waits before calling the machine offline
READ_TIMEOUT=60       # s: a download that receives nothing for this long is retried ...
TRIES=5               # ... at most this many times (wget's defaults, 900 s and 20, hang for hours)

# download <url> <folder> <missing> <where> <rerun>: download <url> to <folder>/<its basename>,
# resuming a partial file there; the caller checks the file and moves it into place.
#   missing: what is missing, to start the error messages ("test-clean is not in /data/LibriSpeech")
#   where:   how to do without the download ("put the subset at ..., or point ... in db.sh to ...")
#   rerun:   what resumes a failed download ("run stage 1 again")
# Stops (die) when wget is missing, when <url> does not answer within PROBE_TIMEOUT (offline), or
# when the download fails TRIES times.
download() {
    local url=$1 folder=$2 missing=$3 where=$4 rerun=$5
    command -v wget > /dev/null || die "${missing} and wget is not installed: ${where}"
    if ! wget --quiet --spider --tries=1 --timeout="${PROBE_TIMEOUT}" "${url}"; then
        die "${missing} and ${url} cannot be reached (offline?): ${where}"
    fi
    mkdir -p "${folder}"
    log "downloading ${url} -> ${folder}/${url##*/} (a re-run resumes it)"
    wget --no-verbose --continue --tries="${TRIES}" --timeout="${READ_TIMEOUT}" --waitretry=10 \
        --directory-prefix "${folder}" "${url}" \
        || die "downloading ${url} failed after ${TRIES} tries; ${rerun} to resume, or ${where}"
}

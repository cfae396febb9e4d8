#!/usr/bin/env bash
# ILS-SSL pipeline: data -> k-means targets -> HuBERT it1 -> ILS it2 (+ HuBERT baseline) -> cluster
# quality -> CTC fine-tuning -> decoding -> scoring -> packing -> upload. In the manner of ESPnet's
# egs2/TEMPLATE/asr1/asr.sh: numbered stages that never change, options checked before stage 1.
set -euo pipefail

log() {
    local fname=${BASH_SOURCE[1]##*/}
    echo -e "$(date '+%Y-%m-%dT%H:%M:%S') (${fname}:${BASH_LINENO[0]}:${FUNCNAME[1]}) $*" >&2
}
SECONDS=0
cmdline="$0 $*"

# General options
stage=1                # First stage to run.
stop_stage=12          # Last stage to run.
ngpu=1                 # GPUs per node for training (0: CPU).
num_nodes=1            # Nodes for distributed training (through ESPnet's launcher).
nj=32                  # Shards for feature, label and data jobs.
inference_nj=32        # Shards for decoding.
python=python          # Python of the project's .venv (path.sh activates it).
expdir=exp             # Experiments.
dumpdir=dump           # Features, labels and formatted data.
datadir=data           # Kaldi-style data directories.
seed=0                 # Seed for k-means portions, k-means and training.
disk_check=true        # Before stage 1, log per stage of the run the audio hours, files and bytes it writes (an estimate: espnet_ils/recipe/disk_plan.py) and the free space, and stop, naming the folders, when a filesystem cannot hold them; false: no plan, no stop (if you know better).

# Data options
corpus=librispeech     # librispeech or mini (the embedded TTS corpus).
mini_hours=1.5         # Size of the mini corpus in hours (corpus=mini).
train_set=train_960    # Pretraining set (LibriSpeech's train_960, or Libri-Light's unlab_small, unlab_medium, unlab_large, unlab_60k: local/data.sh).
valid_set=dev_clean    # Validation set for pretraining and fine-tuning.
finetune_set=finetune_10h  # Labelled fine-tuning set (finetune_1h, finetune_10h, train_clean_100).
test_sets="test_clean test_other"  # Sets to decode and score.
min_wav_duration=2.0   # Pretraining utterances shorter than this (s) are dropped (paper: 2 s).
max_wav_duration=30.0  # Utterances longer than this (s) are dropped from training sets.
num_splits_ssl=1       # Pretraining (stages 4, 6): parts that --train_set's wav.scp, labels and speech_shape are cut into, once per label set, for ESPnet's split iterator (--multiple_iterator true): a training process holds one part in memory instead of all (Libri-Light 60k h: 48 GiB of data per process unsplit, 3.0 GiB with 32 parts: bench/README.md); 1: no split.
num_splits_asr=1       # Fine-tuning (stage 8): the same for --finetune_set's wav.scp, text and speech_shape; 1: no split.

# Iteration 1 (HuBERT on MFCC targets)
it1_n_clusters=100     # k-means clusters on MFCC (paper: 100).
it1_config=conf/tuning/train_ssl_hubert_base_it1.yaml  # Pretraining config of iteration 1.
kmeans_portion=0.1     # Share of the training utterances k-means is fitted on.
kmeans_n_init=3        # k-means++ restarts (reference: 20; 3 is within 0.2% inertia, 2.8x faster: bench/README.md).
kmeans_max_hours=100   # Most audio (h) k-means is fitted on; the fit holds its frames in memory (iteration 2, 768 dims: 0.55 GB per hour in float32).
kmeans_feats_storage=float32  # Iteration 2: how the k-means portion's features (the only features stage 5 writes) are stored: float32, or two_byte (Kaldi's 2-byte compressed matrices: half the bytes; bench/README.md).
label_model=           # Iteration 2: the model whose block --it2_layer gives the targets; empty: the iteration-1 model. Else a fairseq HuBERT checkpoint (hubert_base_ls960.pt), a torchaudio HuBERT state dict, a Hugging Face directory or an ESPnet model (espnet_ils.targets.label_models), and there is no iteration 1 (stages 3 and 4 are skipped); the paper's LARGE: HuBERT BASE, block 9.
label_kmeans=          # Iteration 2: an existing k-means model of that block (e.g. fairseq's hubert_base_ls960_L9_km500.bin) instead of one fitted on --kmeans_portion; it must have --it2_n_clusters clusters.
label_batch_size=1     # Iteration 2: utterances per forward pass of the feature and label jobs (1 on the CPU reproduces the labels of dumped features bit for bit; 8-16 on a GPU).

# Iteration 2 (ILS on labels from a block of the iteration-1 model)
it2_layer=6            # 1-based block of the iteration-1 model the targets come from (paper: 6), or auto: the block whose k-means labels score the highest PNMI on --quality_sets (HuBERT's choice; chosen in stage 5 and logged with every block's figures; 6 without alignments).
it2_n_clusters=500     # k-means clusters on that block (paper: 500).
it2_config=conf/tuning/train_ssl_ils_base_it2.yaml  # ILS pretraining config of iteration 2.
baseline=false         # Also train the HuBERT baseline (the it2 config, top block supervised only).
it2_seeds=0            # Seeds of iteration 2 and fine-tuning: one run per arm and seed (e.g. "0 1").
pretrain_args=         # Extra arguments for ssl_train (e.g. "--max_epoch 1").

# Cluster quality per block (stage 7, the paper's figure 2)
quality_sets=          # Aligned sets scored (paper: dev_clean dev_other); empty: --valid_set.
phone_alignments=      # Forced alignments of those sets: MFA TextGrids (a folder, any layout) or fairseq's frame-level .tsv files; empty: the data directories' own phone_alignment (mini corpus).
quality_fit_hours=1    # k-means per block is fitted on a random subset of --train_set of this many hours (paper: 100; memory: about 0.5 GB per 10 min of audio for BASE's 13 layers).
quality_n_clusters=500 # k-means clusters per block (paper: 500).
train_threads=0        # CPU threads per training process (0: the cores / --train_jobs; sharded jobs use 1 each).
train_jobs=1           # Trainings at once in stages 6, 7 (probes) and 8, and decodings in stage 9, one per run (on 2 CPU cores two mini trainings of 1 thread each make 1.5x the steps of one of 2 threads).

# Frozen probes per iteration-2 model (stage 7; SUPERB's protocol, the paper's table 2)
probe_tasks="pr sid"   # pr: phone recognition (a linear CTC layer over phones from the phone alignments; PER on --test_sets), sid: speaker identification (mean pooling, a linear classifier; accuracy on held-out utterances); both on a learned weighted sum of the frozen model's blocks; empty: no probes.
probe_pr_config=conf/tuning/train_probe_pr_base.yaml  # Phone-recognition probe config (ESPnet's ASR task).
probe_sid_config=conf/tuning/train_probe_sid_base.yaml  # Speaker-identification probe config (ESPnet's classification task).
probe_pr_train_set=    # pr: the set it learns from (validated on --valid_set, scored on --test_sets; all need phone alignments, as for stage 7's --quality_sets); empty: --finetune_set.
probe_sid_set=         # sid: the set whose speakers it identifies (LibriSpeech: train_clean_100); empty: --finetune_set.
probe_held_out=0.1     # sid: share of each speaker's utterances held out for validation, and as many for the test.
probe_args=            # Extra arguments for the probes' training (e.g. "--max_epoch 1").

# Fine-tuning, decoding, packing
asr_config=conf/tuning/train_asr_ctc_base_10h.yaml  # CTC fine-tuning config.
asr_args=              # Extra arguments for asr_train.
decode_modes="greedy beam"  # greedy: CTC best path; beam: ESPnet's CTC prefix beam search; ngram: lexicon beam search with a word n-gram; lm_fusion, lm_rescore: a letter Transformer LM fused in ESPnet's beam search, or rescoring the N best of a lexicon-free beam search.
beam_size=20           # Beam of the beam mode.
ngram_text=            # Word n-gram: its training text (Kaldi text); empty: the transcripts of --train_set (of --finetune_set when --train_set is Libri-Light's unlab_*, which has none).
ngram_arpa=            # Word n-gram: an existing ARPA (e.g. LibriSpeech's 4-gram.arpa.gz) instead of one built from ngram_text.
ngram_order=4          # Word n-gram: order of the one built with IRSTLM (paper: 4-gram).
lexicon_beam_size=500  # ngram mode: hypotheses per frame (paper: 1500; fairseq's HuBERT decoding: 500).
lexicon_beam_threshold=100  # ngram mode: hypotheses this far below the best are dropped (fairseq: 100).
lexicon_lm_weights=0.5,1,2,3  # ngram mode: LM weights tried on --valid_set.
lexicon_word_scores=-1,0,1  # ngram mode: word insertion scores tried on --valid_set.
lm_config=conf/tuning/train_lm_transformer_librispeech.yaml  # Letter LM (modes lm_fusion, lm_rescore): its ESPnet LM config, trained in stage 8.
lm_train_text=         # Letter LM: Kaldi texts it trains on; empty: the transcripts of --train_set (of --finetune_set when --train_set is Libri-Light's unlab_*, which has none).
lm_train_corpus=       # Letter LM: plain-text corpora it also trains on (e.g. librispeech-lm-norm.txt.gz).
lm_max_chars=0         # Letter LM: longest training sentence kept, in characters (0: all).
lm_args=               # Extra arguments for lm_train (e.g. "--max_epoch 1").
lm_exp=                # Letter LM: an existing ESPnet LM experiment (config.yaml, lm_inference_model) instead of training one.
lm_inference_model=valid.loss.best.pth  # Letter LM checkpoint to decode with.
fusion_beam_size=10    # lm_fusion: ESPnet's beam (at most 30: the 31 tokens but the blank).
rescore_beam_size=50   # lm_rescore: hypotheses the lexicon-free search keeps, all rescored.
lm_weights=0.5,1       # lm_fusion, lm_rescore: LM weights tried on --valid_set.
lm_penalties=0,1       # lm_fusion, lm_rescore: per-letter bonuses tried on --valid_set.
inference_model=valid.cer_ctc.best.pth  # Checkpoint of the fine-tuned model to decode and pack; valid.cer_ctc.ave.pth or valid.loss.ave.pth: ESPnet's average of the keep_nbest_models best.
hf_license=cc-by-4.0   # Stage 12: licence of the shared models' files, a Hub licence id (LibriSpeech's is CC BY 4.0).
hf_upload=true         # Stage 12: true uploads each run's Hub folder; false only writes it (<asr exp>/hub), to inspect it before a later upload.
hf_repo=               # Stage 12: Hugging Face repository (user/name) that Speech2Text.from_pretrained loads; with several runs (--baseline true, several --it2_seeds) one per run, user/name_<run>; empty skips stage 12.

# Option parsing: the options are exactly the variables assigned from "# General options" down to
# this line; the parser accepts these names and --help lists them (one source of truth).
option_names=" "
option_help=""
in_options=false
while IFS= read -r line; do
    case ${line} in
        "# General options") in_options=true ;;
        "# Option parsing:"*) break ;;
    esac
    if ! ${in_options} || [[ ! ${line} =~ ^[a-z_0-9]+= ]]; then continue; fi
    if [[ ! ${line} =~ ^([a-z_0-9]+)=(\"[^\"]*\"|[^ ]*)\ +#\ (.*)$ ]]; then
        log "Internal error: option line without a help comment: ${line}"; exit 1
    fi
    option_names+="${BASH_REMATCH[1]} "
    option_help+="  --${BASH_REMATCH[1]} [${BASH_REMATCH[2]}] ${BASH_REMATCH[3]}"$'\n'
done < "$0"

help_message=$(cat << EOF
Usage: $0 [options]

Stages:
  1: data preparation (corpus=${corpus}: local/data.sh)
  2: format data directories into ${dumpdir}/raw (duration filters, shape files)
  3: iteration-1 targets: MFCC features, k-means (${it1_n_clusters}), labels (skipped with --label_model)
  4: iteration-1 HuBERT pretraining (skipped with --label_model)
  5: iteration-2 targets: k-means (${it2_n_clusters}) fitted on block ${it2_layer} of the iteration-1
     model over a seeded --kmeans_portion of --train_set (at most --kmeans_max_hours; the only
     features written), then every utterance's labels straight from audio (no features written)
  6: iteration-2 ILS pretraining (and the HuBERT baseline with --baseline true)
  7: analysis of the iteration-2 models: cluster quality (phone purity, cluster purity, PNMI) per
     block, where phone alignments exist (--phone_alignments): k-means per block fitted on
     --quality_fit_hours of --train_set, scored on --quality_sets; and frozen probes (--probe_tasks
     ${probe_tasks:-none}): phone recognition (PER) and speaker identification (accuracy) on a
     learned weighted sum of each model's blocks, into \${expdir}/probes_<it2 tag>/{probes.tsv,
     layer_weights.png}
  8: letter token list, the word n-gram and lexicon (mode ngram), the letter LM (modes lm_*), CTC fine-tuning
  9: decoding (${decode_modes}); greedy, ngram, lm_*: CTC log-probs kept, LM weight x word score
     (ngram) or x per-letter penalty (lm_*) tuned on the valid set
 10: scoring (WER, CER) into \${expdir}/RESULTS.md (ESPnet's format), and with --baseline true
     the ILS vs HuBERT table (error rates, per-layer PNMI, probes, seed spread) in \${expdir}/comparison_<set>.md,
     shown in the log; the runs it compares are listed in \${expdir}/runs.tsv (written from stage 6 on)
 11: packing each fine-tuned model with its SSL model into a zip for Speech2Text
 12: sharing on the Hugging Face Hub (skipped unless --hf_repo is set): each packed model as ESPnet's
     Hub models hold it (the zip's files and a model card with \${expdir}/RESULTS.md, the configs,
     licence and citations) in <asr exp>/hub, then uploaded (--hf_upload)

Options (defaults in brackets):
${option_help}
EOF
)

# Parse --name value options.
while [ $# -gt 0 ]; do
    case $1 in
        --help | -h) echo "${help_message}"; exit 0 ;;
        --*)
            name=${1#--}
            if [[ ${option_names} != *" ${name} "* ]]; then
                log "Unknown option $1. See $0 --help."; exit 1
            fi
            [ $# -ge 2 ] || { log "Option $1 needs a value. See $0 --help."; exit 1; }
            printf -v "${name}" '%s' "$2"
            shift 2 ;;
        *) log "Unexpected argument '$1'. See $0 --help."; exit 1 ;;
    esac
done

. ./path.sh
. ./cmd.sh
. ./db.sh

# ---------------------------------------------------------------------------------------------
# Check every option before any work starts.
die() { log "Error: $*"; exit 1; }
is_int() { [[ $1 =~ ^[0-9]+$ ]]; }
is_number() { [[ $1 =~ ^[0-9]*\.?[0-9]+([eE][+-]?[0-9]+)?$ ]]; }  # non-negative: 0.5, 2, 1e9
is_positive_number() { is_number "$1" && awk -v x="$1" 'BEGIN { exit !(x > 0) }'; }
# A file of LibriSpeech's LM resources in ${LIBRISPEECH_LM} (db.sh), which stage 1 fetches when
# missing (local/lm_resources.sh); a file elsewhere must exist.
lm_resource() {
    [ "$(dirname "$1")" -ef "${LIBRISPEECH_LM}" ] || [ "$(dirname "$1")" = "${LIBRISPEECH_LM}" ] || return 1
    case $(basename "$1") in 4-gram.arpa.gz | librispeech-lexicon.txt | librispeech-lm-norm.txt.gz) ;; *) return 1 ;; esac
}
exists_or_fetched() { [ -f "$1" ] || { [ "${corpus}" = librispeech ] && lm_resource "$1"; }; }
for s in ${it2_seeds}; do is_int "${s}" || die "--it2_seeds: seeds are integers, got '${s}'"; done
[ "${it2_layer}" = auto ] || is_int "${it2_layer}" || die "--it2_layer must be a block number or auto, got '${it2_layer}'"
# The *_args options, split into words once and passed on as arrays, never glob-expanded: a value
# such as "--scheduler_conf warmup_steps_list=[0,200,2000]" reaches ESPnet as written.
read -r -a pretrain_argv <<< "${pretrain_args}"
read -r -a probe_argv <<< "${probe_args}"
read -r -a asr_argv <<< "${asr_args}"
read -r -a lm_argv <<< "${lm_args}"
# Every count and size is checked here, before stage 1, so that none stops a later stage.
for option in stage stop_stage ngpu seed train_threads lm_max_chars; do
    is_int "${!option}" || die "--${option} must be a non-negative integer, got '${!option}'"
done
for option in num_nodes nj inference_nj train_jobs it1_n_clusters it2_n_clusters kmeans_n_init \
        quality_n_clusters beam_size label_batch_size; do
    { is_int "${!option}" && [ "${!option}" -ge 1 ]; } || die "--${option} must be a positive integer, got '${!option}'"
done
is_number "${kmeans_max_hours}" || die "--kmeans_max_hours must be a non-negative number (0: no cap), got '${kmeans_max_hours}'"
for option in mini_hours kmeans_portion; do
    is_positive_number "${!option}" || die "--${option} must be a positive number, got '${!option}'"
done
[ -z "${label_model}" ] || [ -e "${label_model}" ] || die "--label_model ${label_model}: no such file or directory"
[ -z "${label_kmeans}" ] || [ -f "${label_kmeans}" ] || die "--label_kmeans ${label_kmeans}: no such file"
if [ -n "${label_model}" ] && [ "${it2_layer}" = auto ]; then
    die "--it2_layer auto scores the iteration-1 model's blocks; with --label_model give the block (the paper's LARGE: 9 of HuBERT BASE)"
fi
case ${kmeans_feats_storage} in float32 | two_byte) ;; *) die "--kmeans_feats_storage ${kmeans_feats_storage}: float32 or two_byte" ;; esac
case ${hf_upload} in true | false) ;; *) die "--hf_upload ${hf_upload}: true or false" ;; esac
[ -z "${hf_repo}" ] || [[ ${hf_repo} =~ ^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$ ]] \
    || die "--hf_repo ${hf_repo}: a Hugging Face repository is user/name (letters, digits, . _ -)"
is_number "${quality_fit_hours}" || die "--quality_fit_hours must be a non-negative number, got '${quality_fit_hours}'"
if [ "${stage}" -lt 1 ] || [ "${stage}" -gt 12 ]; then die "--stage ${stage}: stages are 1..12 (see --help)"; fi
if [ "${stop_stage}" -lt 1 ] || [ "${stop_stage}" -gt 12 ]; then die "--stop_stage ${stop_stage}: stages are 1..12"; fi
if [ "${stage}" -gt "${stop_stage}" ]; then die "--stage ${stage} is after --stop_stage ${stop_stage}"; fi
if [ "${nj}" -lt 1 ] || [ "${inference_nj}" -lt 1 ]; then die "--nj and --inference_nj must be >= 1"; fi
for option in num_splits_ssl num_splits_asr; do
    { is_int "${!option}" && [ "${!option}" -ge 1 ]; } || die "--${option} must be an integer >= 1 (1: no split), got '${!option}'"
done
case ${corpus} in librispeech | mini) ;; *) die "--corpus ${corpus}: librispeech or mini" ;; esac
case ${baseline} in true | false) ;; *) die "--baseline ${baseline}: true or false" ;; esac
if [ "${num_nodes}" -gt 1 ] && [ "${cmd_backend}" = local ]; then
    die "--num_nodes ${num_nodes}: training on several nodes needs a scheduler (cmd_backend=slurm, cmd.sh); the local backend runs one node"
fi
for config in it1_config it2_config asr_config; do
    [ -f "${!config}" ] || die "--${config} ${!config}: no such file"
done
for task in ${probe_tasks}; do
    case ${task} in pr | sid) ;; *) die "--probe_tasks: unknown task '${task}' (pr, sid)" ;; esac
    config=probe_${task}_config
    [ -f "${!config}" ] || die "--${config} ${!config}: no such file"
done
[[ ${probe_held_out} =~ ^0?\.[0-9]+$ ]] || die "--probe_held_out must be a share in (0, 0.5), got '${probe_held_out}'"
# Every config is built once (CPU, 15 s) so that one which cannot build stops the run now; again
# only when a config or a cluster count changed since it passed in this expdir (the marker).
# (with --label_model there is no iteration 1, and its config is not built)
it1_check=(--it1_config "${it1_config}" --it1_n_clusters "${it1_n_clusters}")
[ -z "${label_model}" ] || it1_check=()
${python} -m espnet_ils.bin.check_configs "${it1_check[@]}" \
    --it2_config "${it2_config}" --it2_n_clusters "${it2_n_clusters}" --asr_config "${asr_config}" \
    --marker "${expdir}/.configs_checked" || die "the configs do not fit the options (see the error above)"
for mode in ${decode_modes}; do
    case ${mode} in
        greedy | beam | ngram | lm_fusion | lm_rescore) ;;
        *) die "--decode_modes: unknown mode '${mode}' (greedy, beam, ngram, lm_fusion, lm_rescore)" ;;
    esac
done
if [[ " ${decode_modes} " == *" ngram "* ]]; then
    for option in ngram_order lexicon_beam_size; do
        { is_int "${!option}" && [ "${!option}" -ge 1 ]; } || die "--${option} must be a positive integer, got '${!option}'"
    done
    if [ -n "${ngram_arpa}" ]; then
        exists_or_fetched "${ngram_arpa}" || die "--ngram_arpa ${ngram_arpa}: no such file"
    else
        [ -z "${ngram_text}" ] || [ -f "${ngram_text}" ] || die "--ngram_text ${ngram_text}: no such file"
        ${python} -c "from espnet_ils.decoding.ngram import irstlm_tool; irstlm_tool('build-lm.sh')" 2> /dev/null \
            || die "decode mode ngram builds its n-gram with IRSTLM, which is not installed: run local/install_lm_tools.sh (root), or pass --ngram_arpa"
    fi
fi
if [[ " ${decode_modes} " == *" lm_"* ]]; then
    for option in fusion_beam_size rescore_beam_size; do
        { is_int "${!option}" && [ "${!option}" -ge 1 ]; } || die "--${option} must be a positive integer, got '${!option}'"
    done
    if [ -n "${lm_exp}" ]; then
        for file in config.yaml "${lm_inference_model}"; do
            [ -f "${lm_exp}/${file}" ] || die "--lm_exp ${lm_exp}: no ${file} (an ESPnet LM experiment has config.yaml and its checkpoints)"
        done
    else
        [ -f "${lm_config}" ] || die "--lm_config ${lm_config}: no such file"
        for text in ${lm_train_text} ${lm_train_corpus}; do
            exists_or_fetched "${text}" || die "--lm_train_text/--lm_train_corpus: ${text}: no such file"
        done
    fi
fi
# A stage that needs the outputs of an earlier stage which is not run now checks them itself.
require_dir() { [ -d "$1" ] || die "$1 does not exist: run the stage that makes it ($2) first"; }

it1_tag=it1_mfcc_km${it1_n_clusters}
# --it2_layer auto: the block chosen in stage 5 is kept in ${it2_choice}; a run that starts after stage
# 5 reads it back (it names the iteration-2 experiments through it2_tag).
it2_layer_option=${it2_layer}
it2_choice=${expdir}/cluster_quality_${it1_tag}/chosen_block
if [ "${it2_layer}" = auto ] && [ -f "${it2_choice}" ]; then
    it2_layer=$(cat "${it2_choice}")
elif [ "${it2_layer}" = auto ] && [ "${stage}" -gt 5 ]; then
    die "--it2_layer auto: no block chosen yet (${it2_choice}): run stage 5"
fi
# Targets from another model than iteration 1 are named after it too (it2_L9_km500_hubert_base_ls960).
label_name=""; [ -n "${label_model}" ] && label_name=$(basename "${label_model%/}") && label_name=_${label_name%.*}
it2_tag=it2_L${it2_layer}_km${it2_n_clusters}${label_name}
it1_exp=${expdir}/ssl_${it1_tag}_hubert
arms="ils"; [ "${baseline}" = true ] && arms="ils hubert"
# The runs of iteration 2, one per arm and seed (ils_seed0: arm ils, seed 0), with their arm and seed
# kept as data; the comparison of stage 10 reads them from ${expdir}/runs.tsv.
runs=""
declare -A arm_of seed_of
for s in ${it2_seeds}; do
    for arm in ${arms}; do
        runs+="${arm}_seed${s} "; arm_of[${arm}_seed${s}]=${arm}; seed_of[${arm}_seed${s}]=${s}
    done
done
ssl_sets="${train_set} ${valid_set}"
# The transcripts the word n-gram and the letter LM learn by default: --train_set's, or
# --finetune_set's when --train_set is Libri-Light's (unlab_*: audio only).
transcribed_set=${train_set}
[[ ${train_set} == unlab_* ]] && transcribed_set=${finetune_set}
quality_sets=${quality_sets:-${valid_set}}
probe_pr_train_set=${probe_pr_train_set:-${finetune_set}}
probe_sid_set=${probe_sid_set:-${finetune_set}}
probe_sets=""
[[ " ${probe_tasks} " == *" pr "* ]] && probe_sets+=" ${probe_pr_train_set}"
[[ " ${probe_tasks} " == *" sid "* ]] && probe_sets+=" ${probe_sid_set}"
all_sets=$(echo "${train_set} ${valid_set} ${finetune_set} ${test_sets} ${quality_sets}${probe_sets}" | tr ' ' '\n' | sort -u | paste -sd ' ')

# Skip decisions (espnet_ils.data.markers): "step_done <marker> <what> [--option NAME=VALUE]
# [--input NAME=FILE] [--resumable true]..." succeeds, and logs why, when the marker holds these
# options and the checksums of these inputs; otherwise it logs what changed and fails, and the caller
# does the work and then "step_finished <marker>" writes the marker (last) with what the check saw.
# Training is resumable: one done or started with other inputs stops the pipeline instead.
step_done() {
    local marker=$1 what=$2 status=0; shift 2
    ${python} -m espnet_ils.bin.marker check "${marker}" --what "${what}" "$@" || status=$?
    [ "${status}" -le 1 ] || die "${what}: stopped (see the error above)"
    return "${status}"
}
step_finished() { ${python} -m espnet_ils.bin.marker write "$1"; }

run_stage() { [ "${stage}" -le "$1" ] && [ "${stop_stage}" -ge "$1" ]; }

# "each_run <function>": <function> <run> for every run, --train_jobs of them at once; when one
# fails the pipeline stops after the others have ended (the failed ones' messages say why).
each_run() {
    local func=$1 run pids=() failed=() i=0
    if [ "${train_jobs}" -le 1 ]; then
        for run in ${runs}; do "${func}" "${run}"; done
        return
    fi
    for run in ${runs}; do
        while [ "$(jobs -rp | wc -l)" -ge "${train_jobs}" ]; do wait -n || true; done
        "${func}" "${run}" &
        pids+=("$!")
    done
    for run in ${runs}; do
        wait "${pids[${i}]}" || failed+=("${run}")
        i=$((i + 1))
    done
    [ "${#failed[@]}" -eq 0 ] || die "${func}: run(s) ${failed[*]} failed (see above)"
}

# The training-set arguments of ssl_train and asr_train, into the caller's array train_data:
#   training_set_args <num_splits> <data dir> <text>   (wav.scp and speech_shape: in <data dir>)
# With num_splits > 1 the three files are cut by utterance (espnet_ils.bin.split_scps) into
# <text's folder>/split<num_splits>/{wav.scp,text,speech_shape}/split.<i> for ESPnet's split
# iterator (--multiple_iterator true), once per content of the files; runs at once (--train_jobs)
# wait for the one that cuts them.
training_set_args() {
    local num_splits=$1 wav_scp=$2/wav.scp text=$3 shape=$2/speech_shape split_dir
    train_data=()
    if [ "${num_splits}" -gt 1 ]; then
        split_dir=$(dirname "${text}")/split${num_splits}
        mkdir -p "${split_dir}"
        (
            flock 9
            if ! step_done "${split_dir}/.done" "splitting ${split_dir}" --option "num_splits=${num_splits}" \
                    --input "wav.scp=${wav_scp}" --input "text=${text}" --input "speech_shape=${shape}"; then
                log "splitting ${wav_scp}, ${text}, ${shape} into ${num_splits} parts -> ${split_dir}"
                ${python} -m espnet_ils.bin.split_scps --scps "${wav_scp}" "${text}" "${shape}" \
                    --num_splits "${num_splits}" --output_dir "${split_dir}"
                step_finished "${split_dir}/.done"
            fi
        ) 9> "${split_dir}/.lock"
        wav_scp=${split_dir}/wav.scp text=${split_dir}/text shape=${split_dir}/speech_shape
        train_data=(--multiple_iterator true)
    fi
    train_data+=(--train_data_path_and_name_and_type "${wav_scp},speech,sound"
        --train_data_path_and_name_and_type "${text},text,text" --train_shape_file "${shape}")
}

# Start a training through ESPnet's launcher (DDP, multi-node); resumes from its checkpoint.
launch_training() {
    local exp=$1 module=$2; shift 2
    mkdir -p "${exp}"
    local threads=${train_threads}
    # nproc alone would answer path.sh's OMP_NUM_THREADS=1 (GNU nproc honours it)
    [ "${threads}" -gt 0 ] || threads=$(( $(env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc) / train_jobs ))
    [ "${threads}" -gt 0 ] || threads=1
    OMP_NUM_THREADS=${threads} ${python} -m espnet2.bin.launch --cmd "${cuda_cmd}" --log "${exp}/train.log" \
        --ngpu "${ngpu}" --num_nodes "${num_nodes}" --init_file_prefix "${exp}/.dist_init_" \
        --multiprocessing_distributed true -- \
        ${python} -m "${module}" --resume true --output_dir "${exp}" --seed "${seed}" "$@"
}

# k-means on a training set's feature shards: fit_km <tag> <feature root> <portion> <n_clusters>
fit_km() {
    local tag=$1 feats_root=$2 portion=$3 n_clusters=$4 km_dir=${expdir}/kmeans/$1
    # The features are identified by their shard listings and markers (which hold the identity of
    # the audio and model they come from).
    local features=()
    for job in $(seq 1 "${nj}"); do
        features+=(--input "features=${feats_root}/${train_set}/feats.${job}.scp"
            --input "features=${feats_root}/${train_set}/.done.${job}")
    done
    if ! step_done "${km_dir}/.done" "k-means ${km_dir}" --option "n_clusters=${n_clusters}" \
            --option "portion=${portion}" --option "n_init=${kmeans_n_init}" \
            --option "seed=${seed}" --option "nj=${nj}" "${features[@]}"; then
        ${train_cmd} "${km_dir}/log/fit_kmeans.log" ${python} -m espnet_ils.bin.fit_kmeans \
            --feats_dir "${feats_root}/${train_set}" --n_clusters "${n_clusters}" \
            --portion "${portion}" --n_init "${kmeans_n_init}" --seed "${seed}" --nj "${nj}" \
            --model "${km_dir}/km.joblib"
        step_finished "${km_dir}/.done"
    fi
}

# Each set's label shards -> its text, and the token list: merge_label_shards <tag> <n_clusters>
merge_label_shards() {
    local labels_root=${dumpdir}/labels/$1
    for dset in ${ssl_sets}; do
        ${python} -m espnet_ils.bin.merge_labels --wav_scp "${dumpdir}/raw/${dset}/wav.scp" \
            --label_dir "${labels_root}/${dset}" --nj "${nj}" --output "${labels_root}/${dset}/text"
    done
    ${python} -m espnet_ils.bin.write_token_list --num_classes "$2" --output "${labels_root}/tokens.txt"
}

# Targets from features dumped for every utterance (stage 3, MFCC: 39 dims):
#   feature_targets <tag> <feature root> <feature rate Hz> <n_clusters>
feature_targets() {
    local tag=$1 feats_root=$2 rate=$3 n_clusters=$4
    fit_km "${tag}" "${feats_root}" "${kmeans_portion}" "${n_clusters}"
    for dset in ${ssl_sets}; do
        log "labels ${tag}: ${feats_root}/${dset} -> ${dumpdir}/labels/${tag}/${dset}/text"
        ${train_cmd} JOB=1:"${nj}" "${dumpdir}/labels/${tag}/${dset}/log/dump_labels.JOB.log" \
            ${python} -m espnet_ils.bin.dump_labels --feats_dir "${feats_root}/${dset}" \
                --feature_rate "${rate}" --km_model "${expdir}/kmeans/${tag}/km.joblib" \
                --outdir "${dumpdir}/labels/${tag}/${dset}" --nj "${nj}" --job JOB
    done
    merge_label_shards "${tag}" "${n_clusters}"
}

# Targets from a block of a model (stage 5): k-means fitted on the block's features of a seeded
# --kmeans_portion of --train_set (at most --kmeans_max_hours; the only features written), then
# every utterance's labels straight from audio, batch by batch (espnet_ils.targets.model_labels).
#   model_targets <tag> <model file> <layer> <n_clusters>
model_targets() {
    local tag=$1 model=$2 layer=$3 n_clusters=$4
    local feats_dir=${dumpdir}/feats_$1/${train_set} labels_root=${dumpdir}/labels/$1
    local device=cpu jobs_opts=()
    if [ "${ngpu}" -gt 0 ]; then
        device=cuda jobs_opts=(--gpu 1)
        # one job per GPU: the local runner would start one per core, all on the one device
        [ "${cmd_backend}" = local ] && jobs_opts+=(--max_jobs 1)
    fi
    local km=${label_kmeans:-${expdir}/kmeans/${tag}/km.joblib}
    if [ -n "${label_kmeans}" ]; then
        log "k-means: ${label_kmeans} (--label_kmeans), no features written"
    else
        if ! step_done "${feats_dir}/portion.done" "k-means portion ${feats_dir}/portion" \
                --option "portion=${kmeans_portion}" --option "max_hours=${kmeans_max_hours}" \
                --option "seed=${seed}" --input "lengths=${dumpdir}/raw/${train_set}/utt2num_samples"; then
            ${python} -m espnet_ils.bin.kmeans_portion --data_dir "${dumpdir}/raw/${train_set}" \
                --portion "${kmeans_portion}" --max_hours "${kmeans_max_hours}" --seed "${seed}" \
                --output "${feats_dir}/portion"
            step_finished "${feats_dir}/portion.done"
        fi
        log "features of block ${layer} of ${model} for the k-means portion ${feats_dir}/portion -> ${feats_dir}"
        ${cuda_cmd} "${jobs_opts[@]}" JOB=1:"${nj}" "${feats_dir}/log/extract.JOB.log" \
            ${python} -m espnet_ils.bin.extract_layer_features --model_file "${model}" --layer "${layer}" \
                --wav_scp "${dumpdir}/raw/${train_set}/wav.scp" --utt_list "${feats_dir}/portion" \
                --storage "${kmeans_feats_storage}" --out_dir "${feats_dir}" --nj "${nj}" --job JOB \
                --batch_size "${label_batch_size}" --device "${device}"
        fit_km "${tag}" "${dumpdir}/feats_${tag}" 1.0 "${n_clusters}"  # all the portion's features
    fi
    for dset in ${ssl_sets}; do
        # the portion's float32 features give its labels without running the model again
        local stored=()
        if [ "${dset}" = "${train_set}" ] && [ -z "${label_kmeans}" ] && [ "${kmeans_feats_storage}" = float32 ]; then
            stored=(--feats_dir "${feats_dir}")
        fi
        log "labels ${tag}: block ${layer} of ${model} on ${dumpdir}/raw/${dset} -> ${labels_root}/${dset}/text"
        ${cuda_cmd} "${jobs_opts[@]}" JOB=1:"${nj}" "${labels_root}/${dset}/log/model_labels.JOB.log" \
            ${python} -m espnet_ils.bin.model_labels --model_file "${model}" --layer "${layer}" \
                --km_model "${km}" --n_clusters "${n_clusters}" "${stored[@]}" \
                --data_dir "${dumpdir}/raw/${dset}" --outdir "${labels_root}/${dset}" --nj "${nj}" \
                --job JOB --batch_size "${label_batch_size}" --device "${device}"
    done
    merge_label_shards "${tag}" "${n_clusters}"
}

# SSL pretraining on a label set: ssl_pretrain <exp> <config> <labels tag> <seed>
ssl_pretrain() {
    local exp=$1 config=$2 tag=$3 run_seed=$4 labels_root=${dumpdir}/labels/$3 split=() train_data
    [ "${num_splits_ssl}" -eq 1 ] || split=(--option "num_splits_ssl=${num_splits_ssl}")
    if step_done "${exp}/.done" "pretraining ${exp}" --resumable true --option "seed=${run_seed}" \
            --option "pretrain_args=${pretrain_args}" "${split[@]}" --input "config=${config}" \
            --input "tokens=${labels_root}/tokens.txt" \
            --input "train_wav_scp=${dumpdir}/raw/${train_set}/wav.scp" \
            --input "train_labels=${labels_root}/${train_set}/text" \
            --input "valid_wav_scp=${dumpdir}/raw/${valid_set}/wav.scp" \
            --input "valid_labels=${labels_root}/${valid_set}/text"; then
        return
    fi
    training_set_args "${num_splits_ssl}" "${dumpdir}/raw/${train_set}" "${labels_root}/${train_set}/text"
    log "pretraining ${exp} (config ${config}, labels ${labels_root}); log: ${exp}/train.log"
    # shellcheck disable=SC2086
    launch_training "${exp}" espnet_ils.bin.ssl_train --config "${config}" \
        --token_list "${labels_root}/tokens.txt" --token_type word "${train_data[@]}" \
        --valid_data_path_and_name_and_type "${dumpdir}/raw/${valid_set}/wav.scp,speech,sound" \
        --valid_data_path_and_name_and_type "${labels_root}/${valid_set}/text,text,text" \
        --valid_shape_file "${dumpdir}/raw/${valid_set}/speech_shape" --seed "${run_seed}" "${pretrain_argv[@]}"
    [ -f "${exp}/valid.loss.best.pth" ] || die "${exp}: training ended without valid.loss.best.pth"
    step_finished "${exp}/.done"
}

# The word n-gram of decode mode ngram, built from ngram_text into ${ngram_dir}/{lm.arpa,words.txt,
# perplexity.tsv} (perplexity and OOV rate of the valid and test sets) or taken from ngram_arpa, and
# its letter lexicon in the fine-tuning token list, ${ngram_dir}/lexicon.txt.
prepare_ngram() {
    local text=${ngram_text:-${dumpdir}/raw/${transcribed_set}/text} inputs=() eval_texts=()
    inputs=(--input "tokens=${token_dir}/tokens.txt")
    if [ -n "${ngram_arpa}" ]; then inputs+=(--input "arpa=${ngram_arpa}"); else inputs+=(--input "text=${text}"); fi
    for dset in ${valid_set} ${test_sets}; do
        eval_texts+=(--eval_text "${dumpdir}/raw/${dset}/text")
        inputs+=(--input "eval_${dset}=${dumpdir}/raw/${dset}/text")
    done
    if step_done "${ngram_dir}/.done" "Stage 8: word n-gram and lexicon ${ngram_dir}" \
            --option "order=${ngram_order}" "${inputs[@]}"; then
        return
    fi
    if [ -n "${ngram_arpa}" ]; then
        log "Stage 8: letter lexicon of ${ngram_arpa} -> ${ngram_dir}/lexicon.txt"
        mkdir -p "${ngram_dir}"
        ${python} -m espnet_ils.bin.ctc_decode lexicon --token_list "${token_dir}/tokens.txt" \
            --arpa "${ngram_arpa}" --output "${ngram_dir}/lexicon.txt"
    else
        log "Stage 8: ${ngram_order}-gram of ${text} (IRSTLM) and its letter lexicon -> ${ngram_dir}"
        ${train_cmd} "${ngram_dir}/log/build_ngram.log" ${python} -m espnet_ils.bin.build_ngram \
            --text "${text}" --keyed true --order "${ngram_order}" --outdir "${ngram_dir}" "${eval_texts[@]}"
        ${python} -m espnet_ils.bin.ctc_decode lexicon --token_list "${token_dir}/tokens.txt" \
            --word_list "${ngram_dir}/words.txt" --output "${ngram_dir}/lexicon.txt"
        log "Stage 8: n-gram perplexity and OOV rate (%): $(tr '\n' ';' < "${ngram_dir}/perplexity.tsv")"
    fi
    step_finished "${ngram_dir}/.done"
}

# The letter Transformer LM of modes lm_fusion and lm_rescore, trained through ESPnet's LM task on
# the letters of lm_train_text (the --train_set transcripts) and lm_train_corpus, with the
# fine-tuning token list; validated on --valid_set's transcripts; test ids and sentences left out
# (${dumpdir}/lm_text/stats.tsv). Its perplexity per letter on the valid and test sets is logged
# and written to ${lm_dir}/perplexity.tsv.
prepare_lm() {
    local texts=() inputs=() dset
    for text in ${lm_train_text:-${dumpdir}/raw/${transcribed_set}/text}; do
        texts+=(--train_text "${text}"); inputs+=(--input "train_text=${text}")
    done
    for text in ${lm_train_corpus}; do
        [ -f "${text}" ] || die "${text} (--lm_train_corpus) is missing: run stage 1, which fetches it"
        texts+=(--train_corpus "${text}"); inputs+=(--input "train_corpus=${text}")
    done
    texts+=(--dev_text "${dumpdir}/raw/${valid_set}/text")
    for dset in ${test_sets}; do texts+=(--exclude_text "${dumpdir}/raw/${dset}/text"); done
    inputs+=(--input "tokens=${token_dir}/tokens.txt" --input "dev=${dumpdir}/raw/${valid_set}/text")
    if ! step_done "${lm_text}/.done" "Stage 8: letter LM text ${lm_text}" \
            --option "max_chars=${lm_max_chars}" --option "test_sets=${test_sets}" "${inputs[@]}"; then
        log "Stage 8: letter LM text -> ${lm_text}/{train,dev}"
        ${train_cmd} "${lm_text}/log/prepare_lm_text.log" ${python} -m espnet_ils.bin.prepare_lm_text \
            --token_list "${token_dir}/tokens.txt" "${texts[@]}" --max_chars "${lm_max_chars}" --outdir "${lm_text}"
        step_finished "${lm_text}/.done"
    fi
    if ! step_done "${lm_dir}/.done" "Stage 8: letter LM ${lm_dir}" --resumable true \
            --option "lm_args=${lm_args}" --input "config=${lm_config}" --input "text=${lm_text}/.done"; then
        log "Stage 8: letter LM training (${lm_config}) -> ${lm_dir}; log: ${lm_dir}/train.log"
        # shellcheck disable=SC2086
        launch_training "${lm_dir}" espnet_ils.bin.lm_train --config "${lm_config}" \
            --token_list "${token_dir}/tokens.txt" --token_type char \
            --train_data_path_and_name_and_type "${lm_text}/train/text,text,text" \
            --valid_data_path_and_name_and_type "${lm_text}/dev/text,text,text" \
            --train_shape_file "${lm_text}/train/text_shape.char" \
            --valid_shape_file "${lm_text}/dev/text_shape.char" "${lm_argv[@]}"
        [ -f "${lm_dir}/${lm_inference_model}" ] || die "${lm_dir}: training ended without ${lm_inference_model}"
        : > "${lm_dir}/perplexity.tsv"
        for dset in ${valid_set} ${test_sets}; do
            ${decode_cmd} "${lm_dir}/perplexity_${dset}/log/ppl.log" ${python} -m espnet_ils.bin.lm_calc_perplexity \
                --ngpu 0 --output_dir "${lm_dir}/perplexity_${dset}" --train_config "${lm_dir}/config.yaml" \
                --model_file "${lm_dir}/${lm_inference_model}" \
                --data_path_and_name_and_type "${dumpdir}/raw/${dset}/text,text,text"
            printf '%s\t%s\n' "${dset}" "$(head -n 1 "${lm_dir}/perplexity_${dset}/ppl")" >> "${lm_dir}/perplexity.tsv"
        done
        log "Stage 8: letter LM perplexity per letter: $(tr '\n\t' '; ' < "${lm_dir}/perplexity.tsv") (a unigram: ${lm_text}/stats.tsv)"
        step_finished "${lm_dir}/.done"
    fi
}

# decode_shards <wav.scp>: --inference_nj, or fewer when the set has fewer utterances (each shard is
# a process that loads the model).
decode_shards() {
    local num_utts
    num_utts=$(wc -l < "$1")
    echo $(( inference_nj < num_utts ? inference_nj : num_utts ))
}

# The keys of a wav.scp in decode_shards decoding shards: split_keys <wav.scp> <dir> ->
# <dir>/split/keys.JOB for JOB=1..${nj_split} (<dir> is emptied first).
split_keys() {
    local job
    rm -rf "$2"; mkdir -p "$2/split"
    nj_split=$(decode_shards "$1")
    ${python} -m espnet2.bin.split_scps --scps "$1" --num_splits "${nj_split}" --output_dir "$2/split"
    for job in $(seq 1 "${nj_split}"); do  # ESPnet numbers the splits from 0
        mv "$2/split/$(basename "$1")/split.$((job - 1))" "$2/split/keys.${job}"
    done
}

# Decode mode beam, through ESPnet's Speech2Text: decode_beam <asr exp> <set>
decode_beam() {
    local asr_exp=$1 dset=$2 dir=$1/decode_beam/$2
    if step_done "${dir}.done" "Stage 9: decoding ${dir}" --option "beam_size=${beam_size}" \
            --input "model=${asr_exp}/${inference_model}" --input "config=${asr_exp}/config.yaml" \
            --input "wav_scp=${dumpdir}/raw/${dset}/wav.scp"; then
        return
    fi
    log "Stage 9: decoding ${dumpdir}/raw/${dset} with ${asr_exp} (beam ${beam_size}) -> ${dir}"
    split_keys "${dumpdir}/raw/${dset}/wav.scp" "${dir}"
    ${decode_cmd} JOB=1:"${nj_split}" "${dir}/log/decode.JOB.log" \
        ${python} -m espnet_ils.bin.asr_inference --ngpu 0 --batch_size 1 \
            --data_path_and_name_and_type "${dumpdir}/raw/${dset}/wav.scp,speech,sound" \
            --key_file "${dir}/split/keys.JOB" \
            --asr_train_config "${asr_exp}/config.yaml" --asr_model_file "${asr_exp}/${inference_model}" \
            --output_dir "${dir}/output.JOB" --ctc_weight 1.0 --lm_weight 0.0 --beam_size "${beam_size}"
    ${python} -m espnet_ils.bin.merge_decoding --decode_dir "${dir}" --nj "${nj_split}" --output "${dir}/text"
    step_finished "${dir}.done"
}

# The CTC log-probs of one set under one model, computed once and shared by the greedy, ngram and
# lm_* modes: dump_logprobs <asr exp> <set> [<checkpoint> <wav.scp>] ->
# <asr exp>/ctc_logprobs/<set>/feats.JOB.{ark,scp} (by default of --inference_model and the formatted
# set's wav.scp; the phone probe passes its own), in decode_shards shards. Each shard skips itself
# when its marker holds the same wav.scp, config and model checksums; within one run of a stage a
# set is checked once. Sets the arrays logprob_scps (the shards) and logprob_inputs (their markers,
# for the callers' own markers).
declare -A logprobs_checked=()
dump_logprobs() {
    local asr_exp=$1 dset=$2 out=$1/ctc_logprobs/$2 job shards
    local model=${3:-$1/${inference_model}} wav_scp=${4:-${dumpdir}/raw/$2/wav.scp}
    shards=$(decode_shards "${wav_scp}")
    if [ -z "${logprobs_checked[${out}]:-}" ]; then
        ${decode_cmd} JOB=1:"${shards}" "${out}/log/dump.JOB.log" \
            ${python} -m espnet_ils.bin.dump_ctc_logprobs --asr_train_config "${asr_exp}/config.yaml" \
                --asr_model_file "${model}" --wav_scp "${wav_scp}" \
                --outdir "${out}" --nj "${shards}" --job JOB
        logprobs_checked[${out}]=1
    fi
    logprob_scps=() logprob_inputs=()
    for job in $(seq 1 "${shards}"); do
        logprob_scps+=("${out}/feats.${job}.scp")
        logprob_inputs+=(--input "logprobs=${out}/.done.${job}")
    done
}

# Decode mode greedy: the CTC best path of each utterance. decode_greedy <asr exp> <set>
decode_greedy() {
    local asr_exp=$1 dset=$2 dir=$1/decode_greedy/$2
    dump_logprobs "${asr_exp}" "${dset}"
    if step_done "${dir}.done" "Stage 9: decoding ${dir}" --input "tokens=${token_dir}/tokens.txt" \
            "${logprob_inputs[@]}"; then
        return
    fi
    log "Stage 9: best-path decoding of ${dset} with ${asr_exp} -> ${dir}"
    ${python} -m espnet_ils.bin.ctc_decode greedy --logprobs_scp "${logprob_scps[@]}" \
        --token_list "${token_dir}/tokens.txt" --output "${dir}/text"
    step_finished "${dir}.done"
}

# Decode modes ngram, lm_fusion and lm_rescore for one fine-tuned model: the LM weight and the
# bonus (ngram: per word, lm_*: per letter) chosen on the valid set from the grid
# (decode_<mode>/tune_<valid set>/{wer_grid.tsv,best.json}), the test sets decoded with them.
# decode_tuned <asr exp> <mode>
decode_tuned() {
    local asr_exp=$1 mode=$2 dset dir marker tune_dir=$1/decode_$2/tune_${valid_set} search grid inputs
    case ${mode} in
        ngram)
            search=(--search lexicon --lexicon "${ngram_dir}/lexicon.txt" --lm "${ngram_lm}"
                --beam_size "${lexicon_beam_size}" --beam_threshold "${lexicon_beam_threshold}")
            grid=(--lm_weights "${lexicon_lm_weights}" --word_scores="${lexicon_word_scores}")
            inputs=(--input "lexicon=${ngram_dir}/lexicon.txt" --input "ngram=${ngram_dir}/.done") ;;
        lm_fusion | lm_rescore)
            search=(--search "${mode}" --lm_train_config "${lm_dir}/config.yaml"
                --lm_file "${lm_dir}/${lm_inference_model}" --beam_size
                "$(if [ "${mode}" = lm_fusion ]; then echo "${fusion_beam_size}"; else echo "${rescore_beam_size}"; fi)")
            grid=(--lm_weights "${lm_weights}" --penalties="${lm_penalties}")
            inputs=(--input "lm=${lm_dir}/${lm_inference_model}" --input "lm=${lm_dir}/config.yaml") ;;
    esac
    inputs+=(--option "search=${search[*]}" --option "grid=${grid[*]}"
        --input "ref=${dumpdir}/raw/${valid_set}/text")
    # One process tunes on the valid set and decodes the test sets (the search and LM load once);
    # it runs when any of their markers is out of date, and only those markers are rewritten.
    local tests=() pending=()
    dump_logprobs "${asr_exp}" "${valid_set}"
    # (named apart from each test set's: an input's files must have distinct names)
    local tune_scps=("${logprob_scps[@]}") tune_inputs=("${inputs[@]}" "${logprob_inputs[@]/#logprobs=/valid_logprobs=}")
    step_done "${tune_dir}.done" "Stage 9: ${mode}: LM weight x bonus on ${valid_set}" \
        "${tune_inputs[@]}" || pending+=("${tune_dir}.done")
    for dset in ${test_sets}; do
        dir=${asr_exp}/decode_${mode}/${dset}
        dump_logprobs "${asr_exp}" "${dset}"
        tests+=(--decode "${dir}/text" "${logprob_scps[@]}")
        step_done "${dir}.done" "Stage 9: decoding ${dir}" "${tune_inputs[@]}" "${logprob_inputs[@]}" \
            || pending+=("${dir}.done")
    done
    [ "${#pending[@]}" -gt 0 ] || return 0
    log "Stage 9: ${mode}: ${grid[*]} on ${valid_set} -> ${tune_dir}, then ${test_sets} with the best pair"
    ${decode_cmd} "${tune_dir}/log/tune_and_decode.log" ${python} -m espnet_ils.bin.ctc_decode tune \
        --logprobs_scp "${tune_scps[@]}" --ref_text "${dumpdir}/raw/${valid_set}/text" \
        --token_list "${token_dir}/tokens.txt" "${search[@]}" "${grid[@]}" --outdir "${tune_dir}" "${tests[@]}"
    log "Stage 9: ${mode}: chosen on ${valid_set}: $(tr -d ' \n' < "${tune_dir}/best.json")"
    for marker in "${pending[@]}"; do step_finished "${marker}"; done
}

# Phone alignments of the sets $2 in dump/raw/<set>/phone_alignment: the corpus's own (mini), or
# imported from --phone_alignments (cheap and deterministic: redone on every run; the markers of the
# steps that read them key on their content). Sets alignment_inputs (each set's wav.scp and
# alignment, for the callers' markers); fails, logging why, when a set has none.
prepare_alignments() {
    local what=$1 sets=$2 dset alignment unaligned=""
    alignment_inputs=()
    for dset in ${sets}; do
        require_dir "${dumpdir}/raw/${dset}" "stage 2"
        alignment=${dumpdir}/raw/${dset}/phone_alignment
        if [ -n "${phone_alignments}" ] && [ -e "${phone_alignments}" ]; then
            log "${what}: phone alignments of ${dset} from ${phone_alignments} -> ${alignment}"
            ${python} -m espnet_ils.bin.import_alignments --source "${phone_alignments}" \
                --data_dir "${dumpdir}/raw/${dset}" --output "${alignment}" \
                || die "${what}: the phone alignments of ${dset} did not import (see above)"
        fi
        if [ -f "${alignment}" ]; then
            alignment_inputs+=(--input "wav_scp_${dset}=${dumpdir}/raw/${dset}/wav.scp" --input "alignment_${dset}=${alignment}")
        else
            unaligned+=" ${dset}"
        fi
    done
    if [ -n "${phone_alignments}" ] && [ ! -e "${phone_alignments}" ]; then
        log "${what}: no phone alignments: --phone_alignments ${phone_alignments} does not exist (put the Montreal Forced Aligner's TextGrids of${unaligned} there, or fairseq's frame-level .tsv files; LibriSpeech: LIBRISPEECH_ALIGNMENTS in db.sh)"
        return 1
    elif [ -n "${unaligned}" ]; then
        log "${what}: no phone alignments of${unaligned} (give --phone_alignments)"
        return 1
    fi
}

# "layer_quality <what> <outdir> NAME=EXPDIR...": cluster quality per block of the models, k-means
# per block fitted on --quality_fit_hours of --train_set and scored on --quality_sets (the paper's
# figure 2) -> <outdir>/cluster_quality.{tsv,png}; fails, logging why, without alignments. (Its
# callers test its status, which turns set -e off inside it: errors stop the run through die.)
layer_quality() {
    local what=$1 out=$2 spec models=() inputs quality_dirs=() dset; shift 2
    prepare_alignments "${what}" "${quality_sets}" || { log "${what}: cluster quality skipped"; return 1; }
    for dset in ${quality_sets}; do quality_dirs+=(--score_dir "${dumpdir}/raw/${dset}"); done
    inputs=("${alignment_inputs[@]}" --input "fit_wav_scp=${dumpdir}/raw/${train_set}/wav.scp")
    for spec in "$@"; do
        models+=(--model "${spec}")
        inputs+=(--input "model_${spec%%=*}=${spec#*=}/valid.loss.best.pth" --input "model_${spec%%=*}=${spec#*=}/config.yaml")
    done
    step_done "${out}/.done" "${what}: cluster quality ${out}" --option "models=$*" \
        --option "n_clusters=${quality_n_clusters}" --option "fit_hours=${quality_fit_hours}" \
        --option "seed=${seed}" "${inputs[@]}" && return 0
    log "${what}: cluster quality per block, k-means fitted on ${quality_fit_hours} h of ${train_set}, scored on ${quality_sets} -> ${out}/cluster_quality.{tsv,png}"
    ${train_cmd} "${out}/log/cluster_quality.log" ${python} -m espnet_ils.bin.cluster_quality layers \
        "${models[@]}" --checkpoint valid.loss.best.pth "${quality_dirs[@]}" \
        --fit_dir "${dumpdir}/raw/${train_set}" --fit_hours "${quality_fit_hours}" \
        --n_clusters "${quality_n_clusters}" --seed "${seed}" --outdir "${out}" \
        || die "${what}: cluster quality failed; log: ${out}/log/cluster_quality.log"
    step_finished "${out}/.done"
}

# The frozen probes of stage 7 (espnet_ils.analysis.probes): where their data and experiments go is
# espnet_ils.analysis.probes.ProbeLayout's, read into probe_path[<key>] (the keys: python -m
# espnet_ils.bin.probe_layout --help). Read again after stage 5 may have chosen --it2_layer.
declare -A probe_path=()
load_probe_layout() {
    local layout key value
    layout=$(${python} -m espnet_ils.bin.probe_layout --dumpdir "${dumpdir}" --expdir "${expdir}" \
        --it2_tag "${it2_tag}" --probe_tasks "${probe_tasks}" --runs "${runs}" \
        --pr_train_set "${probe_pr_train_set}" --valid_set "${valid_set}" --test_sets "${test_sets}") \
        || die "the probes' layout failed (see above)"
    probe_path=()
    while IFS=$'\t' read -r key value; do probe_path[${key}]=${value}; done <<< "${layout}"
}

# Phone transcripts (from the phone alignments) of the pr probe's sets, and the speakers' train /
# valid / test split of the sid probe's set. Sets probes_ready: the tasks of --probe_tasks whose data
# is there (pr is skipped, saying so, without phone alignments, as the cluster quality is).
prepare_probe_data() {
    local pr_sets="${probe_path[pr/sets]:-}" sets=() dset utt2spk
    probes_ready=""
    if [[ " ${probe_tasks} " == *" pr "* ]]; then
        if prepare_alignments "Stage 7" "${pr_sets}"; then
            for dset in ${pr_sets}; do sets+=(--set "${dumpdir}/raw/${dset}" "${probe_path[pr/set/${dset}]}"); done
            if ! step_done "${probe_path[pr/done]}" "Stage 7: phone-recognition probe data ${probe_path[pr/data]}" \
                    --option "sets=${pr_sets}" "${alignment_inputs[@]}"; then
                log "Stage 7: phone transcripts of ${pr_sets} -> ${probe_path[pr/data]}"
                ${python} -m espnet_ils.bin.prepare_probes pr "${sets[@]}" --token_list "${probe_path[pr/tokens]}" \
                    || die "Stage 7: the phone transcripts failed (see above)"
                step_finished "${probe_path[pr/done]}"
            fi
            probes_ready+=" pr"
        else
            log "Stage 7: pr probe skipped: it needs the phone alignments of ${pr_sets}"
        fi
    fi
    if [[ " ${probe_tasks} " == *" sid "* ]]; then
        utt2spk=${dumpdir}/raw/${probe_sid_set}/utt2spk
        [ -f "${utt2spk}" ] || die "Stage 7: ${utt2spk} missing: run stage 2 (the sid probe's set, --probe_sid_set)"
        if ! step_done "${probe_path[sid/done]}" "Stage 7: speaker-identification probe data ${probe_path[sid/data]}" \
                --option "held_out=${probe_held_out}" --option "seed=${seed}" --input "utt2spk=${utt2spk}" \
                --input "wav_scp=${dumpdir}/raw/${probe_sid_set}/wav.scp"; then
            sets=()
            for dset in ${probe_path[sid/sets]}; do sets+=(--split "${dset}" "${probe_path[sid/set/${dset}]}"); done
            log "Stage 7: the utterances of ${probe_sid_set} split per speaker into ${probe_path[sid/sets]} -> ${probe_path[sid/data]}"
            ${python} -m espnet_ils.bin.prepare_probes sid --src "${dumpdir}/raw/${probe_sid_set}" "${sets[@]}" \
                --token_list "${probe_path[sid/tokens]}" --held_out "${probe_held_out}" --seed "${seed}" \
                || die "Stage 7: the speaker split failed (see above)"
            step_finished "${probe_path[sid/done]}"
        fi
        probes_ready+=" sid"
    fi
}

# One probe of one run: probe_train <run> <task>, through ESPnet's ASR (pr) or classification (sid)
# task, on the frozen model of the run's iteration-2 pretraining.
probe_train() {
    local run=$1 task=$2 exp ssl_model config module train valid label
    exp=${probe_path[${task}/exp/${run}]} ssl_model=$(ssl_exp_of "${run}")/valid.loss.best.pth
    train=${probe_path[${task}/train]} valid=${probe_path[${task}/valid]}
    [ -f "${ssl_model}" ] || die "${ssl_model} missing: run stage 6 first"
    case ${task} in
        pr) config=${probe_pr_config} module=espnet_ils.bin.asr_train label=text ;;
        sid) config=${probe_sid_config} module=espnet_ils.bin.cls_train label=label ;;
    esac
    if step_done "${exp}/.done" "Stage 7: ${task} probe ${exp}" --resumable true --option "seed=${seed_of[${run}]}" \
            --option "probe_args=${probe_args}" --input "config=${config}" --input "ssl_model=${ssl_model}" \
            --input "data=${probe_path[${task}/done]}"; then
        return
    fi
    log "Stage 7: ${task} probe of ${ssl_model} -> ${exp}; log: ${exp}/train.log"
    # shellcheck disable=SC2086
    launch_training "${exp}" "${module}" --config "${config}" \
        --frontend_conf "frontend_conf.path_or_url=${ssl_model}" \
        --token_list "${probe_path[${task}/tokens]}" --token_type word --use_preprocessor true \
        --train_data_path_and_name_and_type "${train}/wav.scp,speech,sound" \
        --train_data_path_and_name_and_type "${train}/text,${label},text" \
        --valid_data_path_and_name_and_type "${valid}/wav.scp,speech,sound" \
        --valid_data_path_and_name_and_type "${valid}/text,${label},text" \
        --train_shape_file "${train}/speech_shape" --valid_shape_file "${valid}/speech_shape" \
        --seed "${seed_of[${run}]}" "${probe_argv[@]}"
    [ -f "${exp}/valid.loss.best.pth" ] || die "${exp}: training ended without valid.loss.best.pth"
    step_finished "${exp}/.done"
}

# A probe's output on its test sets: probe_decode <run> <task> -> text in each decode dir: the
# phone recogniser's best paths on --test_sets (pr), the predicted speakers of the held-out
# utterances (sid).
probe_decode() {
    local run=$1 task=$2 exp dset
    exp=${probe_path[${task}/exp/${run}]}
    for dset in ${probe_path[${task}/tests]}; do
        "probe_decode_${task}" "${exp}" "${probe_path[${task}/decode/${run}/${dset}]}" "${dset}" \
            "${probe_path[${task}/set/${dset}]}/wav.scp"
    done
}

# probe_decode_<task> <exp> <decode dir> <set> <wav.scp>
probe_decode_pr() {
    local exp=$1 dir=$2
    dump_logprobs "${exp}" "$3" "${exp}/valid.loss.best.pth" "$4"
    step_done "${dir}.done" "Stage 7: pr probe decoding ${dir}" --input "tokens=${probe_path[pr/tokens]}" \
        "${logprob_inputs[@]}" && return 0
    ${python} -m espnet_ils.bin.ctc_decode greedy --token_type word --logprobs_scp "${logprob_scps[@]}" \
        --token_list "${probe_path[pr/tokens]}" --output "${dir}/text"
    step_finished "${dir}.done"
}

probe_decode_sid() {
    local exp=$1 dir=$2 wav_scp=$4 model=$1/valid.loss.best.pth
    step_done "${dir}.done" "Stage 7: sid probe decoding ${dir}" --input "model=${model}" \
        --input "config=${exp}/config.yaml" --input "wav_scp=${wav_scp}" && return 0
    split_keys "${wav_scp}" "${dir}"
    ${decode_cmd} JOB=1:"${nj_split}" "${dir}/log/classify.JOB.log" \
        ${python} -m espnet_ils.bin.cls_inference --ngpu 0 --batch_size 1 \
            --data_path_and_name_and_type "${wav_scp},speech,sound" \
            --key_file "${dir}/split/keys.JOB" --classification_train_config "${exp}/config.yaml" \
            --classification_model_file "${model}" --output_dir "${dir}/output.JOB"
    ${python} -m espnet_ils.bin.merge_decoding --decode_dir "${dir}" --nj "${nj_split}" \
        --hypotheses prediction/text --output "${dir}/text"
    step_finished "${dir}.done"
}

probe_run() {  # every probe of run $1
    local task
    for task in ${probes_ready}; do
        probe_train "$1" "${task}"
        probe_decode "$1" "${task}"
    done
}

# PER and accuracy of every run's probes and their layer weights -> probes.tsv, layer_weights.tsv
# and layer_weights.png in ${probe_path[exp]} (cheap: redone on every run of stage 7).
probe_report() {
    ${python} -m espnet_ils.bin.probe_report --runs "${expdir}/runs.tsv" --dumpdir "${dumpdir}" \
        --expdir "${expdir}" --it2_tag "${it2_tag}" --probe_tasks "${probes_ready}" --test_sets "${test_sets}" \
        || die "Stage 7: the probes' report failed (see above)"
    log "Stage 7: probes -> ${probe_path[results]} and the layer weights' plot beside it: $(tail -n +2 "${probe_path[results]}" | cut -f 1,3,4 | tr '\t\n' ' ;')"
}

# A run's experiments and pretraining config (the baseline's is derived from the ILS config):
ssl_exp_of() { echo "${expdir}/ssl_${it2_tag}_$1"; }
ssl_config_of() {
    if [ "${arm_of[$1]}" = hubert ]; then echo "$(ssl_exp_of "$1")/derived_config.yaml"; else echo "${it2_config}"; fi
}
token_dir=${dumpdir}/token_list/char
ngram_dir=${expdir}/lm/ngram_${ngram_order}gram
ngram_lm=${ngram_arpa:-${ngram_dir}/lm.arpa}  # the word n-gram decode mode ngram searches with
lm_text=${dumpdir}/lm_text
lm_dir=${lm_exp:-${expdir}/lm/$(basename "${lm_config}" .yaml)}  # the letter LM of modes lm_*
asr_exp_of() { echo "${expdir}/asr_${it2_tag}_$1_$(basename "${asr_config}" .yaml)"; }

# The run manifest: what the runs are, as data for the tools that read them (compare_runs).
write_runs_manifest() {
    local manifest=${expdir}/runs.tsv run
    mkdir -p "${expdir}"
    {
        printf 'run\tarm\tseed\titeration\tssl_config\tssl_exp\tasr_config\tasr_exp\n'
        for run in ${runs}; do
            printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "${run}" "${arm_of[${run}]}" "${seed_of[${run}]}" \
                "${it2_tag}" "$(ssl_config_of "${run}")" "$(ssl_exp_of "${run}")" "${asr_config}" "$(asr_exp_of "${run}")"
        done
    } > "${manifest}.tmp"
    mv "${manifest}.tmp" "${manifest}"
}

log "${cmdline}"
# The disk plan of this run's stages (espnet_ils/recipe/disk_plan.py), before anything is written.
case ${disk_check} in
    true)
        ssl_exps="" asr_exps=""
        for run in ${runs}; do ssl_exps+="$(ssl_exp_of "${run}") " asr_exps+="$(asr_exp_of "${run}") "; done
        ${python} -m espnet_ils.bin.disk_plan --stage "${stage}" --stop_stage "${stop_stage}" \
            --corpus "${corpus}" --mini_hours "${mini_hours}" --known_sizes local/corpus_sizes.yaml \
            --corpus_root "LIBRISPEECH=${LIBRISPEECH}" --corpus_root "LIBRILIGHT=${LIBRILIGHT}" \
            --corpus_root "LIBRISPEECH_LM=${LIBRISPEECH_LM}" --audio_dir "${dumpdir}/librilight" \
            --datadir "${datadir}" --dumpdir "${dumpdir}" --expdir "${expdir}" --sets "${all_sets}" \
            --train_set "${train_set}" --valid_set "${valid_set}" --finetune_set "${finetune_set}" \
            --test_sets "${test_sets}" --nj "${nj}" --inference_nj "${inference_nj}" \
            --it1_config "${it1_config}" --it1_tag "${it1_tag}" --it1_exp "${it1_exp}" \
            ${label_model:+--label_model "${label_model}"} ${label_kmeans:+--label_kmeans "${label_kmeans}"} \
            --it2_config "${it2_config}" --it2_tag "${it2_tag}" --ssl_exps "${ssl_exps}" \
            --kmeans_portion "${kmeans_portion}" --kmeans_max_hours "${kmeans_max_hours}" \
            --kmeans_feats_storage "${kmeans_feats_storage}" --asr_config "${asr_config}" \
            --asr_exps "${asr_exps}" --token_list "${token_dir}/tokens.txt" \
            --decode_modes "${decode_modes}" --probe_tasks "${probe_tasks}" \
            --probe_pr_config "${probe_pr_config}" --probe_sid_config "${probe_sid_config}" \
            --lm_config "${lm_config}" --lm_exp "${lm_exp}" \
            --lm_dir "${lm_dir}" --lm_text "${lm_text}" --lm_train_corpus "${lm_train_corpus}" \
            --ngram_arpa "${ngram_arpa}" --num_splits_ssl "${num_splits_ssl}" \
            --num_splits_asr "${num_splits_asr}" --pretrain_args="${pretrain_args}" \
            --asr_args="${asr_args}" --lm_args="${lm_args}" --probe_args="${probe_args}" \
            --hub_folders "$([ -n "${hf_repo}" ] && echo true || echo false)" \
            || die "disk plan: see above (--disk_check false skips it)" ;;
    false) log "Disk plan skipped (--disk_check false)" ;;
    *) die "--disk_check ${disk_check}: true or false" ;;
esac
# (with --it2_layer auto not chosen yet, stage 5 writes it once it has chosen)
if [ "${stage}" -le 10 ] && [ "${stop_stage}" -ge 6 ] && [ "${it2_layer}" != auto ]; then write_runs_manifest; fi

# ---------------------------------------------------------------------------------------------
if run_stage 1; then
    log "Stage 1: data preparation (corpus=${corpus}) -> ${datadir}/"
    local/data.sh --corpus "${corpus}" --datadir "${datadir}" --sets "${all_sets}" \
        --mini_hours "${mini_hours}" --seed "${seed}" --nj "${nj}" --audio_dir "${dumpdir}/librilight"
    resources=()  # LibriSpeech's LM files the decode modes use, fetched when missing
    [[ " ${decode_modes} " == *" ngram "* ]] && [ -n "${ngram_arpa}" ] && resources+=("${ngram_arpa}")
    # shellcheck disable=SC2206  # a list of paths
    [[ " ${decode_modes} " == *" lm_"* ]] && [ -z "${lm_exp}" ] && resources+=(${lm_train_corpus})
    for file in "${resources[@]}"; do
        if [ ! -f "${file}" ] && [ "${corpus}" = librispeech ] && lm_resource "${file}"; then
            local/lm_resources.sh --files "$(basename "${file}")"
        fi
    done
fi

if run_stage 2; then
    log "Stage 2: format ${datadir}/{${all_sets// /,}} -> ${dumpdir}/raw/"
    for dset in ${all_sets}; do require_dir "${datadir}/${dset}" "stage 1"; done
    for dset in ${all_sets}; do
        min=0; max=${max_wav_duration}
        [ "${dset}" = "${train_set}" ] && min=${min_wav_duration}
        [[ " ${test_sets} ${valid_set} " == *" ${dset} "* ]] && max=100000
        ${python} -m espnet_ils.bin.format_data_dir --src "${datadir}/${dset}" \
            --dst "${dumpdir}/raw/${dset}" --min_duration "${min}" --max_duration "${max}"
    done
fi

if [ -n "${label_model}" ] && { run_stage 3 || run_stage 4; }; then
    log "Stages 3-4: skipped: no iteration 1 with --label_model (the iteration-2 targets come from block ${it2_layer} of ${label_model})"
fi

if run_stage 3 && [ -z "${label_model}" ]; then
    log "Stage 3: iteration-1 targets: MFCC of {${ssl_sets// /,}} -> ${dumpdir}/mfcc, k-means ${it1_n_clusters}"
    for dset in ${ssl_sets}; do
        require_dir "${dumpdir}/raw/${dset}" "stage 2"
        ${train_cmd} JOB=1:"${nj}" "${dumpdir}/mfcc/${dset}/log/dump_mfcc.JOB.log" \
            ${python} -m espnet_ils.bin.dump_mfcc --wav_scp "${dumpdir}/raw/${dset}/wav.scp" \
                --outdir "${dumpdir}/mfcc/${dset}" --nj "${nj}" --job JOB
    done
    feature_targets "${it1_tag}" "${dumpdir}/mfcc" 100 "${it1_n_clusters}"
fi

if run_stage 4 && [ -z "${label_model}" ]; then
    log "Stage 4: iteration-1 HuBERT pretraining -> ${it1_exp}"
    require_dir "${dumpdir}/labels/${it1_tag}" "stage 3"
    ssl_pretrain "${it1_exp}" "${it1_config}" "${it1_tag}" "${seed}"
fi

if run_stage 5; then
    [ -n "${label_model}" ] || [ -f "${it1_exp}/valid.loss.best.pth" ] || die "${it1_exp}/valid.loss.best.pth missing: run stage 4 first"
    if [ "${it2_layer_option}" = auto ]; then
        if layer_quality "Stage 5" "$(dirname "${it2_choice}")" "it1=${it1_exp}"; then
            ${python} -m espnet_ils.bin.cluster_quality best --model it1 \
                --table "$(dirname "${it2_choice}")/cluster_quality.tsv" --output "${it2_choice}"
        else  # the paper's block, where the blocks cannot be scored
            mkdir -p "$(dirname "${it2_choice}")" && echo 6 > "${it2_choice}"
        fi
        it2_layer=$(cat "${it2_choice}")
        it2_tag=it2_L${it2_layer}_km${it2_n_clusters}${label_name}
        log "Stage 5: --it2_layer auto: block ${it2_layer}; PNMI per layer (0: block-1 input): $(awk -F '\t' '$1 == "it1" {printf "%s:%s ", $2, $5}' "$(dirname "${it2_choice}")/cluster_quality.tsv" 2> /dev/null)"
        [ "${stop_stage}" -ge 6 ] && write_runs_manifest
    fi
    label_source=${label_model:-${it1_exp}/valid.loss.best.pth}
    log "Stage 5: iteration-2 targets: block ${it2_layer} of ${label_source}, k-means ${it2_n_clusters} -> ${dumpdir}/labels/${it2_tag}"
    model_targets "${it2_tag}" "${label_source}" "${it2_layer}" "${it2_n_clusters}"
fi

pretrain_run() {  # iteration-2 pretraining of run $1
    local run=$1 config
    config=$(ssl_config_of "${run}")
    if [ "${config}" != "${it2_config}" ]; then
        mkdir -p "$(dirname "${config}")"
        ${python} -m espnet_ils.bin.derive_baseline_config --config "${it2_config}" --output "${config}"
    fi
    log "Stage 6: iteration-2 ${run} pretraining -> $(ssl_exp_of "${run}")"
    ssl_pretrain "$(ssl_exp_of "${run}")" "${config}" "${it2_tag}" "${seed_of[${run}]}"
}

if run_stage 6; then
    require_dir "${dumpdir}/labels/${it2_tag}" "stage 5"
    each_run pretrain_run
fi

if run_stage 7; then
    it2_encoder=$(${python} -c 'import sys, yaml; print(yaml.safe_load(open(sys.argv[1]))["encoder"])' "${it2_config}")
    if [ "${it2_encoder}" != ils_transformer ]; then
        # LayerFeatureExtractor takes ILSTransformerEncoder only (the others convolve over padding).
        log "Stage 7: cluster quality skipped: the per-block analysis needs the ils_transformer encoder; ${it2_config} has ${it2_encoder}"
    else
        models=()
        for run in ${runs}; do models+=("${run}=$(ssl_exp_of "${run}")"); done
        layer_quality "Stage 7" "${expdir}/cluster_quality_${it2_tag}" "${models[@]}" || true
    fi
    if [ -n "${probe_tasks}" ]; then
        load_probe_layout
        prepare_probe_data
        if [ -n "${probes_ready}" ]; then
            each_run probe_run
            probe_report
        fi
    else
        log "Stage 7: no probes (--probe_tasks is empty)"
    fi
fi

finetune_run() {  # CTC fine-tuning of run $1
    local run=$1 ssl_exp asr_exp split=() train_data
    ssl_exp=$(ssl_exp_of "${run}") asr_exp=$(asr_exp_of "${run}")
    [ -f "${ssl_exp}/valid.loss.best.pth" ] || die "${ssl_exp}/valid.loss.best.pth missing: run stage 6 first"
    [ "${num_splits_asr}" -eq 1 ] || split=(--option "num_splits_asr=${num_splits_asr}")
    if step_done "${asr_exp}/.done" "Stage 8: fine-tuning ${asr_exp}" --resumable true \
            --option "seed=${seed_of[${run}]}" --option "asr_args=${asr_args}" "${split[@]}" --input "config=${asr_config}" \
            --input "ssl_model=${ssl_exp}/valid.loss.best.pth" --input "tokens=${token_dir}/tokens.txt" \
            --input "train_wav_scp=${dumpdir}/raw/${finetune_set}/wav.scp" \
            --input "train_text=${dumpdir}/raw/${finetune_set}/text" \
            --input "valid_wav_scp=${dumpdir}/raw/${valid_set}/wav.scp" \
            --input "valid_text=${dumpdir}/raw/${valid_set}/text"; then
        return
    fi
    training_set_args "${num_splits_asr}" "${dumpdir}/raw/${finetune_set}" "${dumpdir}/raw/${finetune_set}/text"
    log "Stage 8: CTC fine-tuning of ${ssl_exp} on ${finetune_set} -> ${asr_exp}; log: ${asr_exp}/train.log"
    # shellcheck disable=SC2086
    launch_training "${asr_exp}" espnet_ils.bin.asr_train --config "${asr_config}" \
        --frontend_conf "frontend_conf.path_or_url=${ssl_exp}/valid.loss.best.pth" \
        --token_list "${token_dir}/tokens.txt" --token_type char --use_preprocessor true "${train_data[@]}" \
        --valid_data_path_and_name_and_type "${dumpdir}/raw/${valid_set}/wav.scp,speech,sound" \
        --valid_data_path_and_name_and_type "${dumpdir}/raw/${valid_set}/text,text,text" \
        --valid_shape_file "${dumpdir}/raw/${valid_set}/speech_shape" --seed "${seed_of[${run}]}" "${asr_argv[@]}"
    [ -f "${asr_exp}/${inference_model}" ] || die "${asr_exp}: training ended without ${inference_model}"
    step_finished "${asr_exp}/.done"
}

if run_stage 8; then
    if ! step_done "${token_dir}/.done" "Stage 8: letter token list ${token_dir}" \
            --input "text=${dumpdir}/raw/${finetune_set}/text"; then
        log "Stage 8: letter token list from ${dumpdir}/raw/${finetune_set}/text -> ${token_dir}/tokens.txt"
        ${python} -m espnet_ils.bin.tokenize_text --token_type char --field 2- \
            --input "${dumpdir}/raw/${finetune_set}/text" --output "${token_dir}/tokens.txt.tmp" \
            --write_vocabulary true --add_symbol "<blank>:0" --add_symbol "<unk>:1" --add_symbol "<sos/eos>:-1"
        mv "${token_dir}/tokens.txt.tmp" "${token_dir}/tokens.txt"
        step_finished "${token_dir}/.done"
    fi
    [[ " ${decode_modes} " == *" ngram "* ]] && prepare_ngram
    [[ " ${decode_modes} " == *" lm_"* ]] && [ -z "${lm_exp}" ] && prepare_lm
    each_run finetune_run
fi

decode_run() {  # every decode mode of run $1's fine-tuned model
    local asr_exp mode dset
    asr_exp=$(asr_exp_of "$1")
    [ -f "${asr_exp}/${inference_model}" ] || die "${asr_exp}/${inference_model} missing: run stage 8 first"
    for mode in ${decode_modes}; do
        case ${mode} in
            greedy) for dset in ${test_sets}; do decode_greedy "${asr_exp}" "${dset}"; done ;;
            beam) for dset in ${test_sets}; do decode_beam "${asr_exp}" "${dset}"; done ;;
            ngram)
                [ -f "${ngram_dir}/.done" ] || die "${ngram_dir} is not built: run stage 8 first"
                decode_tuned "${asr_exp}" ngram ;;
            lm_fusion | lm_rescore)
                [ -f "${lm_dir}/${lm_inference_model}" ] || die "${lm_dir}/${lm_inference_model} missing: run stage 8 first"
                decode_tuned "${asr_exp}" "${mode}" ;;
        esac
    done
}

if run_stage 9; then
    each_run decode_run  # --train_jobs models at once: their jobs are mostly processes starting
fi

if run_stage 10; then
    decode_dirs=()
    inputs=()
    for dset in ${test_sets}; do inputs+=(--input "ref_${dset}=${dumpdir}/raw/${dset}/text"); done
    for run in ${runs}; do
        for mode in ${decode_modes}; do
            for dset in ${test_sets}; do
                dir=$(asr_exp_of "${run}")/decode_${mode}/${dset}
                [ -f "${dir}.done" ] || die "${dir} is not decoded: run stage 9 first"
                decode_dirs+=("${dir}")
                inputs+=(--input "hyp_${run}_${mode}_${dset}=${dir}/text")
            done
        done
    done
    load_probe_layout
    quality=${expdir}/cluster_quality_${it2_tag}/cluster_quality.tsv probes=${probe_path[results]}
    [ "${baseline}" = true ] && [ -f "${quality}" ] && inputs+=(--input "cluster_quality=${quality}")
    [ "${baseline}" = true ] && [ -f "${probes}" ] && inputs+=(--input "probes=${probes}")
    if ! step_done "${expdir}/.scoring.done" "Stage 10: scoring into ${expdir}" --option "runs=${runs}" \
            --option "baseline=${baseline}" "${inputs[@]}"; then
        log "Stage 10: scoring -> ${expdir}/RESULTS.md"
        ${python} -m espnet_ils.bin.score --ref_dir "${dumpdir}/raw" --results "${expdir}/RESULTS.md" "${decode_dirs[@]}"
        # The LMs' fit to the test sets, next to the error rates they decode to: an LM built from
        # text close to the test set (the mini corpus's) flatters them.
        for report in "${ngram_dir}/perplexity.tsv" "${lm_dir}/perplexity.tsv"; do
            if [ -f "${report}" ]; then
                { printf '\n## %s\n\n' "${report}"; sed 's/^/    /' "${report}"; } >> "${expdir}/RESULTS.md"
            fi
        done
        if [ "${baseline}" = true ]; then
            for dset in ${test_sets}; do
                log "Stage 10: ILS vs HuBERT on ${dset} -> ${expdir}/comparison_${dset}.md"
                # shellcheck disable=SC2086  # one argument per mode
                ${python} -m espnet_ils.bin.compare_runs --runs "${expdir}/runs.tsv" --test_set "${dset}" \
                    --decode_modes ${decode_modes} --output "${expdir}/comparison_${dset}.md" \
                    --cluster_quality "${quality}" --probes "${probes}"
            done
        fi
        step_finished "${expdir}/.scoring.done"
    fi
fi

if run_stage 11; then
    for run in ${runs}; do
        asr_exp=$(asr_exp_of "${run}") ssl_exp=$(ssl_exp_of "${run}")
        zip=${asr_exp}/packed/$(basename "${asr_exp}").zip
        if step_done "${zip}.done" "Stage 11: packing ${zip}" --option "checkpoint=${inference_model}" \
                --input "asr_model=${asr_exp}/${inference_model}" --input "asr_config=${asr_exp}/config.yaml" \
                --input "ssl_model=${ssl_exp}/valid.loss.best.pth" --input "results=${expdir}/RESULTS.md"; then
            continue
        fi
        log "Stage 11: packing ${asr_exp} with ${ssl_exp} -> ${zip}"
        ${python} -m espnet_ils.bin.pack_model --asr_exp "${asr_exp}" --checkpoint "${inference_model}" \
            --outpath "${zip}" --extra "${expdir}/RESULTS.md"
        step_finished "${zip}.done"
    done
fi

# Stage 12's model cards show the scoring of stage 10; the datasets name the corpora trained on.
hub_folder_run() {  # run $1's packed model -> <asr exp>/hub, uploaded to repository $2 (--hf_upload)
    local asr_exp zip hub repo=$2 inputs=() card=() dset
    asr_exp=$(asr_exp_of "$1")
    zip=${asr_exp}/packed/$(basename "${asr_exp}").zip hub=${asr_exp}/hub
    [ -f "${zip}.done" ] || die "${zip} is not packed: run stage 11 first"
    inputs=(--input "zip=${zip}" --input "results=${expdir}/RESULTS.md")
    card=(--results "${expdir}/RESULTS.md" --dataset "${corpus}" --license "${hf_license}")
    [[ ${train_set} == unlab_* ]] && card+=(--dataset libri-light)
    for dset in ${test_sets}; do
        if [ -f "${expdir}/comparison_${dset}.md" ]; then
            inputs+=(--input "comparison_${dset}=${expdir}/comparison_${dset}.md")
            card+=(--results "${expdir}/comparison_${dset}.md")
        fi
    done
    if ! step_done "${hub}.done" "Stage 12: Hub folder ${hub}" --option "repo=${repo}" \
            --option "license=${hf_license}" "${inputs[@]}"; then
        log "Stage 12: ${zip} -> ${hub} (the files of ${repo} and their model card)"
        ${python} -m espnet_ils.bin.hub_folder --zip "${zip}" --outdir "${hub}" --repo "${repo}" "${card[@]}"
        step_finished "${hub}.done"
    fi
    if [ "${hf_upload}" = true ]; then
        log "Stage 12: uploading ${hub} to https://huggingface.co/${repo}"
        ${python} -m espnet_ils.bin.upload_model --folder "${hub}" --repo "${repo}"
    else
        log "Stage 12: ${hub} not uploaded (--hf_upload false)"
    fi
}

if run_stage 12; then
    if [ -z "${hf_repo}" ]; then
        log "Stage 12: skipped: no --hf_repo given"
    else
        [ -f "${expdir}/.scoring.done" ] || die "${expdir}/RESULTS.md is not scored: run stage 10 first"
        read -r -a run_list <<< "${runs}"
        for run in "${run_list[@]}"; do
            if [ "${#run_list[@]}" -eq 1 ]; then hub_folder_run "${run}" "${hf_repo}"
            else hub_folder_run "${run}" "${hf_repo}_${run}"; fi
        done
    fi
fi

log "Successfully finished. [elapsed=${SECONDS}s]"

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
train_threads=0        # CPU threads per training process (0: the cores / the trainings running at once, all of them for one that runs alone; sharded jobs use 1 each).
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
hf_upload=true         # Stage 12: true uploads each run's Hub folder (and its transformers export); false only writes them (<asr exp>/hub, <asr exp>/hub_transformers), to inspect them before a later upload.
hf_transformers=true   # Stage 12: also export each run's CTC model to transformers (WavLMForCTC + tokenizer + processor, python -m espnet_ils.bin.export_transformers) into <asr exp>/hub_transformers with its own model card, uploaded beside the ESPnet model to <repo>-transformers; false: the ESPnet model only.
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
     licence and citations) in <asr exp>/hub, with --hf_transformers true its transformers export
     (WavLMForCTC) and card in <asr exp>/hub_transformers, then uploaded (--hf_upload)

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
# The stages' work, in files named after the part of the pipeline they hold (functions only: the
# stages below call them).
# shellcheck source=steps/common.sh
. steps/common.sh
# shellcheck source=steps/data.sh
. steps/data.sh
# shellcheck source=steps/targets.sh
. steps/targets.sh
# shellcheck source=steps/pretrain.sh
. steps/pretrain.sh
# shellcheck source=steps/analysis.sh
. steps/analysis.sh
# shellcheck source=steps/finetune.sh
. steps/finetune.sh
# shellcheck source=steps/decode.sh
. steps/decode.sh
# shellcheck source=steps/score.sh
. steps/score.sh
# shellcheck source=steps/pack.sh
. steps/pack.sh

# ---------------------------------------------------------------------------------------------
# Check every option before any work starts.
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
require_positive_ints num_nodes nj inference_nj train_jobs it1_n_clusters it2_n_clusters kmeans_n_init \
    quality_n_clusters beam_size label_batch_size
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
for option in hf_upload hf_transformers; do
    case ${!option} in true | false) ;; *) die "--${option} ${!option}: true or false" ;; esac
done
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
# Stage 12 exports each run's CTC model to transformers when it shares the models at all.
transformers_export=false
[ -n "${hf_repo}" ] && transformers_export=${hf_transformers}
# Every config is built once (CPU, 15 s) so that one which cannot build (or, with
# transformers_export, one that WavLM cannot express) stops the run now; again only when a config
# or an option of the check changed since it passed in this expdir (the marker).
# (with --label_model there is no iteration 1, and its config is not built)
it1_check=(--it1_config "${it1_config}" --it1_n_clusters "${it1_n_clusters}")
[ -z "${label_model}" ] || it1_check=()
${python} -m espnet_ils.bin.check_configs "${it1_check[@]}" \
    --it2_config "${it2_config}" --it2_n_clusters "${it2_n_clusters}" --asr_config "${asr_config}" \
    --transformers_export "${transformers_export}" --marker "${expdir}/.configs_checked" \
    || die "the configs do not fit the options (see the error above)"
for mode in ${decode_modes}; do
    case ${mode} in
        greedy | beam | ngram | lm_fusion | lm_rescore) ;;
        *) die "--decode_modes: unknown mode '${mode}' (greedy, beam, ngram, lm_fusion, lm_rescore)" ;;
    esac
done
if [[ " ${decode_modes} " == *" ngram "* ]]; then
    require_positive_ints ngram_order lexicon_beam_size
    if [ -n "${ngram_arpa}" ]; then
        exists_or_fetched "${ngram_arpa}" || die "--ngram_arpa ${ngram_arpa}: no such file"
    else
        [ -z "${ngram_text}" ] || [ -f "${ngram_text}" ] || die "--ngram_text ${ngram_text}: no such file"
        ${python} -c "from espnet_ils.decoding.ngram import irstlm_tool; irstlm_tool('build-lm.sh')" 2> /dev/null \
            || die "decode mode ngram builds its n-gram with IRSTLM, which is not installed: run local/install_lm_tools.sh (root), or pass --ngram_arpa"
    fi
fi
if [[ " ${decode_modes} " == *" lm_"* ]]; then
    require_positive_ints fusion_beam_size rescore_beam_size
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
# The encoder of the iteration-2 models: stage 7's per-block analysis takes ils_transformer only.
it2_encoder=$(${python} -c 'import sys, yaml; print(yaml.safe_load(open(sys.argv[1]))["encoder"])' "${it2_config}")

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
# The sets and the options that decide the later stages' work, as the checks before the stages read
# them (the disk plan and the data check: espnet_ils.bin.add_run_arguments).
run_args=(--train_set "${train_set}" --valid_set "${valid_set}" --finetune_set "${finetune_set}"
    --test_sets "${test_sets}" --label_model "${label_model}" --label_kmeans "${label_kmeans}"
    --kmeans_portion "${kmeans_portion}" --kmeans_max_hours "${kmeans_max_hours}"
    --num_splits_ssl "${num_splits_ssl}" --num_splits_asr "${num_splits_asr}"
    --decode_modes "${decode_modes}" --probe_tasks "${probe_tasks}" --lm_exp "${lm_exp}" --ngram_arpa "${ngram_arpa}")

# Where the stages write what several of them read (the probes' layout: load_probe_layout).
token_dir=${dumpdir}/token_list/char
ngram_dir=${expdir}/lm/ngram_${ngram_order}gram
ngram_lm=${ngram_arpa:-${ngram_dir}/lm.arpa}  # the word n-gram decode mode ngram searches with
lm_text=${dumpdir}/lm_text
lm_dir=${lm_exp:-${expdir}/lm/$(basename "${lm_config}" .yaml)}  # the letter LM of modes lm_*

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
            "${run_args[@]}" --nj "${nj}" --inference_nj "${inference_nj}" \
            --it1_config "${it1_config}" --it1_tag "${it1_tag}" --it1_exp "${it1_exp}" \
            --it2_config "${it2_config}" --it2_tag "${it2_tag}" --ssl_exps "${ssl_exps}" \
            --kmeans_feats_storage "${kmeans_feats_storage}" --asr_config "${asr_config}" \
            --asr_exps "${asr_exps}" --token_list "${token_dir}/tokens.txt" \
            --probe_pr_config "${probe_pr_config}" --probe_sid_config "${probe_sid_config}" \
            --lm_config "${lm_config}" \
            --lm_dir "${lm_dir}" --lm_text "${lm_text}" --lm_train_corpus "${lm_train_corpus}" \
            --pretrain_args="${pretrain_args}" \
            --asr_args="${asr_args}" --lm_args="${lm_args}" --probe_args="${probe_args}" \
            --hub_folders "$([ -n "${hf_repo}" ] && echo true || echo false)" \
            --hub_transformers "${transformers_export}" \
            || die "disk plan: see above (--disk_check false skips it)" ;;
    false) log "Disk plan skipped (--disk_check false)" ;;
    *) die "--disk_check ${disk_check}: true or false" ;;
esac
# (with --it2_layer auto not chosen yet, stage 5 writes it once it has chosen)
if [ "${stage}" -le 10 ] && [ "${stop_stage}" -ge 6 ] && [ "${it2_layer}" != auto ]; then write_runs_manifest; fi
# (a run from stage 1 or 2 checks the data once stage 2 has formatted it)
if [ "${stage}" -ge 3 ]; then check_data "${stage}"; fi

# ---------------------------------------------------------------------------------------------
# The stages, each in the file of steps/ named in its line.
if run_stage 1; then prepare_data; fi  # steps/data.sh
if run_stage 2; then
    format_data  # steps/data.sh
    if [ "${stop_stage}" -ge 3 ]; then check_data 3; fi
fi
if [ -n "${label_model}" ] && { run_stage 3 || run_stage 4; }; then
    log "Stages 3-4: skipped: no iteration 1 with --label_model (the iteration-2 targets come from block ${it2_layer} of ${label_model})"
fi
if run_stage 3 && [ -z "${label_model}" ]; then iteration1_targets; fi  # steps/targets.sh
if run_stage 4 && [ -z "${label_model}" ]; then pretrain_iteration1; fi  # steps/pretrain.sh
if run_stage 5; then
    [ -n "${label_model}" ] || [ -f "${it1_exp}/valid.loss.best.pth" ] || die "${it1_exp}/valid.loss.best.pth missing: run stage 4 first"
    if [ "${it2_layer_option}" = auto ]; then
        choose_it2_layer  # steps/analysis.sh: -> ${it2_choice}
        it2_layer=$(cat "${it2_choice}")
        it2_tag=it2_L${it2_layer}_km${it2_n_clusters}${label_name}
        if [ "${stop_stage}" -ge 6 ]; then write_runs_manifest; fi
    fi
    iteration2_targets  # steps/targets.sh
fi
if run_stage 6; then pretrain_iteration2; fi  # steps/pretrain.sh
if run_stage 7; then analyse_runs; fi  # steps/analysis.sh
if run_stage 8; then finetune_runs; fi  # steps/finetune.sh
# (--train_jobs models at once: their jobs are mostly processes starting)
if run_stage 9; then each_run decode_run; fi  # steps/decode.sh
if run_stage 10; then score_runs; fi  # steps/score.sh
if run_stage 11; then pack_runs; fi  # steps/pack.sh
if run_stage 12; then share_runs; fi  # steps/pack.sh

log "Successfully finished. [elapsed=${SECONDS}s]"

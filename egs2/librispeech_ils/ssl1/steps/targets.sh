# shellcheck shell=bash disable=SC2154,SC2086
# (SC2154, SC2086: the options and names are ils.sh's, set before it sources this file; ${python}
# and the *_cmd runners are command lines, as in ils.sh)
# ils.sh's stages 3 and 5 (sourced): the k-means targets of both iterations (MFCC, then a block of
# a model), sharded over --nj jobs.

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
        solo ${train_cmd} "${km_dir}/log/fit_kmeans.log" ${python} -m espnet_ils.bin.fit_kmeans \
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

# Stage 3: MFCC of the pretraining sets, k-means on them, the iteration-1 labels.
iteration1_targets() {
    local dset
    log "Stage 3: iteration-1 targets: MFCC of {${ssl_sets// /,}} -> ${dumpdir}/mfcc, k-means ${it1_n_clusters}"
    for dset in ${ssl_sets}; do
        require_dir "${dumpdir}/raw/${dset}" "stage 2"
        ${train_cmd} JOB=1:"${nj}" "${dumpdir}/mfcc/${dset}/log/dump_mfcc.JOB.log" \
            ${python} -m espnet_ils.bin.dump_mfcc --wav_scp "${dumpdir}/raw/${dset}/wav.scp" \
                --outdir "${dumpdir}/mfcc/${dset}" --nj "${nj}" --job JOB
    done
    feature_targets "${it1_tag}" "${dumpdir}/mfcc" 100 "${it1_n_clusters}"
}

# Stage 5: the iteration-2 labels from block ${it2_layer} of the iteration-1 model (or --label_model).
iteration2_targets() {
    local label_source=${label_model:-${it1_exp}/valid.loss.best.pth}
    log "Stage 5: iteration-2 targets: block ${it2_layer} of ${label_source}, k-means ${it2_n_clusters} -> ${dumpdir}/labels/${it2_tag}"
    model_targets "${it2_tag}" "${label_source}" "${it2_layer}" "${it2_n_clusters}"
}

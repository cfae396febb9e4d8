# shellcheck shell=bash disable=SC2154,SC2086
# (SC2154, SC2086: the options and names are ils.sh's, set before it sources this file; ${python}
# and the *_cmd runners are command lines, as in ils.sh)
# ils.sh's stage 8 (sourced): the letter token list, the word n-gram and the letter LM of the
# decode modes, the CTC fine-tuning of every run.

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
        launch_training "${lm_dir}" "${lm_inference_model}" espnet_ils.bin.lm_train --config "${lm_config}" \
            --token_list "${token_dir}/tokens.txt" --token_type char \
            --train_data_path_and_name_and_type "${lm_text}/train/text,text,text" \
            --valid_data_path_and_name_and_type "${lm_text}/dev/text,text,text" \
            --train_shape_file "${lm_text}/train/text_shape.char" \
            --valid_shape_file "${lm_text}/dev/text_shape.char" "${lm_argv[@]}"
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

finetune_run() {  # CTC fine-tuning of run $1
    local run=$1 ssl_exp asr_exp split=() data=()
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
    training_set_args data "${num_splits_asr}" "${dumpdir}/raw/${finetune_set}" "${dumpdir}/raw/${finetune_set}/text"
    data_args data valid "${dumpdir}/raw/${valid_set}" "${dumpdir}/raw/${valid_set}/text"
    log "Stage 8: CTC fine-tuning of ${ssl_exp} on ${finetune_set} -> ${asr_exp}; log: ${asr_exp}/train.log"
    launch_training "${asr_exp}" "${inference_model}" espnet_ils.bin.asr_train --config "${asr_config}" \
        --frontend_conf "frontend_conf.path_or_url=${ssl_exp}/valid.loss.best.pth" \
        --token_list "${token_dir}/tokens.txt" --token_type char --use_preprocessor true "${data[@]}" \
        --seed "${seed_of[${run}]}" "${asr_argv[@]}"
    step_finished "${asr_exp}/.done"
}

# Stage 8: the letter token list of --finetune_set, the LMs of the decode modes, every run's CTC
# fine-tuning.
finetune_runs() {
    if ! step_done "${token_dir}/.done" "Stage 8: letter token list ${token_dir}" \
            --input "text=${dumpdir}/raw/${finetune_set}/text"; then
        log "Stage 8: letter token list from ${dumpdir}/raw/${finetune_set}/text -> ${token_dir}/tokens.txt"
        ${python} -m espnet_ils.bin.tokenize_text --token_type char --field 2- \
            --input "${dumpdir}/raw/${finetune_set}/text" --output "${token_dir}/tokens.txt.tmp" \
            --write_vocabulary true --add_symbol "<blank>:0" --add_symbol "<unk>:1" --add_symbol "<sos/eos>:-1"
        mv "${token_dir}/tokens.txt.tmp" "${token_dir}/tokens.txt"
        step_finished "${token_dir}/.done"
    fi
    if [[ " ${decode_modes} " == *" ngram "* ]]; then prepare_ngram; fi
    if [[ " ${decode_modes} " == *" lm_"* ]] && [ -z "${lm_exp}" ]; then prepare_lm; fi
    each_run finetune_run
}

"""Every stage of the recipe on the CI-sized embedded corpus (./run_mini.sh --profile ci).

A few training steps per stage; checks the artefacts each stage leaves: data directories, labels of
both iterations, checkpoints, cluster quality, the probes, decoded text, RESULTS.md, and the packed
zip, which is unpacked elsewhere and loaded by Speech2Text.
"""

import json
import math
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import soundfile as sf
import yaml
from helpers.images import png_size

from espnet_ils.data.audio import num_frames
from espnet_ils.data.kaldi_files import read_key_file

RECIPE = Path(__file__).resolve().parents[1] / "egs2/librispeech_ils/ssl1"
SKIPPED = "skipped: done with the same options and inputs"
ENGINES = ("festival", "flite", "espeak-ng")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not all(shutil.which(engine) for engine in ENGINES),
        reason="the TTS engines are not installed (make tts, or egs2/librispeech_ils/ssl1/local/install_tts.sh)",
    ),
]


def run_ci_profile(dirs, *args: str) -> subprocess.CompletedProcess:
    """``./run_mini.sh --profile ci`` with its data, dump and exp directories in ``dirs``."""
    dir_args = [arg for name, path in dirs.items() for arg in (f"--{name}dir", str(path))]
    return subprocess.run(
        ["./run_mini.sh", "--profile", "ci", *dir_args, *args],
        cwd=RECIPE,
        capture_output=True,
        text=True,
    )


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("recipe")
    dirs = {name: root / name for name in ("data", "dump", "exp")}
    result = run_ci_profile(dirs)
    assert result.returncode == 0, result.stderr[-5000:]
    return dirs, result


def test_data_and_labels_of_both_iterations(run):
    dirs, _ = run
    for dset in ("train", "dev", "test", "train_ft"):
        assert (dirs["data"] / dset / ".done").exists() or (
            dirs["data"] / dset / "wav.scp"
        ).is_file()
        assert (dirs["dump"] / "raw" / dset / ".done").is_file()
    for tag in ("it1_mfcc_km100", "it2_L2_km100"):
        labels = read_key_file(dirs["dump"] / "labels" / tag / "train" / "text")
        lengths = read_key_file(dirs["dump"] / "raw" / "train" / "utt2num_samples")
        assert set(labels) == set(lengths)
        for utt, ids in labels.items():
            assert len(ids.split()) == num_frames(int(lengths[utt]))
        assert (dirs["dump"] / "labels" / tag / "tokens.txt").read_text().splitlines()[
            -1
        ] == "<unk>"
    # Stage 5 writes the block features of the k-means portion only; the labels come from audio.
    feats = dirs["dump"] / "feats_it2_L2_km100"
    portion = (feats / "train" / "portion").read_text().split()
    dumped = {utt for scp in (feats / "train").glob("feats.*.scp") for utt in read_key_file(scp)}
    assert dumped == set(portion) and 0 < len(portion) < len(lengths)
    assert not (feats / "dev").exists()


def test_checkpoints_and_cluster_quality(run):
    dirs, _ = run
    exp = dirs["exp"]
    assert (exp / "ssl_it1_mfcc_km100_hubert" / "valid.loss.best.pth").is_file()
    for arm in ("ils", "hubert"):
        assert (exp / f"ssl_it2_L2_km100_{arm}_seed0" / "valid.loss.best.pth").is_file()
    derived = (exp / "ssl_it2_L2_km100_hubert_seed0" / "derived_config.yaml").read_text()
    assert "- 4" in derived  # the baseline supervises the top block only
    table = (exp / "cluster_quality_it2_L2_km100" / "cluster_quality.tsv").read_text().splitlines()
    assert table[0].split("\t") == ["model", "layer", "phone_purity", "cluster_purity", "pnmi"]
    assert len(table) == 1 + 2 * 5  # two models, layers 0..4
    # A panel per metric of 4 x 3.2 inches at 120 dpi
    assert png_size(exp / "cluster_quality_it2_L2_km100" / "cluster_quality.png") == (1440, 384)
    # The paper's protocol: k-means fitted on 0.02 h of the training set, scored on the aligned dev set.
    protocol = json.loads((exp / "cluster_quality_it2_L2_km100" / "protocol.json").read_text())
    assert protocol["fit"] == str(dirs["dump"] / "raw" / "train") and protocol["fit_hours"] == 0.02
    assert protocol["scored"] == [str(dirs["dump"] / "raw" / "dev")]
    dev = read_key_file(dirs["dump"] / "raw" / "dev" / "phone_alignment")
    assert protocol["scored_utterances"] == len(dev) and protocol["n_clusters"] == 100
    train_seconds = (
        sum(map(int, read_key_file(dirs["dump"] / "raw" / "train" / "utt2num_samples").values()))
        / 16000
    )
    assert protocol["fit_utterances"] < len(
        read_key_file(dirs["dump"] / "raw" / "train" / "wav.scp")
    )
    assert train_seconds > 0.02 * 3600


def test_probes_of_both_arms(run):
    """Stage 7's frozen probes: phones from the corpus's alignments, each voice's utterances split
    three ways, a PER and an accuracy per run, the layer weights per run and their plot; stage 10
    puts both in the comparison."""
    dirs, _ = run
    dump, probes = dirs["dump"] / "probe", dirs["exp"] / "probes_it2_L2_km100"
    tests = read_key_file(dirs["dump"] / "raw" / "test" / "wav.scp")
    assert set(read_key_file(dump / "pr" / "test" / "text")) == set(tests)
    splits = {
        name: read_key_file(dump / "sid" / name / "text") for name in ("train", "valid", "test")
    }
    assert sorted(u for split in splits.values() for u in split) == sorted(
        read_key_file(dirs["dump"] / "raw" / "train" / "utt2spk")
    )
    assert set(splits["test"].values()) == set(splits["train"].values())  # the same voices
    rows = [row.split("\t") for row in (probes / "probes.tsv").read_text().splitlines()]
    assert rows[0] == ["model", "task", "metric", "value"]
    assert {tuple(row[:3]) for row in rows[1:]} == {
        (run, task, metric)
        for run in ("ils_seed0", "hubert_seed0")
        for task, metric in (("pr", "PER test (%)"), ("sid", "SID accuracy test (%)"))
    }
    assert all(0 <= float(row[3]) <= (100 if row[1] == "sid" else 1000) for row in rows[1:])
    weights = [
        row.split("\t") for row in (probes / "layer_weights.tsv").read_text().splitlines()[1:]
    ]
    assert len(weights) == 2 * 2 * 4  # tasks x arms x blocks
    for task in ("pr", "sid"):
        for arm in ("ils", "hubert"):
            total = sum(float(w[4]) for w in weights if w[0] == task and w[1] == arm)
            assert total == pytest.approx(1.0, abs=1e-3)
    # A panel per probe task (pr, sid) of 4.5 x 3.2 inches at 120 dpi
    assert png_size(probes / "layer_weights.png") == (1080, 384)
    comparison = (dirs["exp"] / "comparison_test.md").read_text()
    assert "| PER test (%) |" in comparison and "| SID accuracy test (%) |" in comparison


def test_decoding_scoring_and_results(run):
    dirs, result = run
    exp = dirs["exp"]
    tests = read_key_file(dirs["dump"] / "raw" / "test" / "wav.scp")
    for arm in ("ils", "hubert"):
        asr = exp / f"asr_it2_L2_km100_{arm}_seed0_train_asr_ctc_mini"
        for mode in ("greedy", "beam"):
            hyps = (asr / f"decode_{mode}" / "test" / "text").read_text().splitlines()
            assert sorted(line.split(" ")[0] for line in hyps) == sorted(tests)
            assert (asr / f"decode_{mode}" / "test" / "score_wer" / "result.txt").is_file()
    results = (exp / "RESULTS.md").read_text()
    assert "### WER" in results and "|decode_greedy/test|" in results
    assert "|decode_ngram/test|" in results and "|decode_lm_rescore/test|" in results
    assert (
        "ngram_3gram/perplexity.tsv" in results
        and "train_lm_transformer_mini/perplexity.tsv" in results
    )
    comparison = (exp / "comparison_test.md").read_text()
    for mode in ("greedy", "beam", "ngram", "lm_rescore"):
        assert f"| CER {mode} (%) |" in comparison and f"| WER {mode} (%) |" in comparison
    assert comparison in result.stdout  # the pipeline shows the table it writes
    manifest = (exp / "runs.tsv").read_text().splitlines()
    assert manifest[0] == "run\tarm\tseed\titeration\tssl_config\tssl_exp\tasr_config\tasr_exp"
    hubert = manifest[2].split("\t")
    assert hubert[:4] == ["hubert_seed0", "hubert", "0", "it2_L2_km100"]
    assert hubert[4:] == [
        str(exp / "ssl_it2_L2_km100_hubert_seed0" / "derived_config.yaml"),
        str(exp / "ssl_it2_L2_km100_hubert_seed0"),
        "conf/tuning/train_asr_ctc_mini.yaml",
        str(exp / "asr_it2_L2_km100_hubert_seed0_train_asr_ctc_mini"),
    ]


def test_ngram_decoding_tunes_on_dev_and_decodes_test(run):
    dirs, _ = run
    exp = dirs["exp"]
    ngram = exp / "lm" / "ngram_3gram"
    assert (ngram / "lm.arpa").read_text().lstrip().startswith("\\data\\")
    words = set((ngram / "words.txt").read_text().split())
    lexicon = (ngram / "lexicon.txt").read_text().splitlines()
    assert {line.split()[0] for line in lexicon} == words - {"<s>", "</s>", "<unk>"}
    perplexity = (ngram / "perplexity.tsv").read_text().splitlines()
    assert perplexity[0] == "text\tppl\toov_percent" and len(perplexity) == 3  # dev and test
    tests = read_key_file(dirs["dump"] / "raw" / "test" / "wav.scp")
    for arm in ("ils", "hubert"):
        asr = exp / f"asr_it2_L2_km100_{arm}_seed0_train_asr_ctc_mini"
        grid = (asr / "decode_ngram" / "tune_dev" / "wer_grid.tsv").read_text().splitlines()
        assert len(grid) == 1 + 2  # header, LM weights 0 and 2 x word score 0
        best = yaml.safe_load((asr / "decode_ngram" / "tune_dev" / "best.json").read_text())
        assert best["lm_weight"] in (0, 2) and best["word_score"] == 0
        lines = (asr / "decode_ngram" / "test" / "text").read_text().splitlines()
        assert sorted(line.split(" ")[0] for line in lines) == sorted(tests)
        # Only lexicon words come out of the lexicon search.
        assert {word for line in lines for word in line.split()[1:]} <= words


def test_letter_lm_trains_and_rescores_on_dev_and_test(run):
    """lm_fusion differs only in its search (tests/test_transformer_lm.py); at seconds per
    utterance it stays out of the CI profile."""
    dirs, _ = run
    exp = dirs["exp"]
    lm = exp / "lm" / "train_lm_transformer_mini"
    config = yaml.safe_load((lm / "config.yaml").read_text())
    tokens = (dirs["dump"] / "token_list" / "char" / "tokens.txt").read_text().splitlines()
    assert config["token_list"] == tokens  # the ASR model's letters, in its order
    rows = dict(line.split("\t") for line in (lm / "perplexity.tsv").read_text().splitlines())
    assert sorted(rows) == ["dev", "test"]  # per letter; 3 training steps leave it near uniform
    assert all(math.isfinite(float(ppl)) and float(ppl) > 1.0 for ppl in rows.values())
    stats = (dirs["dump"] / "lm_text" / "stats.tsv").read_text()
    assert "unigram_perplexity" in stats
    tests = read_key_file(dirs["dump"] / "raw" / "test" / "wav.scp")
    for arm in ("ils", "hubert"):
        decode = exp / f"asr_it2_L2_km100_{arm}_seed0_train_asr_ctc_mini" / "decode_lm_rescore"
        grid = (decode / "tune_dev" / "wer_grid.tsv").read_text().splitlines()
        assert grid[0] == "lm_weight\tpenalty\twer" and len(grid) == 2  # weight 0.5 x penalty 0
        best = yaml.safe_load((decode / "tune_dev" / "best.json").read_text())
        assert best["search"] == "lm_rescore" and (best["lm_weight"], best["penalty"]) == (0.5, 0)
        lines = (decode / "test" / "text").read_text().splitlines()
        assert sorted(line.split(" ")[0] for line in lines) == sorted(tests)


def test_packed_model_loads_in_speech2text_elsewhere(run, tmp_path):
    dirs, _ = run
    from espnet2.bin.asr_inference import Speech2Text
    from espnet2.main_funcs.pack_funcs import unpack

    asr = dirs["exp"] / "asr_it2_L2_km100_ils_seed0_train_asr_ctc_mini"
    zips = list((asr / "packed").glob("*.zip"))
    assert len(zips) == 1
    files = unpack(zips[0], tmp_path / "unpacked")
    config = yaml.safe_load(Path(files["asr_train_config"]).read_text())
    ssl_model = Path(config["frontend_conf"]["frontend_conf"]["path_or_url"])
    assert ssl_model.is_file() and (tmp_path / "unpacked") in ssl_model.parents  # not the exp dir
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        speech2text = Speech2Text(
            asr_train_config=files["asr_train_config"],
            asr_model_file=files["asr_model_file"],
            ctc_weight=1.0,
            lm_weight=0.0,
            beam_size=1,
        )
        wav_path = next(iter(read_key_file(dirs["dump"] / "raw" / "test" / "wav.scp").values()))
        wave, _ = sf.read(wav_path, dtype="float32")
        hypotheses = speech2text(wave)
    finally:
        os.chdir(cwd)
    assert isinstance(hypotheses[0][0], str)


def test_a_second_run_skips_every_finished_stage(run):
    """Every step finds its marker with the same options and inputs: nothing is redone, and each
    skip is logged with its reason."""
    dirs, _ = run
    exp, dump = dirs["exp"], dirs["dump"]
    asr = exp / "asr_it2_L2_km100_ils_seed0_train_asr_ctc_mini"
    outputs = [
        dump / "raw" / "train" / "wav.scp",
        dump / "mfcc" / "train" / "feats.1.ark",
        exp / "kmeans" / "it1_mfcc_km100" / "km.joblib",
        dump / "labels" / "it1_mfcc_km100" / "train" / "labels.1",
        exp / "ssl_it1_mfcc_km100_hubert" / "valid.loss.best.pth",
        dump / "feats_it2_L2_km100" / "train" / "feats.1.ark",
        exp / "kmeans" / "it2_L2_km100" / "km.joblib",
        exp / "ssl_it2_L2_km100_hubert_seed0" / "valid.loss.best.pth",
        exp / "cluster_quality_it2_L2_km100" / "cluster_quality.tsv",
        dump / "probe" / "pr" / "train" / "text",
        dump / "probe" / "sid" / "test" / "text",
        exp / "probes_it2_L2_km100" / "pr_ils_seed0" / "valid.loss.best.pth",
        exp / "probes_it2_L2_km100" / "pr_ils_seed0" / "decode_test" / "text",
        exp / "probes_it2_L2_km100" / "sid_hubert_seed0" / "decode_test" / "text",
        asr / "valid.loss.best.pth",
        asr / "decode_beam" / "test" / "text",
        exp / "lm" / "ngram_3gram" / "lm.arpa",
        asr / "ctc_logprobs" / "test" / "feats.1.ark",
        asr / "decode_ngram" / "tune_dev" / "best.json",
        asr / "decode_ngram" / "test" / "text",
        dump / "lm_text" / "train" / "text",
        exp / "lm" / "train_lm_transformer_mini" / "valid.loss.best.pth",
        asr / "decode_lm_rescore" / "test" / "text",
        asr / "decode_lm_rescore" / "tune_dev" / "best.json",
        exp / "RESULTS.md",
        exp / "comparison_test.md",
        *(asr / "packed").glob("*.zip"),
    ]
    stamps = {path: path.stat().st_mtime_ns for path in outputs}
    result = run_ci_profile(dirs)
    assert result.returncode == 0, result.stderr[-3000:]
    assert {path: path.stat().st_mtime_ns for path in outputs} == stamps
    assert "computing" not in result.stderr  # neither "computing (no marker" nor "recomputing"
    skips = [line for line in result.stderr.splitlines() if SKIPPED in line]
    for step in (
        "formatting",
        "k-means",
        "pretraining",
        "Stage 7: cluster quality",
        "Stage 7: phone-recognition probe data",
        "Stage 7: speaker-identification probe data",
        "Stage 7: pr probe",
        "Stage 7: sid probe decoding",
        "Stage 8: letter token list",
        "Stage 8: fine-tuning",
        "Stage 8: word n-gram",
        "Stage 9: decoding",
        "Stage 9: ngram: LM weight x bonus",
        "Stage 8: letter LM text",
        f"Stage 8: letter LM {exp}",
        "Stage 9: lm_rescore: LM weight x bonus",
        "Stage 10: scoring",
        "Stage 11: packing",
    ):
        assert any(step in line for line in skips), f"no logged skip of {step}"
    assert "nothing to do" in result.stderr  # the mini corpus (stage 1)

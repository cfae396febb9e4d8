"""Letter Transformer LM: text for ESPnet's LM task (espnet_ils.decoding.lm_text, bin/prepare_lm_text),
training through ESPnet's ``lm_train`` (bin/lm_train), and shallow fusion in ``espnet_ils.bin.asr_inference``
with the token-list check of espnet_ils.decoding.lm_check.

The LM (helpers/lm.py, conftest's ``lm_exp``) learns a small grammar (THE CAT SAT ON THE MAT ...)
over the letters of the decoding tests' token list and is fused with their tiny CTC model
(helpers/decoding.py).
"""

import gzip
import json
import math
from pathlib import Path
from typing import Dict, Optional

import numpy as np
import pytest
import soundfile as sf
import torch
import yaml
from espnet2.tasks.lm import LMTask
from espnet2.text.char_tokenizer import CharTokenizer
from helpers.decoding import ACOUSTICS, TOKENS, ctc_log_probs, tiny_asr_model
from helpers.lm import read_keyed, write_keyed

from espnet_ils.bin import asr_inference, lm_calc_perplexity
from espnet_ils.bin import ctc_decode as ctc_decode_bin
from espnet_ils.data.audio import load_waveform
from espnet_ils.data.shards import feature_shard_writer
from espnet_ils.decoding.ctc_logprobs import compute_ctc_logprobs
from espnet_ils.decoding.lexicon import best_path, ids_to_words
from espnet_ils.decoding.lm_check import check_lm_for_asr, check_same_token_list, config_token_list
from espnet_ils.decoding.lm_text import (
    SHAPE_FILE,
    Exclusions,
    TextSource,
    prepare_lm_text,
    unigram_perplexity,
    write_lm_split,
)
from espnet_ils.decoding.transformer_lm import LMFusionSearch, NbestRescoring
from espnet_ils.train.tasks import ILSASRTask


def test_lm_text_is_keyed_and_its_shapes_count_espnets_char_tokens(tmp_path):
    """Keys kept or numbered, whitespace single, shape = ESPnet CharTokenizer's token count."""
    text = tmp_path / "text"
    text.write_text("u2 THE  CAT\tSAT\nu1 ON THE MAT\nu3\n")
    corpus = tmp_path / "lm-norm.txt.gz"
    with gzip.open(corpus, "wt") as f:
        f.write("THE HAT\n\n THE   MAT \n")
    sources = [TextSource(text, keyed=True), TextSource(corpus, keyed=False)]
    stats = write_lm_split(sources, TOKENS, tmp_path / "out")
    written = read_keyed(tmp_path / "out" / "text")
    assert written == {
        "u2": "THE CAT SAT",
        "u1": "ON THE MAT",
        "lm_norm_000000001": "THE HAT",
        "lm_norm_000000003": "THE MAT",
    }
    assert (stats.sentences, stats.empty) == (4, 2)
    tokenizer = CharTokenizer()
    for line in (tmp_path / "out" / SHAPE_FILE).read_text().splitlines():
        key, shape = line.split()
        tokens = tokenizer.text2tokens(written[key])
        assert shape == f"{len(tokens)},{len(TOKENS)}"
        assert "<space>" in tokens and set(tokens) <= set(TOKENS)
    assert stats.characters == sum(len(s) for s in written.values())


def test_test_ids_and_test_sentences_are_left_out_and_counted(lm_root, tmp_path):
    train = write_keyed(tmp_path / "train", "tr", ["THE CAT", "THE MAT", "THE HAT SAT"])
    exclusions = Exclusions(ids={"tr000"}, sentences={"THE HAT SAT"})
    stats = write_lm_split([TextSource(train, keyed=True)], TOKENS, tmp_path / "out", exclusions)
    assert read_keyed(tmp_path / "out" / "text") == {"tr001": "THE MAT"}
    assert (stats.excluded_id, stats.excluded_sentence) == (1, 1)
    # the fixture's test set: every test transcript that the training grammar also drew is out
    report = (lm_root / "lm_text" / "stats.tsv").read_text()
    test_sentences = set(read_keyed(lm_root / "test_text").values())
    expected = sum(s in test_sentences for s in read_keyed(lm_root / "train_text").values())
    assert expected > 0  # the grammar is small: short sentences repeat
    assert f"train\texcluded_test_sentence\t{expected}\n" in report
    assert not test_sentences & set(read_keyed(lm_root / "lm_text" / "train" / "text").values())


def test_a_few_unknown_characters_become_unk_and_are_reported(tmp_path):
    sentences = ["THE CAT"] * 300 + ["THE DOG"]  # D and G: 2 of 2107 characters
    train = write_keyed(tmp_path / "train", "tr", sentences)
    stats = write_lm_split(
        [TextSource(train, keyed=True)], TOKENS, tmp_path / "out", max_unknown_rate=0.001
    )
    assert stats.unknown == {"D": 1, "G": 1} and stats.sentences == 301
    assert stats.first_unknown.startswith(f"{train}:301: 'D'")


def test_many_unknown_characters_raise_naming_the_first_line(tmp_path):
    train = write_keyed(tmp_path / "train", "tr", ["THE CAT", "the mat", "THE MAT"])
    with pytest.raises(ValueError, match=f"{train}:2: 't' in 'the mat'.*not in the token list"):
        write_lm_split([TextSource(train, keyed=True)], TOKENS, tmp_path / "out")
    assert not (tmp_path / "out" / "text").exists()  # nothing half-written under the final name


def test_a_key_written_twice_raises_naming_both_places(tmp_path):
    first = write_keyed(tmp_path / "a", "u", ["THE CAT"])
    second = write_keyed(tmp_path / "b", "u", ["THE MAT"])
    sources = [TextSource(first, keyed=True), TextSource(second, keyed=True)]
    with pytest.raises(ValueError, match=f"{second}:1: key 'u000' is also at {first}:1"):
        write_lm_split(sources, TOKENS, tmp_path / "out")


def test_token_list_must_end_with_sos_eos(lm_root, tmp_path):
    (tmp_path / "tokens.txt").write_text("".join(t + "\n" for t in TOKENS[:-1]))
    with pytest.raises(ValueError, match="the last token is '<space>'"):
        prepare_lm_text([], [], tmp_path / "tokens.txt", tmp_path / "out")


def test_unigram_perplexity_of_a_one_letter_language(tmp_path):
    """Train and dev all "A": p(A) = (n_A + 1) / (n + V - 1), p(eos) likewise, by hand."""
    train = write_keyed(tmp_path / "train", "t", ["A"] * 10)
    dev = write_keyed(tmp_path / "dev", "d", ["A"])
    p = 11 / (20 + len(TOKENS) - 1)  # 10 A and 10 <sos/eos>, each + 1
    assert unigram_perplexity(train, dev, TOKENS) == pytest.approx(1 / p)


def test_lm_dev_perplexity_beats_the_uniform_and_unigram_letter_models(lm_root, lm_exp):
    out = lm_exp / "perplexity_dev"
    lm_calc_perplexity.main(["--ngpu", "0", "--output_dir", str(out),
                             "--data_path_and_name_and_type", f"{lm_root / 'lm_text' / 'dev' / 'text'},text,text",
                             "--train_config", str(lm_exp / "config.yaml"),
                             "--model_file", str(lm_exp / "valid.loss.best.pth")])  # fmt: skip
    ppl = float((out / "ppl").read_text().split()[0])
    uniform = len(TOKENS) - 1  # every token but <blank>
    report = (lm_root / "lm_text" / "stats.tsv").read_text().splitlines()
    unigram = float(next(r for r in report if "unigram_perplexity" in r).split("\t")[2])
    assert 5.0 < unigram < uniform
    assert ppl < 0.5 * unigram, f"LM dev perplexity {ppl:.2f}, unigram {unigram:.2f}"


@pytest.fixture(scope="module")
def asr_dir(tmp_path_factory) -> Dict[str, Path]:
    """The decoding tests' tiny CTC model (helpers/decoding.py, untrained) and a wav.scp of 3 noise
    utterances."""
    root = tmp_path_factory.mktemp("asr")
    _, config, weights = tiny_asr_model(root)
    rng = np.random.default_rng(1)
    lines = []
    for i in range(3):
        sf.write(root / f"utt{i}.wav", 0.1 * rng.standard_normal(4800), 16000, subtype="FLOAT")
        lines.append(f"utt{i} {root / f'utt{i}.wav'}\n")
    (root / "wav.scp").write_text("".join(lines))
    return {"config": config, "model": weights, "wav_scp": root / "wav.scp", "root": root}


def decode(
    asr_dir, lm_exp: Optional[Path], outdir: Path, lm_weight: float, lm_config=None
) -> Dict[str, tuple]:
    """Beam 4 through espnet_ils.bin.asr_inference; ``{utt: (text, score)}``; no LM if ``lm_exp``
    is None."""
    lm = [] if lm_exp is None else ["--lm_train_config", str(lm_config or lm_exp / "config.yaml"),
                                    "--lm_file", str(lm_exp / "valid.loss.best.pth")]  # fmt: skip
    asr_inference.main(["--ngpu", "0", "--batch_size", "1", "--beam_size", "4",
                        "--data_path_and_name_and_type", f"{asr_dir['wav_scp']},speech,sound",
                        "--asr_train_config", str(asr_dir["config"]),
                        "--asr_model_file", str(asr_dir["model"]), *lm,
                        "--ctc_weight", "1.0", "--lm_weight", str(lm_weight),
                        "--output_dir", str(outdir)])  # fmt: skip
    best = outdir / "1best_recog"
    texts, scores = read_keyed(best / "text"), read_keyed(best / "score")
    return {utt: (texts[utt], float(scores[utt].strip("tensor()"))) for utt in scores}


def lm_log_prob(lm_exp: Path, sentence: str) -> float:
    """log P(sentence <eos>) under the LM, summed over its letters (ESPnet's LM nll)."""
    model, args = LMTask.build_model_from_file(
        lm_exp / "config.yaml", lm_exp / "valid.loss.best.pth", "cpu"
    )
    ids = [args.token_list.index(t) for t in CharTokenizer().text2tokens(sentence)]
    model.eval()  # as Speech2Text runs it: no positional or attention dropout
    with torch.no_grad():
        nll, _ = model.nll(torch.tensor([ids], dtype=torch.long), torch.tensor([len(ids)]))
    return -float(nll.sum())


def test_fused_lm_adds_its_log_probability_to_each_hypothesis(asr_dir, lm_exp, tmp_path):
    without = decode(asr_dir, lm_exp, tmp_path / "w0", lm_weight=0.0)
    weight = 0.01  # small enough to leave hypotheses as they are
    fused = decode(asr_dir, lm_exp, tmp_path / "w001", lm_weight=weight)
    assert sorted(fused) == ["utt0", "utt1", "utt2"]
    same = [utt for utt in fused if fused[utt][0] == without[utt][0]]
    assert same, f"the LM changed every hypothesis at weight {weight}: {fused} vs {without}"
    for utt in same:
        text, score = fused[utt]
        expected = without[utt][1] + weight * lm_log_prob(lm_exp, text)
        assert score == pytest.approx(expected, abs=1e-3), utt


def test_a_heavy_lm_turns_noise_into_its_grammar(asr_dir, lm_exp, tmp_path):
    fused = decode(asr_dir, lm_exp, tmp_path / "w5", lm_weight=5.0)
    for utt, (text, _) in fused.items():
        assert text.startswith("THE"), f"{utt}: {text!r}"
        assert math.isfinite(lm_log_prob(lm_exp, text))


def swapped_token_config(lm_exp: Path, tmp_path: Path) -> Path:
    config = yaml.safe_load((lm_exp / "config.yaml").read_text())
    tokens = config["token_list"]
    tokens[3], tokens[4] = tokens[4], tokens[3]  # C and E
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    return tmp_path / "config.yaml"


def test_an_lm_of_another_token_list_is_refused_before_decoding(asr_dir, lm_exp, tmp_path):
    config = swapped_token_config(lm_exp, tmp_path)
    with pytest.raises(
        SystemExit,
        match=f"at token 3: the LM has 'E' .*the ASR model has 'C' .*LM config {config}, ASR config {asr_dir['config']}",
    ):
        decode(asr_dir, lm_exp, tmp_path / "out", lm_weight=0.3, lm_config=config)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("search", [LMFusionSearch, NbestRescoring])
def test_the_searches_refuse_an_lm_of_another_token_list_or_a_missing_checkpoint(
    lm_exp, tmp_path, search
):
    config = swapped_token_config(lm_exp, tmp_path)
    args = {"beam_size": 4} if search is LMFusionSearch else {"beam_size": 4, "nbest": 4}
    with pytest.raises(ValueError, match=f"{config}: .* differs .* at token 3: the LM has 'E'"):
        search(TOKENS, config, lm_exp / "valid.loss.best.pth", **args)
    with pytest.raises(FileNotFoundError, match=f"{tmp_path / 'none.pth'}: no such LM checkpoint"):
        search(TOKENS, lm_exp / "config.yaml", tmp_path / "none.pth", **args)


def test_token_lists_of_different_lengths_name_the_missing_token(asr_dir, lm_exp, tmp_path):
    config = yaml.safe_load((lm_exp / "config.yaml").read_text())
    config["token_list"] = config["token_list"][:-1]
    (tmp_path / "short.yaml").write_text(yaml.safe_dump(config))
    with pytest.raises(ValueError, match=r"at token 13: the LM has no token \(13 tokens\)"):
        check_same_token_list(asr_dir["config"], tmp_path / "short.yaml")
    assert config_token_list(asr_dir["config"]) == TOKENS  # a path in the ASR config, read


def test_missing_lm_file_is_named(asr_dir, lm_exp, tmp_path):
    with pytest.raises(FileNotFoundError, match=f"--lm_file {tmp_path / 'none.pth'}: no such"):
        check_lm_for_asr(asr_dir["config"], lm_exp / "config.yaml", tmp_path / "none.pth")


RECIPE_CONF = Path(__file__).resolve().parents[1] / "egs2/librispeech_ils/ssl1/conf/tuning"


@pytest.mark.parametrize(
    "name, blocks", [("train_lm_transformer_mini", 2), ("train_lm_transformer_librispeech", 16)]
)
def test_recipe_lm_configs_build_through_espnets_lm_task(lm_root, name, blocks):
    args = LMTask.get_parser().parse_args(
        ["--config", str(RECIPE_CONF / f"{name}.yaml"), "--token_list", str(lm_root / "tokens.txt")]
    )
    model = LMTask.build_model(args)
    assert len(model.lm.encoder.encoders) == blocks
    assert model.lm.decoder.out_features == len(TOKENS)


def test_a_beam_wider_than_the_token_list_is_refused_before_decoding(asr_dir, tmp_path):
    """ESPnet's batch beam search would fail inside its first step at 15 (top 15 of 1 x 14
    scores) and let the blank into the beam at 14."""
    with pytest.raises(SystemExit, match="beam size 14 for 14 tokens: .* takes at most 13"):
        asr_inference.main(["--ngpu", "0", "--beam_size", "14", "--output_dir", str(tmp_path / "o"),
                            "--data_path_and_name_and_type", f"{asr_dir['wav_scp']},speech,sound",
                            "--asr_train_config", str(asr_dir["config"]),
                            "--asr_model_file", str(asr_dir["model"])])  # fmt: skip
    assert not (tmp_path / "o").exists()


def lm_files(lm_exp: Path) -> tuple:
    return lm_exp / "config.yaml", lm_exp / "valid.loss.best.pth"


@pytest.mark.parametrize("with_lm", [True, False])
def test_fusion_on_kept_log_probs_decodes_as_espnets_speech2text(
    asr_dir, lm_exp, tmp_path, with_lm
):
    """The same beam search, scorers and weights over dump_ctc_logprobs' output: same words
    (ESPnet's text keeps a <space> at either end as a space). Without an LM: ESPnet's CTC prefix
    beam search alone (asr_inference without --lm_file)."""
    model, _ = ILSASRTask.build_model_from_file(asr_dir["config"], asr_dir["model"], "cpu")
    model.eval()
    lm_weight = 0.3 if with_lm else 0.0
    lm = lm_files(lm_exp) if with_lm else (None, None)
    search = LMFusionSearch(TOKENS, *lm, beam_size=4)
    fused = decode(asr_dir, lm_exp if with_lm else None, tmp_path / "out", lm_weight=lm_weight)
    for utt, path in read_keyed(asr_dir["wav_scp"]).items():
        log_probs = compute_ctc_logprobs(model, load_waveform(path, utt))
        words = " ".join(fused[utt][0].split())
        assert search.decode(log_probs, lm_weight=lm_weight, penalty=0.0) == words, utt


def test_a_search_without_lm_refuses_an_lm_weight_and_half_an_lm(lm_exp):
    search = LMFusionSearch(TOKENS, beam_size=8)
    log_probs = ctc_log_probs(ACOUSTICS["utt1"])
    assert search.decode(log_probs, lm_weight=0.0, penalty=0.0) == "THE KAT SAT"
    with pytest.raises(ValueError, match=r"lm_weight=0.5 for a search without an LM: expected 0"):
        search.decode(log_probs, lm_weight=0.5, penalty=0.0)
    with pytest.raises(ValueError, match=r"lm_file=None: give both .* or neither"):
        LMFusionSearch(TOKENS, lm_exp / "config.yaml", None, beam_size=8)


@pytest.mark.parametrize("kind", ["fusion", "rescoring"])
def test_the_letter_lm_repairs_a_misspelling_that_the_best_path_keeps(lm_exp, kind):
    """Best path THE KAT SAT; K never follows THE in the LM's grammar: THE CAT SAT."""
    log_probs = ctc_log_probs(ACOUSTICS["utt1"])
    assert best_path(log_probs, TOKENS) == "THE KAT SAT"
    if kind == "fusion":
        search = LMFusionSearch(TOKENS, *lm_files(lm_exp), beam_size=8)
    else:
        search = NbestRescoring(TOKENS, *lm_files(lm_exp), beam_size=16, nbest=16)
    assert search.decode(log_probs, lm_weight=0.0, penalty=0.0) == "THE KAT SAT"
    assert search.decode(log_probs, lm_weight=1.0, penalty=0.0) == "THE CAT SAT"


def test_rescoring_adds_the_lms_sentence_log_probability_to_each_candidate(lm_exp):
    rescoring = NbestRescoring(TOKENS, *lm_files(lm_exp), beam_size=16, nbest=16)
    candidates = rescoring.candidates(ctc_log_probs(ACOUSTICS["utt1"]))
    assert len(candidates) > 1
    # The first 3 (KAT, CAT, HE KAT) are unique; from the 4th on, candidates tie (every other
    # letter has probability 1e-3 in the K/C frame), in an order Flashlight does not fix, and some
    # spell <unk> or <sos/eos>, which the LM's text cannot hold.
    for candidate in candidates[:3]:
        text = "".join(" " if TOKENS[i] == "<space>" else TOKENS[i] for i in candidate.letters)
        assert candidate.lm_score == pytest.approx(lm_log_prob(lm_exp, text), abs=1e-4), text
    log_probs = ctc_log_probs(ACOUSTICS["utt1"])
    heavy = max(candidates, key=lambda c: c.ctc_score + 100.0 * c.lm_score)
    assert rescoring.decode(log_probs, 100.0, 0.0) == ids_to_words(heavy.letters, TOKENS)


def test_bin_tunes_lm_weight_and_penalty_then_decodes_with_them(lm_root, lm_exp, tmp_path):
    scp_dir = tmp_path / "logprobs"
    with feature_shard_writer(scp_dir, 1) as writer:
        for utt, frames in ACOUSTICS.items():
            writer[utt] = ctc_log_probs(frames).numpy()
    refs = {"utt1": "THE CAT SAT", "utt2": "THE MAT", "utt3": "THE CAT SAT ON THE MAT"}
    write_keyed(tmp_path / "ref", "", [])
    (tmp_path / "ref").write_text("".join(f"{u} {t}\n" for u, t in refs.items()))
    config, model = lm_files(lm_exp)
    common = ["--logprobs_scp", str(scp_dir / "feats.1.scp"), "--token_list", str(lm_root / "tokens.txt"),
              "--search", "lm_rescore", "--lm_train_config", str(config), "--lm_file", str(model),
              "--beam_size", "16"]  # fmt: skip
    ctc_decode_bin.main(["tune", *common, "--ref_text", str(tmp_path / "ref"), "--lm_weights", "0,1",
                         "--penalties", "0,0.5", "--outdir", str(tmp_path / "tune")])  # fmt: skip
    rows = [r.split("\t") for r in (tmp_path / "tune" / "wer_grid.tsv").read_text().splitlines()]
    assert rows[0] == ["lm_weight", "penalty", "wer"] and len(rows) == 5
    best = json.loads((tmp_path / "tune" / "best.json").read_text())
    assert best["search"] == "lm_rescore" and best["wer"] < best["best_path_wer"]
    assert best["wer"] == min(float(r[2]) for r in rows[1:]) and best["lm_weight"] == 1.0
    ctc_decode_bin.main(["decode", *common, "--tuned", str(tmp_path / "tune" / "best.json"),
                         "--output", str(tmp_path / "text")])  # fmt: skip
    assert read_keyed(tmp_path / "text") == read_keyed(tmp_path / "tune" / "text")
    with pytest.raises(SystemExit, match="--search lm_rescore tunes --lm_weights x --penalties"):
        ctc_decode_bin.main(["tune", *common, "--ref_text", str(tmp_path / "ref"), "--lm_weights", "1",
                             "--word_scores", "0", "--outdir", str(tmp_path / "t2")])  # fmt: skip
    with pytest.raises(SystemExit, match="--search lm_fusion takes --lm_file --lm_train_config"):
        ctc_decode_bin.main(["decode", *common[:4], "--search", "lm_fusion", "--lexicon", "x",
                             "--output", str(tmp_path / "t3")])  # fmt: skip

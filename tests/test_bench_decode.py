"""bench/bench_decode.py on the decoding tests' synthetic log-probs, bigram and lexicon
(helpers/decoding.py) and the grammar LM (conftest's ``lm_exp``): every setting's row is there,
measured on the same utterances, with the weights taken from where the report says; the WERs order
as test_lexicon_decoding.py and test_transformer_lm.py find them (the lexicon and the LMs repair what the
best path gets wrong).
"""

import json
from pathlib import Path
from typing import Dict

import pytest
from helpers.decoding import ACOUSTICS, REFS, TINY_ARPA, TOKENS, WORDS, ctc_log_probs
from helpers.scripts import load_module

from espnet_ils.data.shards import feature_shard_writer
from espnet_ils.decoding.lexicon import letter_lexicon, write_lexicon

BENCH = Path(__file__).resolve().parents[1] / "bench"
load_module(BENCH / "bench_pretrain_step.py")  # bench_decode imports it by name, as its neighbour
bench_decode = load_module(BENCH / "bench_decode.py")

FRAMES = {utt: 2 * len(frames) for utt, frames in ACOUSTICS.items()}  # an emitting + a blank frame


@pytest.fixture
def inputs(tmp_path) -> Dict[str, Path]:
    """The recipe's layout: kept log-probs of set ``test``, a tuned ``ngram`` best.json, the
    token list, references and ``ngram_2gram/{lm.arpa,lexicon.txt}``."""
    asr_exp = tmp_path / "exp" / "asr_tiny"
    with feature_shard_writer(asr_exp / "ctc_logprobs" / "test", 1) as writer:
        for utt, frames in ACOUSTICS.items():
            writer[utt] = ctc_log_probs(frames).numpy()
    tune = asr_exp / "decode_ngram" / "tune_dev"
    tune.mkdir(parents=True)
    (tune / "best.json").write_text(json.dumps({"lm_weight": 2.0, "word_score": 0.0}))
    (tmp_path / "tokens.txt").write_text("".join(t + "\n" for t in TOKENS))
    (tmp_path / "text").write_text("".join(f"{utt} {ref}\n" for utt, ref in REFS.items()))
    ngram_dir = tmp_path / "exp" / "lm" / "ngram_2gram"
    ngram_dir.mkdir(parents=True)
    (ngram_dir / "lm.arpa").write_text(TINY_ARPA.lstrip())
    write_lexicon(letter_lexicon(WORDS, TOKENS), ngram_dir / "lexicon.txt")
    return {"asr_exp": asr_exp, "tune": tune, "ngram_dir": ngram_dir, "root": tmp_path}


def common(inputs: Dict[str, Path]) -> list:
    return ["--asr_exp", str(inputs["asr_exp"]), "--set", "test",
            "--token_list", str(inputs["root"] / "tokens.txt"),
            "--ref_text", str(inputs["root"] / "text"),
            "--ngram_dir", str(inputs["ngram_dir"])]  # fmt: skip


def table(stdout: str) -> Dict[str, list]:
    """The printed rows, by setting name: the cells after the name."""
    rows = [line.strip("|").split("|") for line in stdout.splitlines() if line.startswith("| ")]
    return {cells[0].strip(): [c.strip() for c in cells[1:]] for cells in rows[1:]}


@pytest.mark.slow
def test_every_setting_has_its_row_and_the_lms_beat_the_best_path(inputs, lm_exp, capsys):
    rows = bench_decode.main([*common(inputs), "--lm_dir", str(lm_exp), "--lm_weight", "1",
                              "--penalty", "0"])  # fmt: skip
    out = capsys.readouterr().out
    assert [row.setting.name for row in rows] == list(bench_decode.SETTING_NAMES)
    assert list(table(out)) == list(bench_decode.SETTING_NAMES)
    audio = sum(FRAMES.values()) * 0.02
    assert {(row.utterances, round(row.audio_seconds, 6)) for row in rows} == {(3, audio)}
    assert all(row.decode_seconds > 0 for row in rows)
    assert "the first 3 of 3 utterances (sorted ids)" in out and "machine: CPU `" in out
    assert f"weights ngram: lm_weight 2, word_score 0 (tuned {inputs['tune'] / 'best.json'})" in out
    assert "weights lm_fusion: lm_weight 1, penalty 0 (option)" in out
    assert f"beam {len(TOKENS) - 1} = len(tokens) - 1" in out
    wer = {row.setting.name: row.wer for row in rows}
    # Best path: THE KAT SAT, THE HAT, THE CAT HAT ON THE HAT (4 of 11 words wrong); ESPnet's
    # beam search without an LM finds the same text on these peaked log-probs.
    assert wer["greedy"] == pytest.approx(100 * 4 / 11)
    assert wer["beam10"] == wer["beam_widest"] == wer["greedy"]
    for name in ("ngram1500", "ngram500", "ngram50"):  # lexicon + bigram: the references
        assert wer[name] == 0.0, name
    for name in ("fusion10", "fusion_widest", "rescore50", "rescore10"):  # KAT -> CAT at least
        assert wer[name] < wer["greedy"], name
    assert all(row.cer < 100 for row in rows)


def test_max_utts_takes_the_first_sorted_ids_and_each_weight_names_its_source(inputs, capsys):
    rows = bench_decode.main([*common(inputs), "--settings", "greedy", "ngram50",
                              "--max_utts", "2", "--ngram_lm_weight", "0"])  # fmt: skip
    out = capsys.readouterr().out
    assert list(table(out)) == ["greedy", "ngram50"]
    audio = (FRAMES["utt1"] + FRAMES["utt2"]) * 0.02
    assert {(row.utterances, round(row.audio_seconds, 6)) for row in rows} == {(2, audio)}
    assert "the first 2 of 3 utterances" in out
    tuned = inputs["tune"] / "best.json"
    assert f"weights ngram: lm_weight 0 (option), word_score 0 (tuned {tuned})" in out
    # Without the LM the lexicon still repairs KAT; HAT stays (THE HAT for THE MAT).
    assert [row.wer for row in rows] == [40.0, 20.0]


def test_missing_resources_and_ambiguous_tuning_are_refused_before_decoding(inputs, capsys):
    with pytest.raises(ValueError, match="settings fusion10, rescore50 need --lm_dir"):
        bench_decode.main([*common(inputs), "--settings", "greedy", "fusion10", "rescore50"])
    other = inputs["asr_exp"] / "decode_ngram" / "tune_dev_other"
    other.mkdir()
    (other / "best.json").write_text(json.dumps({"lm_weight": 1.0, "word_score": 0.0}))
    with pytest.raises(
        ValueError, match="2 tuned ngram weights: .*pass --ngram_lm_weight and --word_score"
    ):
        bench_decode.main([*common(inputs), "--settings", "ngram50"])
    with pytest.raises(FileNotFoundError, match="no kept log-probs for --set dev"):
        bench_decode.main([*common(inputs)[:2], "--set", "dev", *common(inputs)[4:],
                           "--settings", "greedy"])  # fmt: skip
    assert "| greedy |" not in capsys.readouterr().out

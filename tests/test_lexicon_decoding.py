"""Lexicon beam search with a word n-gram (espnet_ils.decoding.lexicon, espnet_ils.decoding.ngram).

Synthetic CTC log-probs (helpers/decoding.py) spell words whose best path is misspelled (KAT) or
acoustically ambiguous (HAT/MAT, HAT/SAT); the letter lexicon repairs the spelling and the LM picks
the reference word.
"""

import gzip
import json
from pathlib import Path
from typing import Dict

import numpy as np
import pytest
import torch
from helpers.decoding import (
    ACOUSTICS,
    REFS,
    TINY_ARPA,
    TOKENS,
    WORDS,
    ctc_log_probs,
    write_scp,
)

from espnet_ils.bin import build_ngram as build_ngram_bin
from espnet_ils.bin import ctc_decode as ctc_decode_bin
from espnet_ils.decoding.lexicon import (
    LexiconBeamSearch,
    best_path,
    decode_all,
    letter_lexicon,
    read_lexicon,
    read_token_list,
    read_word_list,
    tune,
    write_lexicon,
)
from espnet_ils.decoding.ngram import (
    arpa_counts,
    arpa_words,
    build_arpa,
    irstlm_tool,
    ngram_perplexity,
)
from espnet_ils.decoding.scoring import count_errors


@pytest.fixture
def log_probs() -> Dict[str, np.ndarray]:
    return {utt: ctc_log_probs(frames).numpy() for utt, frames in ACOUSTICS.items()}


@pytest.fixture
def files(tmp_path) -> Dict[str, Path]:
    (tmp_path / "tokens.txt").write_text("".join(t + "\n" for t in TOKENS))
    write_lexicon(letter_lexicon(WORDS, TOKENS), tmp_path / "lexicon.txt")
    (tmp_path / "lm.arpa").write_text(TINY_ARPA.lstrip())
    return {name: tmp_path / f for name, f in
            (("tokens", "tokens.txt"), ("lexicon", "lexicon.txt"), ("lm", "lm.arpa"))}  # fmt: skip


def wer(hyps: Dict[str, str]) -> float:
    return count_errors(REFS, hyps, "word").error_rate


def test_letter_lexicon_spells_words_without_a_boundary_token(files):
    assert letter_lexicon(["IT", "<unk>", "</s>"], ["<blank>", "I", "T", "<space>"]) == {
        "IT": ["I", "T"]
    }
    assert files["lexicon"].read_text().splitlines()[0] == "CAT C A T"
    assert read_lexicon(files["lexicon"], TOKENS)["THE"] == [["T", "H", "E"]]


def test_best_path_is_misspelled_and_the_lm_moves_the_output_to_the_reference(files, log_probs):
    greedy = {utt: best_path(torch.from_numpy(m), TOKENS) for utt, m in log_probs.items()}
    assert greedy["utt1"] == "THE KAT SAT"  # not a word of the lexicon
    search = LexiconBeamSearch(TOKENS, files["lexicon"], files["lm"], beam_size=50)
    no_lm = decode_all(search, log_probs.items(), lm_weight=0.0, bonus=0.0)
    with_lm = decode_all(search, log_probs.items(), lm_weight=2.0, bonus=0.0)
    assert no_lm["utt1"] == "THE CAT SAT"  # the lexicon alone repairs the spelling
    assert no_lm["utt2"] == "THE HAT"  # acoustically best, unlikely under the LM
    assert with_lm == REFS
    assert wer(with_lm) == 0.0 < wer(no_lm) < wer(greedy)
    lexicon_only = LexiconBeamSearch(TOKENS, files["lexicon"], None, beam_size=50)
    assert decode_all(lexicon_only, log_probs.items(), 2.0, 0.0) == no_lm


def test_the_word_boundary_is_the_decoders_silence(files, log_probs):
    search = LexiconBeamSearch(TOKENS, files["lexicon"], files["lm"], beam_size=50)
    emissions = torch.from_numpy(log_probs["utt2"])[None].contiguous()  # (1, T, V)
    hypothesis = search.search(lm_weight=2.0, word_score=0.0)(emissions)[0][0]
    path = [TOKENS[i] for i in hypothesis.tokens]  # Flashlight starts and ends in silence
    assert path == ["<space>", "T", "H", "E", "<space>", "M", "A", "T", "<space>"]
    assert hypothesis.words == ["THE", "MAT"]


def test_decode_rejects_log_probs_of_another_token_list(files, log_probs):
    search = LexiconBeamSearch(TOKENS, files["lexicon"], files["lm"], beam_size=10)
    with pytest.raises(ValueError, match=r"utterance utt2: .*\(14, 13\): expected \(T, 14\)"):
        decode_all(search, [("utt2", log_probs["utt2"][:, :-1])], 1.0, 0.0)


def test_lexicon_letter_outside_the_token_list_names_file_line_and_letter(tmp_path):
    lexicon = tmp_path / "lexicon.txt"
    lexicon.write_text("CAT C A T\nTHE T H E\nZOO Z O O\n")
    with pytest.raises(ValueError, match=r"lexicon\.txt:3: word 'ZOO' is spelled with 'Z'"):
        read_lexicon(lexicon, TOKENS)
    lexicon.write_text("CAT C A T\nTHE T H E <space>\n")
    with pytest.raises(ValueError, match=r"lexicon\.txt:2: .* '<space>', which is not a letter"):
        read_lexicon(lexicon, TOKENS)
    words = tmp_path / "words.txt"
    words.write_text("CAT\nTHE\nZOO\n")
    with pytest.raises(ValueError, match=r"words\.txt:3: word 'ZOO' has the letter 'Z'"):
        read_word_list(words, TOKENS)
    with pytest.raises(ValueError, match=r"word 2 of the word list: word 'ZOO' has the letter 'Z'"):
        letter_lexicon(["CAT", "ZOO"], TOKENS)


def test_search_checks_its_inputs_before_decoding(files, tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nope\.arpa: no such language model file"):
        LexiconBeamSearch(TOKENS, files["lexicon"], tmp_path / "nope.arpa")
    with pytest.raises(FileNotFoundError, match=r"nope\.txt: no such lexicon"):
        LexiconBeamSearch(TOKENS, tmp_path / "nope.txt", files["lm"])
    with pytest.raises(FileNotFoundError, match=r"nope\.txt: no such token list"):
        read_token_list(tmp_path / "nope.txt")
    no_space = tmp_path / "tokens_no_space.txt"
    no_space.write_text("<blank>\n<unk>\nA\n")
    with pytest.raises(
        ValueError, match=r"tokens_no_space\.txt: the token list has no \['<space>'\]"
    ):
        read_token_list(no_space)


def test_word_tokens_need_no_space_and_join_each_token_as_a_word(tmp_path):
    """The phone probe's token list (``--token_type word``): no ``<space>``; runs merge, blanks go,
    and a phone repeated across a blank stays twice."""
    phones = tmp_path / "phones.txt"
    phones.write_text("<blank>\n<unk>\naa\nb\n<sos/eos>\n")
    tokens = read_token_list(phones, token_type="word")
    frames = [2, 2, 0, 3, 3, 0, 3, 2]  # aa aa _ b b _ b aa
    log_probs = torch.nn.functional.one_hot(torch.tensor(frames), len(tokens)).float().log()
    assert best_path(log_probs, tokens, token_type="word") == "aa b b aa"


def test_an_arpa_that_does_not_parse_is_named(files, tmp_path):
    not_arpa = tmp_path / "not.arpa"
    not_arpa.write_text("THE CAT SAT\n")
    with pytest.raises(ValueError, match=r"not\.arpa:1: not an ARPA file"):
        LexiconBeamSearch(TOKENS, files["lexicon"], not_arpa)
    no_counts = tmp_path / "no_counts.arpa"
    no_counts.write_text("\\data\\\n\\1-grams:\n-1.0\tTHE\n")
    with pytest.raises(ValueError, match=r"no_counts\.arpa:2: ARPA header has 0"):
        arpa_counts(no_counts)
    broken_body = tmp_path / "broken_body.arpa"  # a sound header, a body KenLM refuses
    broken_body.write_text(TINY_ARPA.lstrip().replace("-1.2\tON\t-0.30", "ON is here"))
    with pytest.raises(ValueError, match=r"broken_body\.arpa: KenLM cannot load"):
        LexiconBeamSearch(TOKENS, files["lexicon"], broken_body)


def test_arpa_header_counts_and_words(files, tmp_path):
    assert arpa_counts(files["lm"]) == {1: 9, 2: 8}
    assert arpa_words(files["lm"]) == sorted(WORDS)
    gzipped = tmp_path / "lm.arpa.gz"
    gzipped.write_bytes(gzip.compress(files["lm"].read_bytes()))
    lexicon = tmp_path / "from_arpa.txt"
    ctc_decode_bin.main(["lexicon", "--token_list", str(files["tokens"]), "--arpa",
                             str(gzipped), "--output", str(lexicon)])  # fmt: skip
    assert lexicon.read_text() == files["lexicon"].read_text()
    zoo = tmp_path / "zoo.arpa"
    zoo.write_text(TINY_ARPA.lstrip().replace("\tON\t", "\tZOO\t"))
    with pytest.raises(
        SystemExit, match=r"zoo\.arpa: word 6 of the word list: word 'ZOO' has the letter 'Z'"
    ):
        ctc_decode_bin.main(["lexicon", "--token_list", str(files["tokens"]), "--arpa",
                                 str(zoo), "--output", str(lexicon)])  # fmt: skip


def test_tuning_picks_the_pair_with_the_lowest_valid_wer(files, log_probs):
    search = LexiconBeamSearch(TOKENS, files["lexicon"], files["lm"], beam_size=50)
    result = tune(search, log_probs, REFS, lm_weights=[0.0, 2.0], bonuses=[0.0, 1.0])
    assert list(result.wers) == [(0.0, 0.0), (0.0, 1.0), (2.0, 0.0), (2.0, 1.0)]
    assert result.wers[(0.0, 0.0)] > result.wers[(2.0, 0.0)] == 0.0
    assert result.best == min(result.wers, key=result.wers.get)
    assert result.best[0] == 2.0 and result.best_wer == 0.0 and result.best_hyps == REFS
    assert result.best_path_wer > result.wers[(0.0, 0.0)]
    with pytest.raises(ValueError, match="no reference"):
        tune(search, log_probs, {"utt1": REFS["utt1"]}, [1.0], [0.0])


def test_bin_tune_then_decode_with_the_chosen_pair(files, log_probs, tmp_path):
    scp = write_scp(log_probs, tmp_path / "logprobs")
    ref_text = tmp_path / "text_ref"
    ref_text.write_text("".join(f"{utt} {text}\n" for utt, text in REFS.items()))
    common = ["--logprobs_scp", str(scp), "--token_list", str(files["tokens"]),
              "--lexicon", str(files["lexicon"]), "--lm", str(files["lm"]), "--beam_size", "50"]  # fmt: skip
    outdir = tmp_path / "tune"
    ctc_decode_bin.main(["tune", *common, "--ref_text", str(ref_text), "--lm_weights", "0,2",
                             "--word_scores=-1,0", "--outdir", str(outdir),
                             "--decode", str(tmp_path / "test_text"), str(scp)])  # fmt: skip
    rows = [line.split("\t") for line in (outdir / "wer_grid.tsv").read_text().splitlines()]
    assert rows[0] == ["lm_weight", "word_score", "wer"] and len(rows) == 5
    assert [(r[0], r[1]) for r in rows[1:]] == [("0", "-1"), ("0", "0"), ("2", "-1"), ("2", "0")]
    best = json.loads((outdir / "best.json").read_text())
    assert best["lm_weight"] == 2.0 and best["wer"] == 0.0
    assert best["wer"] == min(float(r[2]) for r in rows[1:])
    output = tmp_path / "decode" / "text"
    ctc_decode_bin.main(["decode", *common, "--tuned", str(outdir / "best.json"),
                             "--output", str(output)])  # fmt: skip
    assert output.read_text() == "".join(f"{utt} {text}\n" for utt, text in sorted(REFS.items()))
    assert (tmp_path / "test_text").read_text() == output.read_text()  # tuned and decoded at once
    with pytest.raises(SystemExit, match="drop --lm_weight"):
        ctc_decode_bin.main(["decode", *common, "--tuned", str(outdir / "best.json"),
                                 "--lm_weight", "1", "--output", str(output)])  # fmt: skip


def test_bin_greedy_writes_the_best_path_and_checks_the_width(files, log_probs, tmp_path):
    scp = write_scp(log_probs, tmp_path / "logprobs")
    output = tmp_path / "greedy" / "text"
    ctc_decode_bin.main(["greedy", "--logprobs_scp", str(scp), "--token_list", str(files["tokens"]),
                         "--output", str(output)])  # fmt: skip
    expected = {utt: best_path(torch.from_numpy(m), TOKENS) for utt, m in log_probs.items()}
    assert output.read_text() == "".join(f"{u} {t}\n" for u, t in sorted(expected.items()))
    assert "utt1 THE KAT SAT" in output.read_text()
    narrow = write_scp({"utt1": log_probs["utt1"][:, :-1]}, tmp_path / "narrow")
    with pytest.raises(SystemExit, match="utterance utt1: log-probs of width 13, but .* 14 tokens"):
        ctc_decode_bin.main(["greedy", "--logprobs_scp", str(narrow), "--token_list",
                             str(files["tokens"]), "--output", str(output)])  # fmt: skip


def irstlm_installed() -> bool:
    try:
        irstlm_tool("build-lm.sh")
        irstlm_tool("compile-lm")
    except FileNotFoundError:
        return False
    return True


needs_irstlm = pytest.mark.skipif(
    not irstlm_installed(),
    reason="IRSTLM is not installed (egs2/librispeech_ils/ssl1/local/install_lm_tools.sh)",
)

LM_TEXT = ["THE CAT SAT", "THE CAT SAT ON THE MAT", "THE MAT", "THE CAT SAT ON THE MAT", "THE HAT"]


@needs_irstlm
@pytest.mark.parametrize("order,smoothing", [(3, "witten-bell"), (4, "improved-kneser-ney")])
def test_irstlm_arpa_loads_in_the_decoder_and_fixes_the_ambiguous_word(
    order, smoothing, files, log_probs, tmp_path
):
    text = tmp_path / "lm_text"
    text.write_text("".join(f"utt{i} {line}\n" for i, line in enumerate(LM_TEXT)))
    outdir = tmp_path / "ngram"
    build_ngram_bin.main(["--text", str(text), "--keyed", "true", "--order", str(order),
                          "--smoothing", smoothing, "--outdir", str(outdir)])  # fmt: skip
    assert sorted(arpa_counts(outdir / "lm.arpa")) == list(range(1, order + 1))
    assert (outdir / "words.txt").read_text().split() == sorted(WORDS)
    ctc_decode_bin.main(["lexicon", "--token_list", str(files["tokens"]), "--word_list",
                             str(outdir / "words.txt"), "--output", str(outdir / "lexicon.txt")])  # fmt: skip
    search = LexiconBeamSearch(TOKENS, outdir / "lexicon.txt", outdir / "lm.arpa", beam_size=50)
    no_lm = decode_all(search, log_probs.items(), 0.0, 0.0)
    with_lm = decode_all(search, log_probs.items(), 2.0, 0.0)
    assert with_lm["utt2"] == "THE MAT" and no_lm["utt2"] == "THE HAT"
    assert wer(with_lm) < wer(no_lm)


@needs_irstlm
def test_ngram_perplexity_and_oov_rate(tmp_path):
    train = tmp_path / "train.txt"
    train.write_text("".join(line + "\n" for line in LM_TEXT))
    arpa = tmp_path / "lm.arpa"
    build_arpa([train], arpa, order=3, smoothing="witten-bell")
    in_domain, shuffled, with_oov = (tmp_path / name for name in ("a.txt", "b.txt", "c.txt"))
    in_domain.write_text("THE CAT SAT ON THE MAT\n")
    shuffled.write_text("MAT THE ON SAT CAT THE\n")
    with_oov.write_text("THE DOG SAT\n")  # THE DOG SAT </s>: 1 OOV in 4 scored words
    ppl_in, oov_in = ngram_perplexity(arpa, in_domain)
    ppl_shuffled, _ = ngram_perplexity(arpa, shuffled)
    assert oov_in == 0.0 and 1.0 < ppl_in < ppl_shuffled
    assert ngram_perplexity(arpa, with_oov)[1] == pytest.approx(25.0)
    (tmp_path / "empty.txt").write_text("\n")
    with pytest.raises(ValueError, match=r"empty\.txt: no words to evaluate"):
        ngram_perplexity(arpa, tmp_path / "empty.txt")


def test_build_arpa_rejects_bad_options(tmp_path):
    with pytest.raises(ValueError, match="order=1"):
        build_arpa([tmp_path / "x"], tmp_path / "lm.arpa", order=1)
    with pytest.raises(ValueError, match="smoothing='good-turing'"):
        build_arpa([tmp_path / "x"], tmp_path / "lm.arpa", smoothing="good-turing")
    with pytest.raises(FileNotFoundError, match="no such LM training text"):
        build_arpa([tmp_path / "x"], tmp_path / "lm.arpa")

"""Export to Hugging Face transformers as WavLM: parity, measured, and what is refused.

A tensor matches when ``max|ours - transformers| <= 1e-5 * max|ours|`` over the valid frames
(fp32, eval mode). Our models here are tiny ones of every layout with random weights and their
norms moved off their defaults (``helpers.models.write_model``), the original implementation's
fixtures in ``../shared/data/ils_reference`` (skipped without them), and a fine-tuned CTC model
trained for a few steps in the test, its CTC head then fitted to one utterance, whose ``pipeline``
transcript must equal ESPnet's ``Speech2Text`` output.
"""

import copy
from pathlib import Path
from typing import List, Tuple

import numpy as np
import pytest
import soundfile
import torch
import transformers
from espnet2.bin.asr_inference import Speech2Text
from helpers.corpus import write_corpus
from helpers.models import tiny_config, write_model
from helpers.wavlm_parity import (
    LETTERS,
    REFERENCE,
    TOLERANCE,
    asr_config,
    assert_match,
    frames,
    load,
    load_asr,
    needs_reference,
    our_ctc_logits,
    our_layers,
    padded_batch,
    relative_error,
    ssl_model_dir,
    waveforms,
    write_large_ctc_model,
)
from torch import nn

import espnet_ils  # noqa: F401  (registers our classes)
from espnet_ils.bin import export_transformers
from espnet_ils.data.labels import cluster_token_list
from espnet_ils.export.transformers_wavlm import (
    GATE_CONST,
    HF_WORD_DELIMITER,
    ctc_vocabulary,
    export_to_transformers,
)
from espnet_ils.model.frontend import normalize_waveform
from espnet_ils.model.relative_bias import relative_position_bucket
from espnet_ils.train.tasks import ILSASRTask, ILSSSLTask

# --- the bucket function -----------------------------------------------------------------------


@pytest.mark.parametrize("num_buckets, max_distance", [(320, 800), (320, 1280), (64, 200)])
def test_transformers_bucket_function_equals_ours_for_every_offset(num_buckets, max_distance):
    """transformers adds max_exact before truncating the logarithmic bucket, ours after; both
    apply it to |offset| (the sign picks the half), so every offset gets the same bucket."""
    attention = transformers.models.wavlm.modeling_wavlm.WavLMAttention(
        embed_dim=8, num_heads=2, num_buckets=num_buckets, max_distance=max_distance
    )
    offsets = torch.arange(-20000, 20001)
    theirs = attention._relative_positions_bucket(offsets)
    ours = relative_position_bucket(offsets, num_buckets, max_distance)
    assert torch.equal(theirs, ours)
    assert int(ours.max()) == num_buckets - 1 and int(ours.min()) == 0


# --- WavLMModel against ours --------------------------------------------------------------------


@pytest.mark.parametrize(
    "norm_mode, pre_ln, relative_position_bias",
    [("group_norm", False, True), ("layer_norm", True, True), ("group_norm", False, False)],
    ids=["base_post_ln", "large_pre_ln", "hubert_no_bias"],
)
def test_every_hidden_state_matches_ours(tmp_path, norm_mode, pre_ln, relative_position_bias):
    model_dir = ssl_model_dir(
        tmp_path / "ssl", norm_mode, pre_ln, relative_position_bias=relative_position_bias
    )
    out = export_transformers.main(
        ["--model_dir", str(model_dir), "--output_dir", str(tmp_path / "hf")]
    )
    assert out is None
    wavlm = transformers.AutoModel.from_pretrained(tmp_path / "hf", local_files_only=True).eval()
    assert isinstance(wavlm, transformers.WavLMModel)
    assert wavlm.config.do_stable_layer_norm is pre_ln
    ours = load(model_dir)
    for index, wav in enumerate(waveforms()):
        layers = our_layers(ours, wav)
        values, _ = padded_batch([wav], normalize=pre_ln)
        with torch.no_grad():
            output = wavlm(values, output_hidden_states=True)
        assert len(output.hidden_states) == len(layers)
        errors = {
            f"utt{index}/layer_{k}": relative_error(theirs[0], mine)
            for k, (theirs, mine) in enumerate(zip(output.hidden_states, layers))
        }
        # post-LN: the top block; pre-LN: the top block through the top ILS head's input norm
        with torch.no_grad():
            top = ours.losses[0].input_norms[-1](layers[-1]) if pre_ln else layers[-1]
        errors[f"utt{index}/last"] = relative_error(output.last_hidden_state[0], top)
        assert_match(errors)


@torch.no_grad()
def test_padded_batch_matches_ours_with_the_layer_norm_front(tmp_path):
    model_dir = ssl_model_dir(tmp_path / "ssl", "layer_norm", pre_ln=True)
    export_to_transformers(tmp_path / "hf", model_dir=model_dir)
    wavlm = transformers.WavLMModel.from_pretrained(tmp_path / "hf", local_files_only=True)
    ours, wavs = load(model_dir), waveforms()
    values, mask = padded_batch(wavs, normalize=True)
    output = wavlm.eval()(values, attention_mask=mask, output_hidden_states=True)
    errors = {}
    for b, wav in enumerate(wavs):
        valid = frames(wav.numel())
        for k, layer in enumerate(our_layers(ours, wav)):
            errors[f"utt{b}/layer_{k}"] = relative_error(output.hidden_states[k][b, :valid], layer)
    assert_match(errors)


@torch.no_grad()
def test_padded_batch_changes_transformers_group_norm_features_of_the_shorter_utterance(tmp_path):
    """The truth for BASE's front: transformers normalises block 0 over the padded batch, ours over
    each utterance's frames. The longest utterance matches; the shorter one does not."""
    model_dir = ssl_model_dir(tmp_path / "ssl", "group_norm", pre_ln=False)
    export_to_transformers(tmp_path / "hf", model_dir=model_dir)
    wavlm = transformers.WavLMModel.from_pretrained(tmp_path / "hf", local_files_only=True)
    ours, wavs = load(model_dir), waveforms()
    values, mask = padded_batch(wavs, normalize=False)
    output = wavlm.eval()(values, attention_mask=mask, output_hidden_states=True)
    longest, shorter = (our_layers(ours, wav)[-1] for wav in wavs)
    assert relative_error(output.hidden_states[-1][0], longest) <= TOLERANCE
    short_frames = frames(wavs[1].numel())
    assert relative_error(output.hidden_states[-1][1, :short_frames], shorter) > 100 * TOLERANCE


def test_the_gates_are_written_as_exactly_one(tmp_path):
    model_dir = ssl_model_dir(tmp_path / "ssl", "group_norm", pre_ln=False)
    export_to_transformers(tmp_path / "hf", model_dir=model_dir)
    wavlm = transformers.WavLMModel.from_pretrained(tmp_path / "hf", local_files_only=True)
    for layer in wavlm.encoder.layers:
        attention = layer.attention
        assert not attention.gru_rel_pos_linear.weight.any()
        assert not attention.gru_rel_pos_linear.bias.any()
        assert torch.all(attention.gru_rel_pos_const == GATE_CONST)
        gate = 0.5 * (0.5 * attention.gru_rel_pos_const - 1.0) + 2.0  # sigmoid(0) = 0.5
        assert torch.all(gate == 1.0)
    ours = load(model_dir)
    torch.testing.assert_close(
        wavlm.encoder.layers[0].attention.rel_attn_embed.weight,
        ours.encoder.relative_bias.embedding.weight,
        rtol=0,
        atol=0,
    )
    torch.testing.assert_close(
        wavlm.masked_spec_embed, ours.util_modules["mask"].mask_embedding, rtol=0, atol=0
    )


# --- the original implementation's fixtures -----------------------------------------------------


@needs_reference
@pytest.mark.parametrize("config", ["base-like", "large-like"])
@torch.no_grad()
def test_released_checkpoint_layout_matches_the_original_outputs(tmp_path, config):
    """A UniSpeech ILS checkpoint, exported through convert_unispeech's mapping: every hidden
    state equals the original's layer; LARGE's last_hidden_state its top head's input."""
    export_to_transformers(tmp_path / "hf", checkpoint=REFERENCE / config / "checkpoint.pt")
    wavlm = transformers.AutoModel.from_pretrained(tmp_path / "hf", local_files_only=True).eval()
    inputs = torch.load(REFERENCE / config / "inputs.pt")
    expected = torch.load(REFERENCE / config / "expected.pt")
    pre_ln = config == "large-like"  # also task.normalize
    errors = {}
    for wav, utt in zip(inputs["wavs"], expected["utts"]):
        values, _ = padded_batch([wav], normalize=pre_ln)
        output = wavlm(values, output_hidden_states=True)
        for k, hidden in enumerate(output.hidden_states):
            errors[f"{utt['name']}/layer_{k}"] = relative_error(hidden[0], utt[f"layer_{k}"])
        top = utt["ils_input_layer_4"] if pre_ln else utt["layer_4"]
        errors[f"{utt['name']}/last"] = relative_error(output.last_hidden_state[0], top)
    assert_match(errors)


@needs_reference
@torch.no_grad()
def test_released_fine_tuned_checkpoint_gives_the_original_ctc_logits(tmp_path):
    export_to_transformers(tmp_path / "hf", checkpoint=REFERENCE / "base-like/checkpoint_ft.pt")
    wavlm = transformers.WavLMForCTC.from_pretrained(tmp_path / "hf", local_files_only=True)
    inputs = torch.load(REFERENCE / "base-like/inputs.pt")
    expected = torch.load(REFERENCE / "base-like/expected_ft.pt")
    errors = {
        utt["name"]: relative_error(wavlm.eval()(wav[None]).logits[0], utt["ctc_logits"])
        for wav, utt in zip(inputs["wavs"], expected["utts"])
    }
    assert_match(errors)
    processor = transformers.AutoProcessor.from_pretrained(tmp_path / "hf", local_files_only=True)
    vocab = processor.tokenizer.get_vocab()
    assert vocab["<blank>"] == 0 and vocab[HF_WORD_DELIMITER] == 4 and vocab["<unk>"] == 3


@needs_reference
def test_released_pre_ln_fine_tuned_checkpoint_exports_its_encoder_only(tmp_path):
    """Its CTC head reads the raw top block; WavLMForCTC would normalise it first."""
    checkpoint = REFERENCE / "large-like/checkpoint_ft.pt"
    with pytest.raises(ValueError, match=r"raw top block of a pre-LN model.*--encoder_only"):
        export_to_transformers(tmp_path / "ctc", checkpoint=checkpoint)
    assert not (tmp_path / "ctc").exists()
    export_to_transformers(tmp_path / "hf", checkpoint=checkpoint, encoder_only=True)
    wavlm = transformers.AutoModel.from_pretrained(tmp_path / "hf", local_files_only=True).eval()
    wav = torch.load(REFERENCE / "large-like/inputs.pt")["wavs"][0]
    expected = torch.load(REFERENCE / "large-like/expected_ft.pt")["utts"][0]
    values, _ = padded_batch([wav], normalize=True)
    with torch.no_grad():
        top = wavlm(values, output_hidden_states=True).hidden_states[-1][0]
    assert_match({"encoder_out": relative_error(top, expected["encoder_out"])})


# --- fine-tuned CTC models ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def ssl_weights(tmp_path_factory) -> Path:
    torch.manual_seed(0)  # a module fixture runs before the per-test seed
    root = tmp_path_factory.mktemp("ssl") / "ssl"
    return write_model(ILSSSLTask, tiny_config("group_norm", False), cluster_token_list(5), root)


@torch.no_grad()
def test_fine_tuned_model_gives_our_ctc_logits_and_keeps_its_masks(tmp_path, ssl_weights):
    weights = write_model(ILSASRTask, asr_config(ssl_weights), LETTERS, tmp_path / "asr")
    export_to_transformers(tmp_path / "hf", model_dir=weights.parent)
    wavlm = transformers.AutoModelForCTC.from_pretrained(tmp_path / "hf", local_files_only=True)
    assert isinstance(wavlm, transformers.WavLMForCTC)
    assert (wavlm.config.mask_time_prob, wavlm.config.mask_time_length) == (0.3, 2)
    model = load_asr(weights)
    for wav in waveforms():
        logits = wavlm.eval()(wav[None]).logits[0]
        assert_match({"ctc_logits": relative_error(logits, our_ctc_logits(model, wav))})


@pytest.fixture(scope="module")
def large_ctc_weights(tmp_path_factory) -> Path:
    torch.manual_seed(0)  # a module fixture runs before the per-test seed
    return write_large_ctc_model(tmp_path_factory.mktemp("large"))


@torch.no_grad()
def test_pre_ln_fine_tuned_model_gives_our_ctc_logits_in_a_padded_batch(
    tmp_path, large_ctc_weights
):
    """The ASR linear encoder's ``after_norm`` becomes WavLMForCTC's ``encoder.layer_norm``. It is
    ESPnet's LayerNorm (eps 1e-12) and WavLM has one ``layer_norm_eps`` for every LayerNorm (our
    blocks' 1e-5), so ours is compared with its eps set to WavLM's: with 1e-12 a frame whose top
    block has variance ``v`` over channels is divided by ``sqrt(v + 1e-12)`` instead of
    ``sqrt(v + 1e-5)``, about ``5e-6 / v`` relative."""
    export_to_transformers(tmp_path / "hf", model_dir=large_ctc_weights.parent)
    wavlm = transformers.AutoModelForCTC.from_pretrained(tmp_path / "hf", local_files_only=True)
    assert isinstance(wavlm, transformers.WavLMForCTC) and wavlm.config.do_stable_layer_norm
    model, wavs = load_asr(large_ctc_weights), waveforms()
    assert wavlm.wavlm.encoder.layer_norm.eps == wavlm.config.layer_norm_eps
    assert model.encoder.after_norm.eps == 1e-12 != wavlm.config.layer_norm_eps
    model.encoder.after_norm.eps = wavlm.config.layer_norm_eps
    values, mask = padded_batch(wavs, normalize=True)
    logits = wavlm.eval()(values, attention_mask=mask).logits
    errors = {
        f"utt{b}": relative_error(logits[b, : frames(wav.numel())], our_ctc_logits(model, wav))
        for b, wav in enumerate(wavs)
    }
    assert_match(errors)


@pytest.mark.parametrize("rms", [0.1, 0.01], ids=["-20dBFS", "-40dBFS"])
@torch.no_grad()
def test_pipeline_normalisation_eps_leaves_large_logits_within_tolerance(
    tmp_path, large_ctc_weights, rms
):
    """The pipeline's feature extractor (``do_normalize``) divides by ``sqrt(var + 1e-7)``, ours
    by ``sqrt(var + 1e-5)``; both subtract the mean and use the biased variance, so the pipeline
    feeds our normalised waveform times ``s = sqrt((var + 1e-5) / (var + 1e-7))``, a scale per
    utterance (``s - 1``: 5e-4 at -20 dBFS, 5% at -40 dBFS). The LARGE front's first conv has no bias and its
    LayerNorm over channels divides the scale out, up to its own eps against the conv output's
    variance, so the logits from raw audio stay within the export's tolerance of those from our
    normalisation, at speech levels. (Near silence, ``var`` below the eps, ``s`` grows to
    ``sqrt(10)`` and the LayerNorm's eps is no longer small: not covered.)"""
    export_to_transformers(tmp_path / "hf", model_dir=large_ctc_weights.parent)
    asr = transformers.pipeline("automatic-speech-recognition", model=str(tmp_path / "hf"))
    assert asr.feature_extractor.do_normalize
    errors = {}
    for index, wav in enumerate(waveforms()):
        wav = wav * (rms / wav.pow(2).mean().sqrt())
        ours = normalize_waveform(wav[None], torch.tensor([wav.numel()]))
        theirs = asr.feature_extractor(wav.numpy(), sampling_rate=16000, return_tensors="pt")
        var = wav.var(unbiased=False)
        scale = torch.sqrt((var + 1e-5) / (var + 1e-7))
        torch.testing.assert_close(theirs["input_values"], ours * scale)
        assert scale - 1 > 10 * TOLERANCE  # the inputs differ well beyond the tolerance
        raw_audio = asr.model(**theirs).logits  # as the pipeline runs its model
        errors[f"utt{index}"] = relative_error(raw_audio, asr.model(ours).logits)
    print(f"rms {rms}: pipeline logits from raw audio vs our normalisation, relative: {errors}")
    assert_match(errors)


def test_fine_tuned_model_exports_its_ssl_encoder_alone(tmp_path, ssl_weights):
    weights = write_model(ILSASRTask, asr_config(ssl_weights), LETTERS, tmp_path / "asr")
    export_to_transformers(tmp_path / "hf", model_dir=weights.parent, encoder_only=True)
    wavlm = transformers.AutoModel.from_pretrained(tmp_path / "hf", local_files_only=True)
    assert type(wavlm) is transformers.WavLMModel
    wav = waveforms()[0]
    with torch.no_grad():
        hidden = wavlm.eval()(wav[None], output_hidden_states=True).hidden_states
    layers = our_layers(load_asr(weights), wav)
    assert_match(
        {
            f"layer_{k}": relative_error(h[0], ours)
            for k, (h, ours) in enumerate(zip(hidden, layers))
        }
    )


TRAIN_STEPS = 10
HEAD_ITERATIONS = 100
#: The utterance the CTC head is fitted to: its text has a word break and a letter repeated
#: (which CTC can only emit with a blank between), as the pipeline test asserts.
FITTED = 0


def read_corpus(root: Path) -> List[Tuple[str, np.ndarray, str]]:
    """``(name, waveform, text)`` of the tone corpus, the text with a word break after 3 letters."""
    corpus = []
    for line in (root / "text").read_text().splitlines():
        name, letters = line.split()
        wav, _ = soundfile.read(root / "wav" / f"{name}.flac", dtype="float32")
        corpus.append((name, wav, f"{letters[:3]} {letters[3:]}"))
    return corpus


def letter_ids(text: str) -> torch.Tensor:
    """``(L,)`` token ids of a text in :data:`LETTERS`, a space as ``<space>``."""
    return torch.tensor([LETTERS.index(c if c != " " else "<space>") for c in text])


def ctc_nll(log_probs: torch.Tensor, text: str) -> float:
    """``-log P(text | speech)`` under CTC of ``(T, V)`` log-probabilities, blank 0."""
    ids = letter_ids(text)
    return float(
        nn.functional.ctc_loss(
            log_probs[:, None], ids[None], [log_probs.size(0)], [ids.numel()], reduction="sum"
        )
    )


def fit_ctc_head(model: nn.Module, wav: np.ndarray, text: str) -> None:
    """Fit the CTC head alone to one utterance (the encoder's output computed once, ESPnet's CTC
    loss, L-BFGS: a small smooth problem it solves in a few dozen iterations): after a few
    training steps the tiny model emits blank in every frame, and a transcript test needs
    letters, word breaks and repeated letters."""
    model.eval()
    with torch.no_grad():
        encoded, lengths = model.encode(torch.from_numpy(wav)[None], torch.tensor([wav.size]))
    ids = letter_ids(text)
    optimizer = torch.optim.LBFGS(
        model.ctc.parameters(), max_iter=HEAD_ITERATIONS, line_search_fn="strong_wolfe"
    )

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = model.ctc(encoded, lengths, ids[None], torch.tensor([ids.numel()]))
        loss.backward()
        return loss

    optimizer.step(closure)


@pytest.fixture(scope="module")
def fine_tuned(tmp_path_factory, ssl_weights) -> Tuple[Path, list]:
    """A CTC model fine-tuned from the tiny SSL model for a few steps on the tone corpus (in this
    process: ESPnet's ASR model and CTC loss, Adam), its CTC head then fitted to utterance
    :data:`FITTED` (:func:`fit_ctc_head`), saved as ESPnet training saves it."""
    torch.manual_seed(0)  # a module fixture runs before the per-test seed
    root = tmp_path_factory.mktemp("corpus")
    write_corpus(root)
    corpus = read_corpus(root)
    weights = write_model(ILSASRTask, asr_config(ssl_weights), LETTERS, root / "asr")
    model, _ = ILSASRTask.build_model_from_file(weights.parent / "config.yaml", weights)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()
    for step in range(TRAIN_STEPS):
        batch = [corpus[(2 * step + i) % len(corpus)] for i in range(2)]
        speech = nn.utils.rnn.pad_sequence([torch.from_numpy(w) for _, w, _ in batch], True)
        ids = [letter_ids(t) for *_, t in batch]
        text = nn.utils.rnn.pad_sequence(ids, batch_first=True, padding_value=-1)
        lengths = (torch.tensor([w.size for _, w, _ in batch]), torch.tensor([len(i) for i in ids]))
        loss, _, _ = model(speech, lengths[0], text, lengths[1])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    _, wav, text = corpus[FITTED]
    fit_ctc_head(model, wav, text)
    torch.save(model.state_dict(), weights)
    return weights, corpus


def espnet_best_path(speech2text: Speech2Text, log_probs: torch.Tensor) -> str:
    """ESPnet's greedy CTC transcript: best path (argmax per frame, repeats merged, blanks
    dropped), through Speech2Text's own token converter and char tokenizer."""
    ids = torch.unique_consecutive(log_probs.argmax(-1))
    ids = [int(i) for i in ids if i != speech2text.asr_model.blank_id]
    return speech2text.tokenizer.tokens2text(speech2text.converter.ids2tokens(ids))


def test_pipeline_transcribes_as_espnet_speech2text_with_our_logits(tmp_path, fine_tuned):
    """The ``pipeline`` transcript of every utterance is ESPnet's best path of our logits (which
    it matches within 1e-5) less leading and trailing word breaks (see
    :func:`test_tokenizer_decodes_as_espnet_char_tokenizer`), and on the fitted one it is the
    reference text and ``Speech2Text``'s.

    ``Speech2Text`` with ``ctc_weight=1.0, beam_size=1`` is no best-path decoder: ESPnet's
    ``BatchBeamSearch`` with the ``CTCPrefixScorer`` alone extends its one hypothesis ``g`` by
    the token ``c`` of the highest prefix probability ``P(g c ... | x)`` (summed over every
    alignment), ``<sos/eos>`` scoring ``P(g | x)``; on a model that spreads its probability over
    alignments the two can differ. Where ``P(y | x) > 1/2`` they cannot: every prefix of ``y``
    has more than 1/2, any other extension and an early end less, so the search spells ``y`` and
    ends. The fitted utterance's ``-log P(y | x) < log 2`` is asserted first, so its equality
    with ``Speech2Text`` is a check of the export, not luck; the other utterances (the head is
    not fitted to them) are compared with ESPnet's best path, which is the pipeline's decoder.
    """
    weights, corpus = fine_tuned
    export_transformers.main(
        ["--model_dir", str(weights.parent), "--output_dir", str(tmp_path / "hf")]
    )
    speech2text = Speech2Text(
        weights.parent / "config.yaml", weights, ctc_weight=1.0, beam_size=1, lm_weight=0.0
    )
    asr = transformers.pipeline("automatic-speech-recognition", model=str(tmp_path / "hf"))
    assert isinstance(asr.model, transformers.WavLMForCTC)
    for index, (name, wav, text) in enumerate(corpus):
        ours = our_ctc_logits(speech2text.asr_model, torch.from_numpy(wav))
        with torch.no_grad():
            logits = asr.model(torch.from_numpy(wav)[None]).logits[0]
        assert_match({name: relative_error(logits, ours)})
        transcript = asr({"raw": wav, "sampling_rate": 16000})["text"]
        assert transcript == espnet_best_path(speech2text, ours).strip(" "), name
        if index == FITTED:
            # what makes it a test: letters, a word break, a letter repeated (blank between)
            assert " " in text and any(a == b != " " for a, b in zip(text, text[1:])), text
            assert ctc_nll(ours.log_softmax(-1), text) < np.log(2), name
            assert transcript == text
            assert speech2text(wav)[0][0] == text


@pytest.mark.parametrize(
    "path, espnet_text",
    [
        (
            ["A", "A", "<blank>", "B", "<space>", "<space>", "C", "<unk>", "<blank>", "C"],
            "AB C<unk>C",
        ),
        (
            ["<space>", "A", "<blank>", "A", "<space>", "<blank>", "<space>", "B", "<space>"],
            " AA  B ",
        ),
    ],
    ids=["inner", "leading_trailing_breaks"],
)
def test_tokenizer_decodes_as_espnet_char_tokenizer(tmp_path, fine_tuned, path, espnet_text):
    """Blank dropped, repeats merged, <space> a word break, <unk> kept, on a path with each; a
    word break at either end, which ESPnet keeps, is stripped: Wav2Vec2CTCTokenizer's
    ``convert_tokens_to_string`` ends with ``.strip()`` (WER scoring splits on white space, so
    the words are the same)."""
    weights, _ = fine_tuned
    export_to_transformers(tmp_path / "hf", model_dir=weights.parent)
    processor = transformers.AutoProcessor.from_pretrained(tmp_path / "hf", local_files_only=True)
    speech2text = Speech2Text(weights.parent / "config.yaml", weights, ctc_weight=1.0)
    log_probs = torch.nn.functional.one_hot(torch.tensor([LETTERS.index(t) for t in path]))
    expected = espnet_best_path(speech2text, log_probs.float())
    assert expected == espnet_text
    assert processor.decode(log_probs.argmax(-1).tolist()) == expected.strip(" ")


def test_tokenizer_vocabulary_keeps_espnet_ids_and_names_the_word_separator():
    assert ctc_vocabulary(LETTERS) == {
        ("|" if token == "<space>" else token): index for index, token in enumerate(LETTERS)
    }
    with pytest.raises(ValueError, match="<blank> must be id 0"):
        ctc_vocabulary(LETTERS[1:])
    with pytest.raises(ValueError, match="ambiguous"):
        ctc_vocabulary(LETTERS + ["▁"])
    with pytest.raises(ValueError, match="no word separator"):
        ctc_vocabulary([token for token in LETTERS if token != "<space>"])


# --- refusals -----------------------------------------------------------------------------------

TINY_ENCODERS = {
    "e_branchformer": {
        "output_size": 32,
        "attention_heads": 4,
        "cgmlp_linear_units": 64,
        "cgmlp_conv_kernel": 3,
        "num_blocks": 3,
        "input_layer": None,
        "merge_conv_kernel": 3,
        "use_ffn": False,
    },
    "conformer": {
        "output_size": 32,
        "attention_heads": 4,
        "linear_units": 64,
        "num_blocks": 3,
        "input_layer": None,
        "cnn_module_kernel": 3,
    },
}


def _other_encoder(name):
    def make(config):
        config.update(encoder=name, encoder_conf=TINY_ENCODERS[name])

    return make


def _log_mel_front(config):
    config.update({k: v for k, v in tiny_config("fbank", False).items() if "front" in k})
    config["normalize"] = "utterance_mvn"


def _utterance_mvn(config):
    config["normalize"] = "utterance_mvn"


@pytest.mark.parametrize(
    "modify, match",
    [
        (_other_encoder("e_branchformer"), r"encoder EBranchformerEncoder: WavLM cannot"),
        (_other_encoder("conformer"), r"encoder ConformerEncoder: WavLM cannot"),
        (_log_mel_front, r"front end DefaultFrontend: WavLM cannot.*log-mel"),
        (_utterance_mvn, r"feature normalisation UtteranceMVN"),
    ],
    ids=["e_branchformer", "conformer", "log_mel_front", "feature_normalisation"],
)
def test_what_wavlm_cannot_express_is_refused_by_name(tmp_path, modify, match):
    config = copy.deepcopy(tiny_config("group_norm", False))
    modify(config)
    write_model(ILSSSLTask, config, cluster_token_list(5), tmp_path / "ssl")
    with pytest.raises(SystemExit, match=match):
        export_transformers.main(
            ["--model_dir", str(tmp_path / "ssl"), "--output_dir", str(tmp_path / "hf")]
        )
    assert not (tmp_path / "hf").exists()


@pytest.mark.parametrize(
    "changes, match",
    [
        (
            {"frontend_conf": {"layer": 1}},
            r"frontend_conf.layer 1: the CTC head reads block 2 of 3",
        ),
        ({"frontend_conf": {"multilayer_feature": True}}, r"multilayer_feature"),
        (
            {
                "decoder": "transformer",
                "decoder_conf": {"attention_heads": 4, "linear_units": 64, "num_blocks": 1},
                "model_conf": {"ctc_weight": 0.3},
            },
            r"decoder TransformerDecoder, ctc_weight 0.3",
        ),
        ({"token_type": "word"}, r"token_type 'word': Wav2Vec2CTCTokenizer joins characters"),
        (
            {"encoder_conf": {"normalize_before": True}},
            r"the ASR linear encoder's normalize_before on a post-LN model",
        ),
    ],
    ids=["lower_block", "weighted_sum", "attention_decoder", "word_tokens", "post_ln_after_norm"],
)
def test_ctc_model_wavlm_for_ctc_cannot_express_is_refused(tmp_path, ssl_weights, changes, match):
    """The CTC path of these models is not WavLMForCTC's; their SSL encoder still exports."""
    weights = write_model(ILSASRTask, asr_config(ssl_weights, **changes), LETTERS, tmp_path / "asr")
    with pytest.raises(ValueError, match=match + r".*--encoder_only"):
        export_to_transformers(tmp_path / "hf", model_dir=weights.parent)
    assert not (tmp_path / "hf").exists()
    export_to_transformers(tmp_path / "hf", model_dir=weights.parent, encoder_only=True)
    assert (tmp_path / "hf" / "model.safetensors").is_file()


def test_unknown_tensor_of_ours_is_named(tmp_path, monkeypatch):
    from espnet_ils.export import transformers_wavlm

    model_dir = ssl_model_dir(tmp_path / "ssl", "group_norm", pre_ln=False)
    families = tuple(f for f in transformers_wavlm.KEY_FAMILIES if "fc2" not in f[0])
    monkeypatch.setattr(transformers_wavlm, "KEY_FAMILIES", families)
    with pytest.raises(ValueError, match=r"ours encoder\.encoders\.0\.fc2\.bias: no WavLM tensor"):
        export_to_transformers(tmp_path / "hf", model_dir=model_dir)


def test_wavlm_tensor_that_nothing_of_ours_fills_is_named(tmp_path, monkeypatch):
    """As a tensor a later transformers might add: here the gate constants, left unwritten."""
    from espnet_ils.export import transformers_wavlm

    model_dir = ssl_model_dir(tmp_path / "ssl", "group_norm", pre_ln=False)
    fixed = transformers_wavlm.fixed_weights

    def without_gate_constants(source, expected):
        return {k: v for k, v in fixed(source, expected).items() if v != "gate_const"}

    monkeypatch.setattr(transformers_wavlm, "fixed_weights", without_gate_constants)
    with pytest.raises(ValueError) as error:
        export_to_transformers(tmp_path / "hf", model_dir=model_dir)
    problems = str(error.value).splitlines()[1:]
    assert problems == [
        f"  WavLM encoder.layers.{i}.attention.gru_rel_pos_const: nothing of ours fills it"
        for i in range(3)
    ]
    assert not (tmp_path / "hf").exists()


def test_existing_output_dir_is_never_overwritten(tmp_path):
    (tmp_path / "hf").mkdir()
    (tmp_path / "hf" / "keep.txt").write_text("mine")
    with pytest.raises(ValueError, match="exists and is not empty"):
        export_to_transformers(tmp_path / "hf", model_dir=tmp_path)

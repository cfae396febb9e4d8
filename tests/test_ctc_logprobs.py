"""CTC log-probs of an ESPnet ASR model kept on disk (espnet_ils.decoding.ctc_logprobs).

The tiny CTC model and synthetic log-probs of helpers/decoding.py; the decoding modules that read
the kept log-probs must not pull in ESPnet's tasks (10 s to import).
"""

import subprocess
import sys
from typing import Dict

import numpy as np
import pytest
import soundfile as sf
from helpers.decoding import ACOUSTICS, TOKENS, ctc_log_probs, tiny_asr_model, write_scp

from espnet_ils.bin import dump_ctc_logprobs as dump_bin
from espnet_ils.decoding.ctc_logprobs import compute_ctc_logprobs, read_logprobs


@pytest.fixture
def log_probs() -> Dict[str, np.ndarray]:
    return {utt: ctc_log_probs(frames).numpy() for utt, frames in ACOUSTICS.items()}


def test_logprobs_round_trip_through_kaldiio(log_probs, tmp_path):
    loaded = read_logprobs([write_scp(log_probs, tmp_path / "logprobs")])
    assert list(loaded) == sorted(log_probs)
    for utt, matrix in log_probs.items():
        assert loaded[utt].dtype == np.float32
        np.testing.assert_array_equal(loaded[utt], matrix)


def test_dumped_logprobs_equal_the_models_ctc_outputs_and_are_not_recomputed(tmp_path):
    model, config, weights = tiny_asr_model(tmp_path)
    rng = np.random.default_rng(0)
    waves = {
        f"utt{i}": (0.1 * rng.standard_normal(1600 * (i + 2))).astype(np.float32) for i in range(3)
    }
    lines = []
    for utt, wave in waves.items():
        sf.write(tmp_path / f"{utt}.wav", wave, 16000, subtype="FLOAT")
        lines.append(f"{utt} {tmp_path / f'{utt}.wav'}\n")
    (tmp_path / "wav.scp").write_text("".join(lines))
    outdir = tmp_path / "logprobs"
    for job in (1, 2):
        dump_bin.main(["--asr_train_config", str(config), "--asr_model_file", str(weights),
                       "--wav_scp", str(tmp_path / "wav.scp"), "--outdir", str(outdir),
                       "--nj", "2", "--job", str(job)])  # fmt: skip
    loaded = read_logprobs(sorted(outdir.glob("feats.*.scp")))
    assert list(loaded) == sorted(waves)
    for utt, wave in waves.items():
        expected = compute_ctc_logprobs(model, wave)
        assert loaded[utt].shape == expected.shape and expected.shape[1] == len(TOKENS)
        assert expected.shape[0] > 1  # frames at the model's rate, more than one
        np.testing.assert_allclose(loaded[utt], expected, atol=1e-6)
        np.testing.assert_allclose(np.logaddexp.reduce(loaded[utt], axis=1), 0.0, atol=1e-4)
    ark = outdir / "feats.1.ark"
    before = ark.stat().st_mtime_ns
    dump_bin.main(["--asr_train_config", str(config), "--asr_model_file", str(weights),
                   "--wav_scp", str(tmp_path / "wav.scp"), "--outdir", str(outdir), "--nj", "2", "--job", "1"])  # fmt: skip
    assert ark.stat().st_mtime_ns == before  # same identity: skipped


@pytest.mark.parametrize("module", ["decoding.lexicon", "decoding.ctc_logprobs", "bin.ctc_decode"])
def test_decoding_modules_import_no_espnet_task(module):
    """Inference on the ASR model loads ESPnet's task when it runs, not when a module is imported."""
    code = f"import sys, espnet_ils.{module}; print(*sorted(sys.modules))"
    loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()
    assert not [m for m in loaded if m.startswith(("espnet2.tasks", "espnet_ils.train.tasks"))]

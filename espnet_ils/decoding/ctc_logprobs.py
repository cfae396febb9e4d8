"""CTC log-probs of a fine-tuned ESPnet ASR model, computed once per utterance and kept on disk.

Decoding (best path, lexicon beam search with an n-gram, Transformer-LM searches) and the tuning of
its scores run over these cached ``(T, V)`` float32 log-softmax matrices (kaldiio ark/scp, one
shard per job), so that trying another LM weight never runs the acoustic model again.
"""

import logging
from pathlib import Path
from typing import Dict, Sequence, Union

import numpy as np
import torch
from tqdm import tqdm

from espnet_ils.data.audio import load_waveform
from espnet_ils.data.kaldi_files import read_key_file
from espnet_ils.data.markers import file_checksum, step_identity, up_to_date, write_marker
from espnet_ils.data.shards import feature_shard_writer, marker_path, read_features, shard

logger = logging.getLogger(__name__)


def compute_ctc_logprobs(
    model: torch.nn.Module, wave: np.ndarray, device: str = "cpu"
) -> np.ndarray:
    """CTC log-softmax of an ESPnet ASR model for one utterance.

    Args:
        model: ``ESPnetASRModel`` in eval mode, with a CTC head.
        wave: ``(N,)`` float32 samples at 16 kHz.
        device: Where ``model`` is.

    Returns:
        ``(T, V)`` float32 log-probs, T encoder frames (50 Hz for the HuBERT-style frontends).
    """
    speech = torch.from_numpy(wave).to(device)[None]  # (1, N)
    lengths = torch.tensor([wave.shape[0]], device=device)  # (1,)
    with torch.no_grad():
        encoder_out, encoder_lengths = model.encode(speech, lengths)
        if isinstance(encoder_out, tuple):  # intermediate CTC outputs come along
            encoder_out = encoder_out[0]
        log_probs = model.ctc.log_softmax(encoder_out)  # (1, T, V)
    return log_probs[0, : int(encoder_lengths[0])].float().cpu().numpy()


def dump_ctc_logprobs(
    asr_train_config: Union[str, Path],
    asr_model_file: Union[str, Path],
    wav_scp: Union[str, Path],
    outdir: Union[str, Path],
    nj: int = 1,
    job: int = 1,
    device: str = "cpu",
) -> Path:
    """Write the CTC log-probs of one shard of ``wav_scp`` as ``feats.<job>.{ark,scp}``.

    ``outdir/.done.<job>`` holds ``nj`` and the checksums of the wav.scp, config and model; a
    shard finished with the same identity is skipped before the model is loaded.

    Args:
        asr_train_config: ``config.yaml`` of the fine-tuned ESPnet ASR model.
        asr_model_file: Its weights (``valid.cer_ctc.best.pth``).
        wav_scp: Kaldi ``wav.scp`` (``utt_id path``; 16 kHz mono files soundfile reads).
        outdir: Output directory (created).
        nj: Number of shards.
        job: This shard, 1-based.
        device: Where the model runs (``cpu``, ``cuda``, ``cuda:0``).

    Returns:
        The scp of the shard: ``utt`` -> ``(T, V)`` float32 log-probs, ``V`` the model's tokens.
    """
    outdir = Path(outdir)
    identity = step_identity(
        {"nj": nj},
        {
            "wav_scp": file_checksum(wav_scp),
            "config": file_checksum(asr_train_config),
            "model": file_checksum(asr_model_file),
        },
    )
    scp = outdir / f"feats.{job}.scp"
    if up_to_date(marker_path(outdir, job), identity, f"CTC log-prob shard {job}/{nj} in {outdir}"):
        return scp
    entries = shard(list(read_key_file(wav_scp).items()), job, nj)
    from espnet_ils.train.tasks import (
        ILSASRTask,  # ESPnet's tasks take ~10 s to import: not for a skip
    )

    model, _ = ILSASRTask.build_model_from_file(asr_train_config, asr_model_file, device)
    model.eval()
    if getattr(model, "ctc", None) is None:
        raise ValueError(
            f"{asr_train_config}: the ASR model has no CTC head to take log-probs from"
        )
    with feature_shard_writer(outdir, job) as writer:
        for utt, path in tqdm(entries, desc=f"CTC log-probs {job}/{nj}"):
            writer[utt] = compute_ctc_logprobs(model, load_waveform(path, utt), device)
    write_marker(marker_path(outdir, job), identity)
    logger.info("wrote the CTC log-probs of %d utterances to %s", len(entries), scp)
    return scp


def read_logprobs(scps: Sequence[Union[str, Path]]) -> Dict[str, np.ndarray]:
    """Load every ``(T, V)`` matrix of kaldiio scp files into memory, keyed by utterance.

    Raises:
        FileNotFoundError: An scp is missing.
        ValueError: An utterance in two scps, or a matrix that is not 2-D.
    """
    matrices: Dict[str, np.ndarray] = {}
    for scp in scps:
        if not Path(scp).is_file():
            raise FileNotFoundError(f"{scp}: no such log-prob scp (dump them first)")
        for utt, matrix in read_features(Path(scp)):
            if utt in matrices:
                raise ValueError(f"{scp}: utterance {utt} appears in two log-prob scps")
            if matrix.ndim != 2:
                raise ValueError(
                    f"{scp}: utterance {utt} has a {matrix.ndim}-D matrix; expected (T, V)"
                )
            matrices[utt] = matrix.astype(np.float32, copy=False)
    return dict(sorted(matrices.items()))

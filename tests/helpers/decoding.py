"""The decoding tests' synthetic CTC outputs: a letter token list, lexicon words, a bigram ARPA,
references, and per utterance the frames whose best path is misspelled (KAT) or acoustically
ambiguous (HAT/MAT, HAT/SAT), as log-probs (``ctc_log_probs``); and a tiny CTC model over the same
token list (``tiny_asr_model``); ``write_scp`` keeps log-probs as the recipe does."""

from pathlib import Path
from typing import List, Mapping, Tuple

import numpy as np
import torch
from torch import nn

from espnet_ils.data.shards import feature_shard_writer

TOKENS = [
    "<blank>",
    "<unk>",
    "A",
    "C",
    "E",
    "H",
    "K",
    "M",
    "N",
    "O",
    "S",
    "T",
    "<space>",
    "<sos/eos>",
]
WORDS = ["CAT", "HAT", "MAT", "ON", "SAT", "THE"]

# A bigram in which THE is followed by CAT or MAT, CAT by SAT; HAT is rare (log10 probabilities).
TINY_ARPA = """
\\data\\
ngram 1=9
ngram 2=8

\\1-grams:
-1.0\t<unk>
-99\t<s>\t-0.30
-1.0\t</s>
-0.8\tTHE\t-0.30
-1.0\tCAT\t-0.30
-1.0\tSAT\t-0.30
-1.2\tMAT\t-0.30
-2.5\tHAT\t-0.30
-1.2\tON\t-0.30

\\2-grams:
-0.2\t<s> THE
-0.4\tTHE CAT
-0.5\tTHE MAT
-0.1\tCAT SAT
-0.3\tSAT </s>
-0.2\tSAT ON
-0.1\tON THE
-0.2\tMAT </s>

\\end\\
"""

REFS = {"utt1": "THE CAT SAT", "utt2": "THE MAT", "utt3": "THE CAT SAT ON THE MAT"}

# Per utterance, the emitting frames (token -> probability); each is followed by a blank frame.
ACOUSTICS = {
    "utt1": ["T", "H", "E", "<space>", {"K": 0.6, "C": 0.4}, "A", "T", "<space>", "S", "A", "T"],
    "utt2": ["T", "H", "E", "<space>", {"H": 0.55, "M": 0.45}, "A", "T"],
    "utt3": ["T", "H", "E", "<space>", "C", "A", "T", "<space>", {"H": 0.55, "S": 0.45}, "A", "T",
             "<space>", "O", "N", "<space>", "T", "H", "E", "<space>", {"H": 0.55, "M": 0.45}, "A", "T"],
}  # fmt: skip


def ctc_log_probs(frames: List) -> torch.Tensor:
    """(2 * len(frames), V) float32 log-probs: each frame's tokens, then a blank frame."""
    rows = []
    for frame in frames:
        for probs in (frame if isinstance(frame, dict) else {frame: 1.0}, {"<blank>": 1.0}):
            row = torch.full((len(TOKENS),), 1e-3)
            for token, prob in probs.items():
                row[TOKENS.index(token)] = prob
            rows.append(row / row.sum())
    return torch.stack(rows).log()  # (T, V)


def tiny_asr_model(tmp_path: Path) -> Tuple[nn.Module, Path, Path]:
    """A CTC-only ESPnet ASR model (fbank frontend, linear encoder) saved as config + weights."""
    import yaml

    from espnet_ils.train.tasks import (
        ILSASRTask,  # ESPnet's tasks: only for the tests that use the model
    )

    token_list = tmp_path / "tokens.txt"
    token_list.write_text("".join(t + "\n" for t in TOKENS))
    args = ILSASRTask.get_parser().parse_args(
        ["--token_list", str(token_list), "--output_dir", str(tmp_path), "--token_type", "char",
         "--frontend", "default", "--frontend_conf", "n_fft=128", "--frontend_conf", "hop_length=64",
         "--frontend_conf", "n_mels=8", "--normalize", "none", "--encoder", "linear",
         "--encoder_conf", "output_size=16", "--decoder", "none", "--model_conf", "ctc_weight=1.0"]
    )  # fmt: skip
    model = ILSASRTask.build_model(args).eval()
    args.token_list = str(token_list)
    config, weights = tmp_path / "config.yaml", tmp_path / "model.pth"
    config.write_text(yaml.safe_dump(vars(args)))
    torch.save(model.state_dict(), weights)
    return model, config, weights


def write_scp(log_probs: Mapping[str, np.ndarray], outdir: Path) -> Path:
    """Keep ``{utt: (T, V) log-probs}`` as dump_ctc_logprobs does (one shard); its scp."""
    with feature_shard_writer(outdir, 1) as writer:
        for utt, matrix in log_probs.items():
            writer[utt] = matrix
    return outdir / "feats.1.scp"

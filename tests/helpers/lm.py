"""The grammar LM of the LM tests and the decoding benchmark's test: texts of a small grammar over
the decoding tests' letters (``make_lm_root``), and the letter Transformer LM trained on them
through ESPnet's LM task (``train_lm``); conftest.py's session fixtures ``lm_root`` and ``lm_exp``
build each once. Also the keyed text files (``utt_id text`` lines) the LM tests read and write."""

from pathlib import Path
from typing import Dict, List

import numpy as np
import yaml

from espnet_ils.bin import prepare_lm_text as prepare_bin
from espnet_ils.decoding.lm_text import SHAPE_FILE
from helpers.corpus import run_module
from helpers.decoding import TOKENS

NOUNS = ["CAT", "MAT", "HAT"]
LM_CONFIG = {
    "lm": "transformer",
    "lm_conf": {
        "pos_enc": "sinusoidal",  # one block cannot tell the previous letter from a bag of letters
        "embed_unit": 16,
        "att_unit": 32,
        "head": 2,
        "unit": 64,
        "layer": 1,
        "dropout_rate": 0.0,
    },
    "batch_type": "unsorted",
    "batch_size": 16,
    "max_epoch": 4,
    "num_iters_per_epoch": 15,
    "num_workers": 0,
    "optim": "adam",
    "optim_conf": {"lr": 0.01},
    "best_model_criterion": [["valid", "loss", "min"]],
    "keep_nbest_models": 1,
    "seed": 0,
}


def grammar_sentence(rng: np.random.Generator) -> str:
    """THE <noun> (SAT ON THE <noun>)*: every letter but the nouns' first ones is predictable."""
    words = ["THE", str(rng.choice(NOUNS))]
    while rng.random() < 0.5:
        words += ["SAT", "ON", "THE", str(rng.choice(NOUNS))]
    return " ".join(words)


def write_keyed(path: Path, prefix: str, sentences: List[str]) -> Path:
    """``sentences`` as ``<prefix><index> <sentence>`` lines (index from 000) in ``path``."""
    path.write_text("".join(f"{prefix}{i:03d} {s}\n" for i, s in enumerate(sentences)))
    return path


def read_keyed(path: Path) -> Dict[str, str]:
    """``{key: text}`` of a keyed text file; a key alone on its line has the text ""."""
    return dict((line.split(" ", 1) + [""])[:2] for line in path.read_text().splitlines())


def make_lm_root(root: Path) -> Path:
    """``tokens.txt``, grammar texts (train 300, dev 30, test 20 sentences) and the LM text in
    ``root``: conftest's session fixture ``lm_root``."""
    (root / "tokens.txt").write_text("".join(t + "\n" for t in TOKENS))
    rng = np.random.default_rng(0)
    write_keyed(root / "train_text", "tr", [grammar_sentence(rng) for _ in range(300)])
    write_keyed(root / "dev_text", "dv", [grammar_sentence(rng) for _ in range(30)])
    write_keyed(root / "test_text", "te", [grammar_sentence(rng) for _ in range(20)])
    prepare_bin.main(["--token_list", str(root / "tokens.txt"),
                      "--train_text", str(root / "train_text"), "--dev_text", str(root / "dev_text"),
                      "--exclude_text", str(root / "test_text"), "--outdir", str(root / "lm_text")])  # fmt: skip
    return root


def train_lm(lm_root: Path) -> Path:
    """The LM trained through ESPnet's LM task as ESPnet's asr.sh runs it (60 steps, about a
    minute with the start of its process): conftest's session fixture ``lm_exp``."""
    (lm_root / "lm.yaml").write_text(yaml.safe_dump(LM_CONFIG))
    exp = lm_root / "exp" / "lm"
    text = lm_root / "lm_text"
    run_module(
        "espnet_ils.bin.lm_train",
        ["--config", lm_root / "lm.yaml", "--ngpu", 0, "--output_dir", exp,
         "--token_type", "char", "--token_list", lm_root / "tokens.txt",
         "--train_data_path_and_name_and_type", f"{text / 'train' / 'text'},text,text",
         "--valid_data_path_and_name_and_type", f"{text / 'dev' / 'text'},text,text",
         "--train_shape_file", text / "train" / SHAPE_FILE,
         "--valid_shape_file", text / "dev" / SHAPE_FILE],
        lm_root,
    )  # fmt: skip
    return exp

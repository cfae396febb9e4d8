"""DDP through ssl_train: 2 CPU processes (gloo) under torchrun, with layerdrop on.

The processes run tests/ddp_ssl_train.py, which is ``espnet_ils.bin.ssl_train`` plus a record per
rank (final parameters, world size, files written), because ESPnet saves from rank 0 only.
"""

import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from helpers.corpus import SSL_CONFIG, data_args, write_corpus

pytestmark = pytest.mark.slow  # trains or runs the recipe: the full suite only

WORLD_SIZE = 2
MAX_EPOCH = 2
DDP_CONFIG = {
    **SSL_CONFIG,
    "max_epoch": MAX_EPOCH,
    "num_iters_per_epoch": 3,  # of SSL_CONFIG's batches of 4 utterances, 2 per rank
    "unused_parameters": True,  # a dropped block has no gradient
    "use_matplotlib": False,
    "use_tensorboard": False,
    "encoder_conf": {**SSL_CONFIG["encoder_conf"], "layer_drop_rate": 0.3},
}
RECORD_NAMES = {f"rank{rank}.pth" for rank in range(WORLD_SIZE)}


@pytest.fixture(scope="module")
def ddp_exp(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("ddp")
    write_corpus(root)
    (root / "ssl.yaml").write_text(yaml.safe_dump(DDP_CONFIG))
    exp = root / "exp"
    # --standalone: a rendezvous on a free port of localhost, so parallel runs never collide
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        WORLD_SIZE,
        Path(__file__).parent / "ddp_ssl_train.py",
        "--config",
        root / "ssl.yaml",
        "--output_dir",
        exp,
        "--ngpu",
        0,
        "--multiprocessing_distributed",
        "false",
        "--dist_backend",
        "gloo",
        "--dist_init_method",
        "env://",
        "--token_list",
        root / "km_tokens.txt",
        "--token_type",
        "word",
        *data_args(root, "labels"),
    ]
    result = subprocess.run(
        list(map(str, command)), cwd=root, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    offline_noise = [w for w in ("nltk_data", "urlopen") if w in result.stderr + result.stdout]
    assert not offline_noise, f"ssl_train tried the network: {offline_noise}"
    (exp / "torchrun.log").write_text(result.stderr)
    return exp


def load_records(exp: Path) -> list:
    missing = [name for name in sorted(RECORD_NAMES) if not (exp / name).exists()]
    assert not missing, f"no per-rank record {missing}: did Trainer.run's signature change?"
    return [torch.load(exp / f"rank{rank}.pth") for rank in range(WORLD_SIZE)]


def test_two_ranks_train_every_epoch_with_layerdrop_on(ddp_exp):
    config = yaml.safe_load((ddp_exp / "config.yaml").read_text())
    assert config["encoder_conf"]["layer_drop_rate"] > 0 and config["unused_parameters"]
    ranks = [(record["rank"], record["world_size"]) for record in load_records(ddp_exp)]
    assert ranks == [(rank, WORLD_SIZE) for rank in range(WORLD_SIZE)]
    log = (ddp_exp / "torchrun.log").read_text()
    assert f":0/{WORLD_SIZE}]" in log, "rank 0's log lines do not name world size 2"
    assert f"The training was finished at {MAX_EPOCH} epochs" in log


def test_ranks_end_with_bit_identical_parameters(ddp_exp):
    rank0, rank1 = (record["model"] for record in load_records(ddp_exp))
    assert rank0.keys() == rank1.keys()
    differ = [key for key in rank0 if not torch.equal(rank0[key], rank1[key])]
    assert not differ, f"parameters differ between the ranks: {differ}"
    # they are what rank 0 saved last, and training moved them
    first, last = (torch.load(ddp_exp / f"{epoch}epoch.pth") for epoch in (1, MAX_EPOCH))
    assert all(torch.equal(last[key], rank0[key]) for key in rank0)
    assert not all(torch.equal(first[key], last[key]) for key in rank0)


def test_rank0_alone_writes_one_checkpoint_set(ddp_exp):
    rank0, rank1 = (record["written"] for record in load_records(ddp_exp))
    assert rank1 == [], f"rank 1 wrote {rank1}"
    epochs = [f"{epoch}epoch.pth" for epoch in range(1, MAX_EPOCH + 1)]
    # one per epoch, each to a temporary name renamed into place (espnet_ils.train.checkpoints)
    assert sorted(rank0) == sorted(
        f"{name}.tmp" for name in ["checkpoint.pth"] * MAX_EPOCH + epochs
    )
    on_disk = {p.name for p in ddp_exp.glob("*.pth") if not p.is_symlink()} - RECORD_NAMES
    assert on_disk == {"checkpoint.pth", *epochs}
    # ESPnet's own file (its reporter holds numpy scalars): loaded as ESPnet's resume does
    reporter = torch.load(ddp_exp / "checkpoint.pth", weights_only=False)["reporter"]
    assert reporter["epoch"] == MAX_EPOCH

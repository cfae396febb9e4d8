"""The GPU configs' batch and length in ESPnet 202511's units: ``batch_bins`` (``batch_type:
numel``) counts the padded samples of one step over all GPUs together, an update is ``accum_grad``
steps, and the lr scheduler steps once per update. So training must end at the schedule's last
step, and an update must hold the paper's seconds of audio."""

from pathlib import Path

import pytest
import yaml

from espnet_ils.data.audio import SAMPLE_RATE

CONF = Path(__file__).resolve().parents[1] / "egs2/librispeech_ils/ssl1/conf/tuning"

# Seconds of audio per update. Paper section 4.2: BASE on 32 GPUs with 87.5 s each, LARGE on 128
# GPUs with 53.75 s (per GPU, as HuBERT's 56.25 s); section 4.3: fine-tuning on 8 GPUs with 200 s
# each.
BASE_SECONDS_PER_UPDATE = 32 * 87.5  # 2800 s
LARGE_SECONDS_PER_UPDATE = 128 * 53.75  # 6880 s
FINETUNE_SECONDS_PER_UPDATE = 8 * 200  # 1600 s

# Paper section 4.2: BASE iteration 1 for 250k steps, iteration 2 for 400k, LARGE for 600k.
PRETRAIN_UPDATES = {
    "train_ssl_hubert_base_it1": 250_000,
    "train_ssl_ils_base_it2": 400_000,
    "train_ssl_ils_large": 600_000,
}

SECONDS_PER_UPDATE = {
    "train_ssl_hubert_base_it1": BASE_SECONDS_PER_UPDATE,
    "train_ssl_ils_base_it2": BASE_SECONDS_PER_UPDATE,
    "train_ssl_ils_large": LARGE_SECONDS_PER_UPDATE,
    "train_asr_ctc_base_1h": FINETUNE_SECONDS_PER_UPDATE,
    "train_asr_ctc_base_10h": FINETUNE_SECONDS_PER_UPDATE,
    "train_asr_ctc_base_100h": FINETUNE_SECONDS_PER_UPDATE,
    "train_asr_ctc_large_960h": FINETUNE_SECONDS_PER_UPDATE,
}


def load(name: str) -> dict:
    return yaml.safe_load((CONF / f"{name}.yaml").read_text())


def last_scheduler_step(config: dict) -> int:
    """The update at which the config's lr schedule ends (ESPnet's scheduler argument names)."""
    scheduler, conf = config["scheduler"], config["scheduler_conf"]
    if scheduler == "piecewiselinearwarmuplr":
        return conf["warmup_steps_list"][-1]
    if scheduler == "tristagelr":
        return conf["max_steps"]
    raise AssertionError(f"scheduler {scheduler!r}: no rule for its last step")


@pytest.mark.parametrize("name", SECONDS_PER_UPDATE)
def test_training_ends_at_the_schedules_last_update(name):
    config = load(name)
    updates = config["max_epoch"] * config["num_iters_per_epoch"] / config["accum_grad"]
    assert updates == last_scheduler_step(config)


@pytest.mark.parametrize("name", SECONDS_PER_UPDATE)
def test_an_epoch_is_whole_updates(name):
    config = load(name)
    assert config["num_iters_per_epoch"] % config["accum_grad"] == 0


@pytest.mark.parametrize("name", SECONDS_PER_UPDATE)
def test_an_update_holds_the_papers_seconds_of_audio(name):
    config = load(name)
    assert config["batch_type"] == "numel"  # batch_bins counts samples only with numel
    seconds = config["batch_bins"] * config["accum_grad"] / SAMPLE_RATE
    assert seconds == SECONDS_PER_UPDATE[name]


@pytest.mark.parametrize("name", PRETRAIN_UPDATES)
def test_pretraining_schedules_end_at_the_papers_step_count(name):
    assert last_scheduler_step(load(name)) == PRETRAIN_UPDATES[name]

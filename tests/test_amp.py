"""bf16 autocast (what ESPnet's Trainer does on GPUs with ``use_amp: true``), run on the CPU: the
whole ILS model trains in mixed precision with the loss's sensitive parts in float32."""

import copy
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from helpers.corpus import NUM_CLASSES, SSL_CONFIG

from espnet_ils.train.tasks import ILSSSLTask

CONF = Path(__file__).resolve().parents[1] / "egs2/librispeech_ils/ssl1/conf/tuning"
# bf16 keeps 8 bits of mantissa (0.4% per rounding); measured here: 0.09% on the loss, gradient
# cosine 0.9999 on the bias table.
LOSS_RTOL_BF16 = 0.01


def small_ils_model(tmp_path: Path) -> torch.nn.Module:
    """Conv front, relative bias, 4 blocks, ILS heads on blocks 2 and 4 (test_training's config)."""
    config = tmp_path / "ssl.yaml"
    config.write_text(yaml.safe_dump(SSL_CONFIG))
    args = ILSSSLTask.get_parser().parse_args(["--config", str(config)])
    args.token_list = [str(i) for i in range(NUM_CLASSES)] + ["<unk>"]
    torch.manual_seed(0)
    model = ILSSSLTask.build_model(args).train()
    with torch.no_grad():  # a bias that matters, so that its gradient is not negligible
        model.encoder.relative_bias.embedding.weight.normal_(0.0, 1.0)
    return model


def step(model: torch.nn.Module, autocast: bool):
    """Forward + backward on a fixed batch and fixed masks; returns the loss and stats."""
    generator = torch.Generator().manual_seed(1)
    speech = torch.randn(2, 24000, generator=generator)
    frames = (24000 - 400) // 320 + 1
    text = torch.randint(0, NUM_CLASSES, (2, frames), generator=generator)
    torch.manual_seed(2)
    np.random.seed(2)  # ESPnet's Masking draws the spans with numpy
    model.zero_grad(set_to_none=True)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        loss, stats, _ = model(speech, torch.full((2,), 24000), text, torch.full((2,), frames))
    loss.backward()
    return loss, stats


def test_bf16_autocast_trains_with_finite_gradients_close_to_fp32(tmp_path):
    model = small_ils_model(tmp_path)
    reference = copy.deepcopy(model)
    loss_fp32, _ = step(reference, autocast=False)
    loss, stats = step(model, autocast=True)

    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    assert loss.item() == pytest.approx(loss_fp32.item(), rel=LOSS_RTOL_BF16)
    assert all(torch.isfinite(torch.as_tensor(v)).all() for v in stats.values())
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None, f"{name} got no gradient"
        assert torch.isfinite(parameter.grad).all(), f"{name} has a non-finite gradient"
    table_grad = model.encoder.relative_bias.embedding.weight.grad
    assert table_grad.abs().sum() > 0
    reference_grad = reference.encoder.relative_bias.embedding.weight.grad
    cosine = torch.nn.functional.cosine_similarity(
        table_grad.flatten(), reference_grad.flatten(), 0
    )
    assert cosine > 0.99, f"bias-table gradient under bf16 points elsewhere (cosine {cosine:.3f})"


def test_under_autocast_the_bias_follows_the_logits_and_the_heads_stay_float32(tmp_path):
    model = small_ils_model(tmp_path)
    seen = {}
    attention = model.encoder.encoders[0].self_attn
    attention.register_forward_pre_hook(lambda m, args: seen.update(mask=args[1]))
    head = model.losses[0].heads[0]
    head.register_forward_hook(lambda m, args, out: seen.update(logits=out))
    step(model, autocast=True)
    assert seen["mask"].dtype == torch.bfloat16  # the memory-efficient kernel needs q's dtype
    assert seen["logits"].dtype == torch.float32  # cosine / tau in float32


@pytest.mark.parametrize(
    "name",
    [
        "train_ssl_hubert_base_it1",
        "train_ssl_ils_base_it2",
        "train_ssl_ils_large",
        "train_asr_ctc_base_1h",
        "train_asr_ctc_base_10h",
        "train_asr_ctc_base_100h",
    ],
)
def test_gpu_configs_train_in_mixed_precision(name):
    assert yaml.safe_load((CONF / f"{name}.yaml").read_text())["use_amp"] is True

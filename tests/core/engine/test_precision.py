"""The precision policy (loss scaling, skipped steps, accumulation, scaler settings) and the loss
computed under autocast: known mixed-precision failure modes."""

import math
import warnings
from pathlib import Path

import pytest
import torch
from torch import nn

from conftest import fp16_policy, linear_problem, tiny_cfg
from ocrkit.core.config import OcrkitConfig, load_config
from ocrkit.core.data.dataset import TrainDataset, batch_to_device
from ocrkit.core.data.formats import load_dataset
from ocrkit.core.engine.precision import PrecisionPolicy
from ocrkit.core.errors import ConfigError
from ocrkit.core.model import DBLoss, build_model

CPU = torch.device("cpu")


def test_planted_inf_gradient_halves_the_scale_and_leaves_parameters_unchanged():
    model, x, y = linear_problem()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    policy = fp16_policy()
    before = [p.detach().clone() for p in model.parameters()]
    scale = policy.scale
    policy.backward(nn.functional.mse_loss(model(x), y))
    model.weight.grad[0, 0] = math.inf  # after backward, before the scaler: what an overflow looks like
    outcome = policy.step(optimizer, model.parameters(), clip=1.0)
    assert not outcome.stepped and outcome.scale == scale / 2 and policy.scale == scale / 2
    assert not math.isfinite(outcome.grad_norm)
    for p, b in zip(model.parameters(), before, strict=True):
        assert torch.equal(p, b)
    # the next clean step goes through at the lower scale
    policy.backward(nn.functional.mse_loss(model(x), y))
    assert policy.step(optimizer, model.parameters(), clip=1.0).stepped
    assert not torch.equal(model.weight, before[0])


@pytest.mark.parametrize("precision", ["32-true", "bf16-mixed"])
def test_without_a_scaler_a_non_finite_gradient_skips_the_step(precision):
    model, x, y = linear_problem()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    policy = PrecisionPolicy(precision, CPU)
    assert policy.scaler is None and policy.scale == 1.0
    before = model.weight.detach().clone()
    policy.backward(nn.functional.mse_loss(model(x), y))
    model.bias.grad[0] = math.nan
    assert not policy.step(optimizer, model.parameters(), clip=None).stepped
    assert torch.equal(model.weight, before)


def test_gradient_accumulation_equals_one_big_batch_with_one_unscale_per_step():
    model_a, x, y = linear_problem()
    model_b, _, _ = linear_problem()
    policy_a, policy_b = fp16_policy(), fp16_policy()
    opt_a = torch.optim.SGD(model_a.parameters(), lr=0.1)
    opt_b = torch.optim.SGD(model_b.parameters(), lr=0.1)
    policy_a.backward(nn.functional.mse_loss(model_a(x), y))
    for half in (slice(0, 4), slice(4, 8)):
        policy_b.backward(nn.functional.mse_loss(model_b(x[half]), y[half]), micro_batches=2)
    unscale_calls = []
    real_unscale = policy_b.scaler.unscale_
    policy_b.scaler.unscale_ = lambda opt: (unscale_calls.append(1), real_unscale(opt))[1]
    out_a = policy_a.step(opt_a, model_a.parameters(), clip=None)
    out_b = policy_b.step(opt_b, model_b.parameters(), clip=None)
    assert unscale_calls == [1]
    assert out_a.grad_norm == pytest.approx(out_b.grad_norm, rel=1e-5)
    for pa, pb in zip(model_a.parameters(), model_b.parameters(), strict=True):
        torch.testing.assert_close(pa, pb, rtol=1e-5, atol=1e-6)


def test_a_scaler_is_only_for_fp16():
    with pytest.raises(ConfigError, match="only for 16-mixed"):
        load_config(overrides=["train.precision=bf16", "train.scaler.enabled=true"])
    for enabled in ("true", "false"):  # auto chooses the scaler with the mode
        with pytest.raises(ConfigError, match="auto decides itself"):
            load_config(overrides=["train.precision=auto", f"train.scaler.enabled={enabled}"])
    assert load_config(overrides=["train.precision=16"]).train.precision == "16-mixed"
    assert PrecisionPolicy("bf16-mixed", CPU).scaler is None


@pytest.mark.parametrize("enabled, scaled", [(None, True), (True, True), (False, False)])
def test_scaler_enabled_is_honoured_for_fp16(enabled, scaled):
    """scaler.enabled = false trains 16-mixed without a GradScaler (fp16 gradient underflow is then
    the user's risk); unset or true keeps loss scaling."""
    overrides = [] if enabled is None else [f"train.scaler.enabled={str(enabled).lower()}"]
    cfg = load_config(overrides=["train.precision=16-mixed", *overrides])
    policy = PrecisionPolicy(cfg.train.precision, CPU, cfg.train.scaler)
    assert policy.dtype == torch.float16 and (policy.scaler is not None) == scaled
    model, x, y = linear_problem()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    before = model.weight.detach().clone()
    policy.backward(nn.functional.mse_loss(model(x), y))
    expected_grad = 2 * (model(x) - y).T @ x / y.numel()  # d mse / d weight, unscaled
    scale = 2.0**16 if scaled else 1.0
    torch.testing.assert_close(model.weight.grad, scale * expected_grad, rtol=1e-4, atol=0)
    assert policy.state_dict() == ({} if not scaled else policy.scaler.state_dict())
    model.weight.grad[0, 0] = math.inf  # with or without a scaler, an overflow skips the step
    outcome = policy.step(optimizer, model.parameters(), clip=None)
    assert not outcome.stepped and torch.equal(model.weight, before)
    assert outcome.scale == (2.0**15 if scaled else 1.0)


def test_fp16_on_cpu_builds_a_scaler_without_a_hard_coded_claim():
    # Whether fp16 is slow here is the probe's to measure (tests/core/engine/test_probe.py), not a message's to assume.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        policy = PrecisionPolicy("16-mixed", CPU)
    assert policy.scaler is not None


# ---------------------------------------------------------------- numerics


def one_batch(synth: Path, cfg: OcrkitConfig) -> dict[str, torch.Tensor]:
    dataset = TrainDataset(load_dataset(str(synth / "train")).samples, cfg.data, cfg.maps, seed=0)
    batch = torch.utils.data.default_collate([dataset[i] for i in range(4)])
    return batch_to_device(batch, torch.device("cpu"), cfg.data)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_one_batch_loss_under_autocast_matches_fp32(synth, dtype):
    cfg = tiny_cfg()
    batch = one_batch(synth, cfg)
    loss_fn = DBLoss(cfg.loss, k=cfg.model.k)
    torch.manual_seed(0)
    model = build_model(cfg.model).train()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        reference = loss_fn(model(batch["image"]), batch)
    model.load_state_dict(state)  # BN running stats moved: start again from the same state
    with torch.no_grad(), torch.autocast("cpu", dtype=dtype):
        outputs = model(batch["image"])
    assert outputs["prob_logits"].dtype == dtype  # autocast really ran the convolutions low
    with torch.no_grad():
        low = loss_fn(outputs, batch)
    # within a few units of the format's rounding: fp16 keeps 11 bits (4.9e-4), bf16 8 (3.9e-3);
    # bf16's threshold loss measured 3.8e-3 off on the fused pipeline's batch, 1e-3 on the chain's
    rel = 1e-3 if dtype == torch.float16 else 1e-2
    for term in ("loss", "loss_prob", "loss_thresh", "loss_binary"):
        assert low[term].dtype == torch.float32
        assert float(low[term]) == pytest.approx(float(reference[term]), rel=rel), term


def test_large_map_dice_stays_finite_where_a_fp16_sum_overflows():
    cfg = OcrkitConfig()
    ones = torch.ones(2, 512, 512)
    assert torch.isinf(ones.half().sum())  # why the reductions must be fp32
    logits = torch.full((2, 512, 512), 8.0, dtype=torch.float16)
    outputs = {"prob_logits": logits, "thresh_logits": logits.clone(), "binary": torch.sigmoid(logits.float())}
    batch = {"shrink": ones, "shrink_mask": ones, "thresh": ones * 0.5, "thresh_mask": ones}
    terms = DBLoss(cfg.loss, k=cfg.model.k)(outputs, batch)
    for name, value in terms.items():
        assert torch.isfinite(value), name
    assert float(terms["loss_binary"]) < 0.01  # the prediction matches: Dice ~ 0, not inf/NaN

"""Precision policy, the training-health monitor and EMA: known mixed-precision failure modes."""

import json
import math
import warnings
from pathlib import Path

import pytest
import torch
from torch import nn

from ocrkit.core.config import EmaConfig, HealthConfig, OcrkitConfig, load_config
from ocrkit.core.data.dataset import TrainDataset, batch_to_device
from ocrkit.core.data.formats import load_dataset
from ocrkit.core.data.train_data import TrainData
from ocrkit.core.engine.ema import ModelEma
from ocrkit.core.engine.health import HealthMonitor, HealthStop, StepHealth, UpdateProbe, probe_overflow_path
from ocrkit.core.engine.precision import PrecisionPolicy
from ocrkit.core.engine.trainer import Trainer
from ocrkit.core.errors import ConfigError, OcrkitError
from ocrkit.core.model import DBLoss, build_model

CPU = torch.device("cpu")


def fp16_policy(**scaler) -> PrecisionPolicy:
    cfg = load_config(overrides=["train.precision=16-mixed"] + [f"train.scaler.{k}={v}" for k, v in scaler.items()])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return PrecisionPolicy("16-mixed", CPU, cfg.train.scaler)


def linear_problem(seed: int = 0):
    torch.manual_seed(seed)
    model = nn.Linear(4, 2)
    x, y = torch.randn(8, 4), torch.randn(8, 2)
    return model, x, y


# ---------------------------------------------------------------- policy


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
    # Whether fp16 is slow here is the probe's to measure (tests/test_probe.py), not a message's to assume.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        policy = PrecisionPolicy("16-mixed", CPU)
    assert policy.scaler is not None


# ---------------------------------------------------------------- numerics


def tiny_cfg(*overrides: str) -> OcrkitConfig:
    base = [
        "model.base_width=8",
        "model.inner_channels=32",
        "model.head_channels=8",
        "data.train_size=[96,96]",
        "data.eval_size=[128,160]",
        "data.num_workers=0",
        "train.batch_size=4",
        "train.overlays=0",
        "train.eval_batch_size=4",
        "log.tensorboard=false",
    ]
    return load_config(overrides=base + list(overrides))


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
    for term in ("loss", "loss_prob", "loss_thresh", "loss_binary"):
        assert low[term].dtype == torch.float32
        assert float(low[term]) == pytest.approx(float(reference[term]), rel=1e-3), term


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


# ---------------------------------------------------------------- monitor


def record_steps(monitor: HealthMonitor, n: int, **fields) -> list[tuple[str, str]]:
    found = []
    for i in range(n):
        values = {"lr": 1e-3, "scale": 1024.0, "skipped": False, "grad_norm": 1.0, "update_ratio": 1e-3} | fields
        found = monitor.record(StepHealth(step=i + 1, **values))
    return found


def test_monitor_flags_a_skip_rate_above_the_limit_only_after_warmup():
    cfg = HealthConfig(warmup_steps=10, window=10, max_skip_rate=0.05)
    monitor = HealthMonitor(cfg, uses_scaler=True)
    assert record_steps(monitor, 9, skipped=True, grad_norm=math.inf) == []  # warm-up: calibration skips
    monitor = HealthMonitor(cfg, uses_scaler=True)
    record_steps(monitor, 12)
    found = monitor.record(StepHealth(13, 1e-3, 512.0, True, math.inf, 0.0))
    assert [c for c, _ in found] == ["skip_rate"] and "10.0% of the last 10 steps" in found[0][1]
    summary = monitor.summary()
    assert summary.skipped_steps == 1 and summary.nonfinite_grad_steps == 1 and summary.min_scale == 512.0


def test_monitor_flags_a_scale_below_one():
    monitor = HealthMonitor(HealthConfig(), uses_scaler=True)
    assert record_steps(monitor, 3, scale=2.0) == []
    found = monitor.record(StepHealth(4, 1e-3, 0.5, True, math.inf, 0.0))
    assert "scale" in [c for c, _ in found]


def real_loop_steps(lr: float, n: int, plant_inf: bool, cfg: HealthConfig) -> list[tuple[str, str]]:
    """A real optimizer loop through the policy, the update probe and the monitor."""
    model, x, y = linear_problem()
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    policy = PrecisionPolicy("32-true", CPU)
    probe, monitor = UpdateProbe(model, enabled=True), HealthMonitor(cfg, uses_scaler=False)
    found = []
    for step in range(1, n + 1):
        policy.backward(nn.functional.mse_loss(model(x), y))
        if plant_inf:
            model.weight.grad.fill_(math.inf)
        probe.before_step()
        outcome = policy.step(optimizer, model.parameters(), clip=None)
        ratio = probe.after_step()
        found = monitor.record(StepHealth(step, lr, 1.0, not outcome.stepped, outcome.grad_norm, ratio))
        if found:
            return found
    return found


def test_monitor_detects_frozen_parameters_when_the_lr_is_zero():
    cfg = HealthConfig(frozen_steps=5)
    assert real_loop_steps(lr=0.01, n=20, plant_inf=False, cfg=cfg) == []
    found = real_loop_steps(lr=0.0, n=20, plant_inf=False, cfg=cfg)
    assert found and found[0][0] == "frozen" and "learning rate is 0" in found[0][1]


def test_monitor_detects_frozen_parameters_when_every_step_is_skipped():
    found = real_loop_steps(lr=0.01, n=20, plant_inf=True, cfg=HealthConfig(frozen_steps=5, warmup_steps=100))
    assert found and found[0][0] == "frozen" and "every step was skipped" in found[0][1]


class MaskingPolicy(PrecisionPolicy):
    """A faulty loop: gradients sanitized before the scaler can see the overflow."""

    def step(self, optimizer, params, clip):
        params = list(params)
        for p in params:
            if p.grad is not None:
                torch.nan_to_num_(p.grad, nan=0.0, posinf=1.0, neginf=-1.0)
        return super().step(optimizer, params, clip)


@pytest.mark.parametrize("precision", ["16-mixed", "32-true"])
def test_overflow_probe_passes_a_clean_loop_and_restores_everything(precision):
    model, _, _ = linear_problem()
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1)
    policy = fp16_policy() if precision == "16-mixed" else PrecisionPolicy(precision, CPU)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    assert probe_overflow_path(policy, model, optimizer, clip=1.0) is None
    assert policy.scale == (2.0**16 if precision == "16-mixed" else 1.0)
    assert not optimizer.state and all(p.grad is None for p in model.parameters())
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k])


def test_overflow_probe_catches_a_loop_that_masks_overflow():
    model, _, _ = linear_problem()
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        masking = MaskingPolicy("16-mixed", CPU)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    problem = probe_overflow_path(masking, model, optimizer, clip=None)
    assert problem and "overflow is masked" in problem
    for k, v in model.state_dict().items():  # the probe's garbage step was undone
        assert torch.equal(v, before[k])


# ---------------------------------------------------------------- trainer


def make_trainer(synth: Path, tmp_path: Path, *overrides: str) -> Trainer:
    cfg = tiny_cfg(*overrides)
    samples = load_dataset(str(synth / "train")).samples
    val = load_dataset(str(synth / "val")).samples
    (tmp_path / "run").mkdir(parents=True)
    return Trainer(cfg, tmp_path / "run", TrainData(cfg, samples, val), CPU)


def test_trainer_stops_when_a_gradient_hook_masks_overflow(synth, tmp_path):
    trainer = make_trainer(synth, tmp_path)
    for p in trainer.model.parameters():
        p.register_hook(lambda g: torch.nan_to_num(g, nan=0.0, posinf=1.0, neginf=-1.0))
    with pytest.raises(HealthStop, match="overflow is masked"):
        trainer.fit()
    assert trainer.state.step == 0
    assert list((tmp_path / "run" / "diagnostics").glob("health_step0000000.json"))


def test_trainer_stops_when_every_step_is_skipped_and_names_the_cause(synth, tmp_path):
    trainer = make_trainer(synth, tmp_path, "train.epochs=20", "health.frozen_steps=4", "health.overflow_probe=false")
    trainer.model.prob_head.layers[0].weight.register_hook(lambda g: g * math.inf)  # every gradient overflows
    with pytest.raises(HealthStop, match="every step was skipped") as info:
        trainer.fit()
    assert trainer.state.step == 4 and trainer.state.skipped_steps == 4
    assert trainer.scheduler.last_epoch == 0  # the LR schedule did not advance on skipped steps
    diagnostic = json.loads(next((tmp_path / "run" / "diagnostics").glob("health_*.json")).read_text())
    assert len(diagnostic["recent_steps"]) == 4 and all(s["skipped"] for s in diagnostic["recent_steps"])
    assert "details:" in str(info.value)


def test_warn_action_keeps_training_and_reports_the_problem(synth, tmp_path):
    trainer = make_trainer(
        synth, tmp_path, "train.epochs=3", "health.frozen_steps=2", "health.action=warn", "health.overflow_probe=false"
    )
    trainer.model.prob_head.layers[0].weight.register_hook(lambda g: g * math.inf)
    result = trainer.fit()
    assert result.state.step == 6 and result.health.skipped_steps == 6
    assert result.health.problems and "every step was skipped" in result.health.problems[0]
    saved = json.loads((tmp_path / "run" / "health.json").read_text())
    assert saved["skip_rate"] == 1.0 and saved["problems"]


def test_non_finite_loss_stops_with_a_saved_diagnostic(synth, tmp_path):
    trainer = make_trainer(synth, tmp_path)
    trainer.model.prob_head.register_forward_hook(lambda module, args, out: out * math.nan)
    with pytest.raises(HealthStop, match="non-finite loss at step 1") as info:
        trainer.fit()
    message = str(info.value)
    assert "synth_" in message and "diagnostic saved" in message
    diag_dir = tmp_path / "run" / "diagnostics"
    body = json.loads((diag_dir / "nonfinite_loss_step0000001.json").read_text())
    assert body["samples"] and math.isnan(body["loss_terms"]["loss"])
    saved = torch.load(diag_dir / "nonfinite_loss_step0000001.pt", weights_only=False)
    assert saved["batch"]["image"].shape[0] == 4 and "model" in saved
    assert isinstance(info.value, OcrkitError)  # the CLI turns it into a one-line error


def test_fp16_training_of_a_tiny_model_on_cpu_makes_progress(synth, tmp_path):
    trainer = make_trainer(
        synth,
        tmp_path,
        "train.precision=16-mixed",
        "train.epochs=6",
        "train.optimizer=adamw",
        "train.lr=0.003",
        "data.augment.enabled=false",
        "model.base_width=4",
        "model.inner_channels=16",
        "model.head_channels=4",
        "data.train_size=[64,64]",
        "train.val_every=100",
    )
    result = trainer.fit()
    health = result.health
    assert result.state.step == 12 and health.steps == 12
    assert health.skipped_steps <= 2 and health.min_scale >= 2.0**14
    assert health.median_update_ratio > 0 and not health.problems
    first, last = sum(result.losses[:3]) / 3, sum(result.losses[-3:]) / 3
    assert last < first * 0.9, result.losses


def test_gradient_accumulation_counts_optimizer_steps_and_resumes_exactly(synth, tmp_path):
    straight = make_trainer(synth, tmp_path / "a", "train.batch_size=2", "train.accumulate=2", "train.epochs=2")
    result = straight.fit()
    assert straight.steps_per_epoch == 2 and result.state.step == 4 and straight.scheduler.last_epoch == 4
    first = make_trainer(
        synth, tmp_path / "b", "train.batch_size=2", "train.accumulate=2", "train.epochs=2", "train.stop_at_step=3"
    )
    first.fit()
    assert first.state.step == 3 and first.state.batch_in_epoch == 2  # paused between optimizer steps
    from ocrkit.core.engine.checkpoint import load_checkpoint

    ckpt = tmp_path / "b" / "run" / "last.pt"
    resumed_cfg = tiny_cfg("train.batch_size=2", "train.accumulate=2", "train.epochs=2")
    resumed = Trainer(
        resumed_cfg,
        ckpt.parent,
        TrainData(resumed_cfg, first.data.train, first.data.val),
        CPU,
        resume_state=(load_checkpoint(ckpt), ckpt),
    )
    resumed.fit()
    assert resumed.state.step == 4
    for (name, a), b in zip(straight.model.state_dict().items(), resumed.model.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6, msg=name)


def test_accumulation_larger_than_an_epoch_is_a_clear_error(synth, tmp_path):
    with pytest.raises(OcrkitError, match="train.accumulate=8 needs at least 8 batches"):
        make_trainer(synth, tmp_path, "train.accumulate=8")


def test_max_steps_sets_the_schedule_and_ends_mid_epoch(synth, tmp_path):
    trainer = make_trainer(synth, tmp_path, "train.batch_size=2", "train.max_steps=3", "train.epochs=50")
    result = trainer.fit()
    assert result.state.step == 3 and trainer.total_steps == 3
    assert result.last_metrics is not None and (tmp_path / "run" / "last.pt").is_file()
    assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-12)  # poly decay reached its end


# ---------------------------------------------------------------- EMA


def test_ema_decay_warms_up_and_tracks_the_model():
    model, _, _ = linear_problem()
    ema = ModelEma(model, EmaConfig(enabled=True, decay=0.999))
    assert ema.decay() == pytest.approx(0.1)
    with torch.no_grad():
        model.weight.add_(1.0)
    ema.update(model)
    torch.testing.assert_close(ema.module.weight, model.weight - 0.1)  # moved 90% toward the model
    assert ema.decay() == pytest.approx(2 / 11)
    for _ in range(10_000):
        ema.update(model)
    assert ema.decay() == 0.999


def test_ema_is_updated_only_after_real_steps_and_reported_beside_raw(synth, tmp_path):
    trainer = make_trainer(
        synth, tmp_path, "train.epochs=2", "train.ema.enabled=true", "health.action=warn", "health.overflow_probe=false"
    )
    skip = {"now": False}
    trainer.model.prob_head.layers[0].weight.register_hook(lambda g: g * math.inf if skip["now"] else g)
    real_step = trainer.optimizer_step

    def step_skipping_the_third(group):
        skip["now"] = trainer.state.step == 2
        return real_step(group)

    trainer.optimizer_step = step_skipping_the_third
    result = trainer.fit()
    assert result.state.step == 4 and result.state.skipped_steps == 1
    assert trainer.ema.updates == 3
    assert result.last_ema_metrics is not None
    tags = {line.split(",")[2] for line in (tmp_path / "run" / "metrics.csv").read_text().splitlines()[1:]}
    assert {"val/hmean", "val_ema/hmean", "health/update_ratio", "health_epoch/skip_rate"} <= tags
    state = torch.load(tmp_path / "run" / "last.pt", weights_only=False)
    assert state["ema"]["updates"] == 3


def test_eval_scores_the_ema_weights_on_request(synth, tmp_path):
    from typer.testing import CliRunner

    from ocrkit.cli.app import app

    runner = CliRunner()
    tiny = [
        "--set",
        "model.base_width=8",
        "--set",
        "model.inner_channels=32",
        "--set",
        "model.head_channels=8",
        "--set",
        "data.train_size=[96,96]",
        "--set",
        "data.eval_size=[128,160]",
        "--set",
        "data.num_workers=0",
        "--set",
        "train.overlays=0",
        "--set",
        f"log.dir={tmp_path}",
    ]
    base = [
        "train",
        "--data",
        str(synth / "train"),
        "--val-data",
        str(synth / "val"),
        "--quiet",
        "--epochs",
        "1",
        "--batch-size",
        "4",
        *tiny,
    ]
    assert runner.invoke(app, [*base, "--name", "ema", "--set", "train.ema.enabled=true"]).exit_code == 0
    assert runner.invoke(app, [*base, "--name", "plain"]).exit_code == 0
    checkpoint = tmp_path / "train" / "ema" / "last.pt"
    result = runner.invoke(
        app,
        [
            "eval",
            "--checkpoint",
            str(checkpoint),
            "--data",
            str(synth / "val"),
            "--json",
            "--weights",
            "ema",
            "--out",
            str(tmp_path / "ema_eval"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "hmean" in result.output
    from ocrkit.core.engine.eval_job import load_for_inference

    state = torch.load(checkpoint, weights_only=False)
    for weights, expected in (("raw", state["model"]), ("ema", state["ema"]["model"])):
        loaded = load_for_inference(checkpoint, None, None, {"train.device": "cpu"}, weights)
        for name, value in loaded.model.state_dict().items():
            assert torch.equal(value, expected[name]), (weights, name)
    assert any(not torch.equal(state["model"][k], state["ema"]["model"][k]) for k in state["model"])
    result = runner.invoke(
        app,
        [
            "eval",
            "--checkpoint",
            str(tmp_path / "train" / "plain" / "last.pt"),
            "--data",
            str(synth / "val"),
            "--weights",
            "ema",
        ],
    )
    assert result.exit_code != 0 and "no EMA weights" in result.output and "Traceback" not in result.output


# ---------------------------------------------------------------- memory format


def test_channels_last_trains_the_same_numbers_in_nhwc(synth, tmp_path):
    plain = make_trainer(synth, tmp_path / "a", "train.batch_size=2", "train.max_steps=3")
    nhwc = make_trainer(synth, tmp_path / "b", "train.batch_size=2", "train.max_steps=3", "train.channels_last=true")
    conv = next(m for m in nhwc.model.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last) and not conv.weight.is_contiguous()
    plain_losses, nhwc_losses = plain.fit().losses, nhwc.fit().losses
    assert len(nhwc_losses) == 3
    # a layout change, not a numerics change: the same first loss up to summation order; after
    # two AdamW steps (which normalize tiny gradient differences) still within 1e-3
    assert nhwc_losses[0] == pytest.approx(plain_losses[0], rel=1e-5)
    assert nhwc_losses == pytest.approx(plain_losses, rel=1e-3)

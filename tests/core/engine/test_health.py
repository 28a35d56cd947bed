"""The training-health monitor, the overflow probe, and a Trainer that stops (or warns) on what they
find."""

import json
import math
import warnings

import pytest
import torch
from torch import nn

from conftest import fp16_policy, linear_problem, make_trainer
from ocrkit.core.config import HealthConfig
from ocrkit.core.engine.health import HealthMonitor, HealthStop, StepHealth, UpdateProbe, probe_overflow_path
from ocrkit.core.engine.precision import PrecisionPolicy
from ocrkit.core.errors import OcrkitError

CPU = torch.device("cpu")


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


def test_trainer_stops_when_a_gradient_hook_masks_overflow(synth, tmp_path):
    trainer = make_trainer(synth, tmp_path)
    for p in trainer.model.parameters():
        p.register_hook(lambda g: torch.nan_to_num(g, nan=0.0, posinf=1.0, neginf=-1.0))
    with pytest.raises(HealthStop, match="overflow is masked"):
        trainer.fit()
    assert trainer.state.step == 0
    assert list((tmp_path / "run" / "diagnostics").glob("health_step0000000.json"))


def test_trainer_stops_when_every_step_is_skipped_and_names_the_cause(synth, tmp_path):
    trainer = make_trainer(
        synth,
        tmp_path,
        "train.epochs=20",
        "health.frozen_steps=4",
        "health.overflow_probe=false",
        "health.nonfinite_grad=skip",  # 32-true: a non-finite gradient would stop at once
    )
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
        synth,
        tmp_path,
        "train.epochs=3",
        "health.frozen_steps=2",
        "health.action=warn",
        "health.overflow_probe=false",
        "health.nonfinite_grad=skip",
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

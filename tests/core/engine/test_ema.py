"""The model EMA: its decay warm-up, and updates only after real optimizer steps."""

import math

import pytest
import torch

from conftest import linear_problem, make_trainer
from ocrkit.core.config import EmaConfig
from ocrkit.core.engine.ema import ModelEma


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
        synth,
        tmp_path,
        "train.epochs=2",
        "train.ema.enabled=true",
        "health.action=warn",
        "health.overflow_probe=false",
        "health.nonfinite_grad=skip",  # 32-true: skip the planted overflow instead of stopping
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

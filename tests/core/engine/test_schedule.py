"""The learning-rate schedule: linear warm-up, DB's poly decay, its end value, moving its end mid-run
(reschedule) and saving it with the scheduler."""

import pytest
import torch

from ocrkit.core.config import TrainConfig
from ocrkit.core.engine.schedule import build_optimizer, build_scheduler, lr_factor, reschedule


def test_rescheduling_moves_the_end_and_the_current_lr_and_is_saved_with_the_scheduler():
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([param], lr=1.0)
    cfg = TrainConfig(warmup_steps=10, poly_power=0.9)
    scheduler = build_scheduler(optimizer, cfg, total_steps=900)
    for _ in range(20):
        optimizer.step()
        scheduler.step()
    reschedule(scheduler, total_steps=300, warmup_steps=4)
    assert optimizer.param_groups[0]["lr"] == lr_factor(20, 300, 4, 0.9)
    assert scheduler.get_last_lr() == [optimizer.param_groups[0]["lr"]]
    restored = build_scheduler(torch.optim.SGD([param], lr=1.0), cfg, total_steps=900)
    restored.load_state_dict(scheduler.state_dict())
    assert restored.lr_lambdas[0].total_steps == 300 and restored.lr_lambdas[0].warmup_steps == 4


def test_the_schedule_is_unchanged_without_a_plan():
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([param], lr=0.5)
    scheduler = build_scheduler(optimizer, TrainConfig(warmup_steps=3, poly_power=0.9), total_steps=12)
    for step in range(1, 12):
        optimizer.step()
        scheduler.step()
        assert optimizer.param_groups[0]["lr"] == 0.5 * lr_factor(step, 12, 3, 0.9)


def sgd(lr: float) -> torch.optim.SGD:
    return torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr)


def lrs(optimizer: torch.optim.Optimizer, scheduler, steps: int) -> list[float]:
    """The LR in use at each of the next ``steps`` optimizer steps."""
    seen = []
    for _ in range(steps):
        seen.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return seen


def test_warm_up_rises_linearly_to_the_base_lr_over_its_steps():
    assert [lr_factor(step, 14, 4, 0.9) for step in range(5)] == [0.25, 0.5, 0.75, 1.0, 1.0]
    optimizer = sgd(0.4)
    scheduler = build_scheduler(optimizer, TrainConfig(warmup_steps=4, poly_power=0.9), total_steps=14)
    assert lrs(optimizer, scheduler, 5) == pytest.approx([0.1, 0.2, 0.3, 0.4, 0.4], rel=1e-12)
    assert lr_factor(0, 14, 0, 0.9) == 1.0  # no warm-up: the base LR from the first step


def test_poly_decay_values_at_chosen_steps():
    # 14 steps, 4 of warm-up: the decay spans steps 4..14, (1 - (step - 4) / 10) ** 0.9
    assert lr_factor(4, 14, 4, 0.9) == 1.0
    assert lr_factor(9, 14, 4, 0.9) == pytest.approx(0.5**0.9, rel=1e-12)
    assert lr_factor(9, 14, 4, 0.9) == pytest.approx(0.535887, abs=1e-6)  # 0.5 ** 0.9 by hand
    assert lr_factor(13, 14, 4, 0.9) == pytest.approx(0.125893, abs=1e-6)  # 0.1 ** 0.9
    assert lr_factor(5, 10, 0, 1.0) == 0.5  # power 1: a straight line
    assert lr_factor(7, 10, 0, 2.0) == pytest.approx(0.09, rel=1e-12)  # (1 - 0.7) ** 2


def test_the_schedule_ends_at_zero_and_stays_there():
    assert lr_factor(14, 14, 4, 0.9) == 0.0
    assert lr_factor(30, 14, 4, 0.9) == 0.0  # a run past its plan does not climb back
    optimizer = sgd(0.4)
    scheduler = build_scheduler(optimizer, TrainConfig(warmup_steps=4, poly_power=0.9), total_steps=14)
    lrs(optimizer, scheduler, 14)
    assert optimizer.param_groups[0]["lr"] == 0.0 and scheduler.get_last_lr() == [0.0]
    # poly_power = 0 is a constant LR (0 ** 0 == 1), the overfitting run's setting
    assert [lr_factor(step, 10, 0, 0.0) for step in (0, 5, 10, 20)] == [1.0, 1.0, 1.0, 1.0]


def test_a_single_step_schedule_does_not_divide_by_zero():
    assert lr_factor(0, 1, 0, 0.9) == 1.0 and lr_factor(1, 1, 0, 0.9) == 0.0
    assert lr_factor(3, 3, 3, 0.9) == 1.0  # all warm-up: the decay span is at least one step


def test_reschedule_keeps_the_step_and_the_rest_follows_the_new_plan():
    optimizer = sgd(1.0)
    scheduler = build_scheduler(optimizer, TrainConfig(warmup_steps=2, poly_power=0.9), total_steps=100)
    lrs(optimizer, scheduler, 6)
    reschedule(scheduler, total_steps=20, warmup_steps=3)
    assert scheduler.last_epoch == 6  # the step count is untouched: only the plan moved
    assert lrs(optimizer, scheduler, 15) == pytest.approx([lr_factor(s, 20, 3, 0.9) for s in range(6, 21)], rel=1e-12)
    assert optimizer.param_groups[0]["lr"] == 0.0  # and it ends where the new plan ends


def test_a_state_dict_round_trip_continues_the_same_lr_sequence():
    cfg = TrainConfig(warmup_steps=3, poly_power=0.9)
    optimizer = sgd(0.2)
    scheduler = build_scheduler(optimizer, cfg, total_steps=12)
    lrs(optimizer, scheduler, 5)
    saved = scheduler.state_dict()
    restored_optimizer = sgd(0.2)
    restored = build_scheduler(restored_optimizer, cfg, total_steps=999)  # the saved plan wins
    restored.load_state_dict(saved)
    restored_optimizer.param_groups[0]["lr"] = restored.get_last_lr()[0]  # as the optimizer's state would
    assert restored.last_epoch == 5 and restored.lr_lambdas[0].total_steps == 12
    assert lrs(restored_optimizer, restored, 7) == lrs(optimizer, scheduler, 7)


def test_the_optimizer_follows_the_config():
    params = [torch.nn.Parameter(torch.zeros(2))]
    adamw = build_optimizer(params, TrainConfig(optimizer="adamw", lr=0.003, weight_decay=0.01))
    assert isinstance(adamw, torch.optim.AdamW)
    assert (adamw.defaults["lr"], adamw.defaults["weight_decay"]) == (0.003, 0.01)
    sgd_cfg = TrainConfig(optimizer="sgd", lr=0.007, momentum=0.9, weight_decay=1e-4)
    plain = build_optimizer(params, sgd_cfg)
    assert isinstance(plain, torch.optim.SGD)
    assert (plain.defaults["lr"], plain.defaults["momentum"], plain.defaults["weight_decay"]) == (0.007, 0.9, 1e-4)

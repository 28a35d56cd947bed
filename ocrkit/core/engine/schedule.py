"""Optimizer and learning-rate schedule from the train config."""

from __future__ import annotations

import torch

from ocrkit.core.config import TrainConfig


def build_optimizer(params, cfg: TrainConfig) -> torch.optim.Optimizer:
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)


def lr_factor(step: int, total_steps: int, warmup_steps: int, power: float) -> float:
    """Linear warm-up to 1, then DB's poly decay (1 − t)^power over the remaining steps."""
    if warmup_steps and step < warmup_steps:
        return (step + 1) / warmup_steps
    span = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / span)
    return (1.0 - progress) ** power


class PolySchedule:
    """``lr_factor`` as a callable object, so that a time-budget plan can move its end (and
    warm-up) mid-run and LambdaLR's state_dict saves the plan with the scheduler."""

    def __init__(self, total_steps: int, warmup_steps: int, power: float):
        self.total_steps, self.warmup_steps, self.power = total_steps, warmup_steps, power

    def __call__(self, step: int) -> float:
        return lr_factor(step, self.total_steps, self.warmup_steps, self.power)


def build_scheduler(
    optimizer: torch.optim.Optimizer, cfg: TrainConfig, total_steps: int, warmup_steps: int | None = None
) -> torch.optim.lr_scheduler.LambdaLR:
    """Stepped once per REAL optimizer step (a skipped fp16 step does not advance it)."""
    warmup = cfg.warmup_steps if warmup_steps is None else warmup_steps
    return torch.optim.lr_scheduler.LambdaLR(optimizer, PolySchedule(total_steps, warmup, cfg.poly_power))


def reschedule(scheduler: torch.optim.lr_scheduler.LambdaLR, total_steps: int, warmup_steps: int) -> None:
    """Make the schedule end at ``total_steps`` from now on; the current LR follows at once."""
    for schedule in scheduler.lr_lambdas:
        assert isinstance(schedule, PolySchedule), "only build_scheduler's schedules can be moved"
        schedule.total_steps, schedule.warmup_steps = total_steps, warmup_steps
    step = scheduler.last_epoch
    for group, base, schedule in zip(
        scheduler.optimizer.param_groups, scheduler.base_lrs, scheduler.lr_lambdas, strict=True
    ):
        group["lr"] = base * schedule(step)
    scheduler._last_lr = [group["lr"] for group in scheduler.optimizer.param_groups]

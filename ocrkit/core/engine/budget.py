"""Training time budget (``train.time_limit``): how many steps fit, from measured costs.

After the first ``train.time_plan_steps`` steps the trainer knows what a step costs on this
machine (data wait included), and measures what a validation pass and a checkpoint cost. The plan
is the largest step count whose steps, validations and checkpoints (at the configured epoch
intervals, plus the final ones) end within the budget. The LR schedule is then rescaled to end at
that step (warm-up in proportion), so a slow machine trains a shorter but complete schedule rather
than a long one cut off at high LR. A checkpoint keeps the plan, so a resumed run keeps it too.

The plan is an estimate; the trainer also stops early (validating and checkpointing) when the
steps run slower than planned and one more step would overrun.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch

from ocrkit.core.config import TrainConfig
from ocrkit.core.engine.schedule import reschedule


@dataclass(frozen=True)
class BudgetCosts:
    budget_s: float
    elapsed_s: float  # spent so far (this run, resumes included)
    steps_done: int
    step_s: float  # one optimizer step, data wait included
    validation_s: float  # one validation pass (0 without a validation set)
    checkpoint_s: float
    steps_per_epoch: int
    epochs_done: int
    val_every: int  # epochs
    checkpoint_every: int  # epochs
    has_validation: bool = True


def epoch_events(epochs_done: int, last_epoch: int, every: int) -> int:
    """How many end-of-epoch events (validation or checkpoint) run for epochs ``epochs_done+1 ..
    last_epoch``: every ``every``-th epoch, and always the last one."""
    if last_epoch <= epochs_done:
        return 1
    periodic = last_epoch // every - epochs_done // every
    return periodic + (0 if last_epoch % every == 0 else 1)


def time_needed(costs: BudgetCosts, total_steps: int) -> float:
    """Seconds from now until a run of ``total_steps`` has validated and checkpointed at its end."""
    last_epoch = math.ceil(total_steps / costs.steps_per_epoch)
    validations = epoch_events(costs.epochs_done, last_epoch, costs.val_every) if costs.has_validation else 0
    checkpoints = epoch_events(costs.epochs_done, last_epoch, costs.checkpoint_every)
    return (
        (total_steps - costs.steps_done) * costs.step_s
        + validations * costs.validation_s
        + checkpoints * costs.checkpoint_s
    )


def plan_total_steps(costs: BudgetCosts) -> int:
    """The largest total step count that fits the budget (at least one more step)."""
    left = costs.budget_s - costs.elapsed_s
    low = costs.steps_done + 1
    if time_needed(costs, low) > left or costs.step_s <= 0:
        return low
    high = low
    while time_needed(costs, high * 2) <= left:  # cost grows with the step count: bracket, then bisect
        high *= 2
    high *= 2
    while high - low > 1:
        middle = (low + high) // 2
        if time_needed(costs, middle) <= left:
            low = middle
        else:
            high = middle
    return low


def scaled_warmup(warmup_steps: int, planned_steps: int, nominal_steps: int) -> int:
    """Warm-up keeps its share of the schedule."""
    if warmup_steps <= 0:
        return 0
    return max(1, round(warmup_steps * planned_steps / max(1, nominal_steps)))


class BudgetedRun(Protocol):
    """What the budget needs of the trainer it steers."""

    state: Any  # TrainState: step, epoch, validation_s, planned_steps, planned_warmup
    scheduler: torch.optim.lr_scheduler.LambdaLR
    total_steps: int
    nominal_steps: int
    steps_per_epoch: int
    checkpoint_s: float

    def elapsed_s(self) -> float: ...
    def finished(self) -> bool: ...
    def save(self, name: str) -> Path: ...
    def measure_validation_s(self) -> float: ...
    def set_total_steps(self, total: int) -> None: ...
    def say(self, text: str) -> None: ...


class TimeBudget:
    """``train.time_limit``, applied to a running trainer: the first plan after
    ``train.time_plan_steps`` steps, a re-plan at each epoch end, an early stop when the steps run
    slower than planned. Does nothing without a time limit."""

    def __init__(self, train: TrainConfig, has_validation: bool):
        self.cfg, self.has_validation = train, has_validation
        self.step_seconds: list[float] = []  # this process's optimizer steps, data wait included
        self.costs: BudgetCosts | None = None  # what the latest plan was made from

    def record_step(self, seconds: float) -> None:
        self.step_seconds.append(seconds)

    def after_step(self, run: BudgetedRun) -> None:
        """Make the plan once enough steps are timed; then stop early if the steps run slower
        than planned and one more would overrun the budget."""
        if self.cfg.time_limit is None:
            return
        if run.state.planned_steps is None:
            if len(self.step_seconds) >= self.cfg.time_plan_steps:
                self._plan(run)
            return
        step_s = self.step_seconds[-1] if self.step_seconds else 0.0
        left = self.cfg.time_limit * 60 - run.elapsed_s()
        if not run.finished() and step_s + run.state.validation_s + run.checkpoint_s > left:
            run.say(
                f"time budget: stopping at step {run.state.step} of the planned "
                f"{run.total_steps}: the steps ran slower than planned"
            )
            run.set_total_steps(run.state.step)

    def _plan(self, run: BudgetedRun) -> None:
        """The first plan: from the steps timed so far (the first includes the loader's start), a
        measured validation pass and a checkpoint."""
        run.state.validation_s = run.measure_validation_s()
        run.save("last.pt")  # measures what a checkpoint costs
        timed = self.step_seconds[1:] or self.step_seconds
        costs = self._apply(run, sum(timed) / len(timed))
        run.save("last.pt")  # with the plan, so that a resume from here keeps it
        run.say(
            f"time budget {self.cfg.time_limit:g} min: {costs.step_s:.2f} s/step, validation "
            f"{costs.validation_s:.1f} s, checkpoint {costs.checkpoint_s:.2f} s -> {run.total_steps} steps "
            f"({run.total_steps / run.steps_per_epoch:.1f} epochs; warm-up {run.state.planned_warmup}); the LR "
            f"schedule now ends at step {run.total_steps} (configured: {run.nominal_steps})"
        )

    def at_epoch_end(self, run: BudgetedRun) -> None:
        """After the first plan: the same rule with the last three epochs' step times (a cold
        store or a busy machine at the start no longer decides the whole run; three epochs smooth
        the epoch-to-epoch noise) and the last real validation. The schedule's end moves by what
        the estimate moved, usually a few percent."""
        if self.cfg.time_limit is None or run.state.planned_steps is None or run.finished():
            return
        recent = self.step_seconds[-3 * run.steps_per_epoch :]
        if not recent:
            return
        before = run.total_steps
        self._apply(run, sum(recent) / len(recent))
        if abs(run.total_steps - before) > max(1, before // 50):
            run.say(
                f"time budget: re-planned {before} -> {run.total_steps} steps "
                f"({sum(recent) / len(recent):.2f} s/step recently)"
            )

    def _apply(self, run: BudgetedRun, step_s: float) -> BudgetCosts:
        train, state = self.cfg, run.state
        assert train.time_limit is not None
        costs = BudgetCosts(
            budget_s=train.time_limit * 60,
            elapsed_s=run.elapsed_s(),
            steps_done=state.step,
            step_s=step_s,
            validation_s=state.validation_s,
            checkpoint_s=run.checkpoint_s,
            steps_per_epoch=run.steps_per_epoch,
            epochs_done=state.epoch,
            val_every=train.val_every,
            checkpoint_every=train.checkpoint_every,
            has_validation=self.has_validation,
        )
        total = min(plan_total_steps(costs), train.max_steps or 2**62)  # max_steps stays a ceiling
        warmup = state.planned_warmup
        if warmup is None or state.step < warmup:  # a warm-up already over stays as it was
            warmup = scaled_warmup(train.warmup_steps, total, run.nominal_steps)
        state.planned_steps, state.planned_warmup = total, warmup
        reschedule(run.scheduler, total, warmup)
        run.set_total_steps(total)
        self.costs = costs
        return costs

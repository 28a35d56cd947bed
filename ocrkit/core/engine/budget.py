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
    return ((total_steps - costs.steps_done) * costs.step_s + validations * costs.validation_s
            + checkpoints * costs.checkpoint_s)


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

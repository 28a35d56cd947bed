"""Training time budget: planning (budget -> steps -> schedule end) and runs it stops and resumes."""

import math

import pytest
import torch
from typer.testing import CliRunner

from conftest import TINY_TRAIN_W4, set_args
from ocrkit.cli.app import app
from ocrkit.core.engine.budget import BudgetCosts, epoch_events, plan_total_steps, scaled_warmup, time_needed


def costs(**changes) -> BudgetCosts:
    base = dict(
        budget_s=100.0,
        elapsed_s=10.0,
        steps_done=10,
        step_s=1.0,
        validation_s=0.0,
        checkpoint_s=0.0,
        steps_per_epoch=10,
        epochs_done=1,
        val_every=1,
        checkpoint_every=1,
    )
    return BudgetCosts(**{**base, **changes})


def test_epoch_events_count_every_nth_epoch_and_the_last():
    assert epoch_events(1, 4, 1) == 3  # epochs 2, 3, 4
    assert epoch_events(0, 7, 3) == 3  # epochs 3, 6 and the last (7)
    assert epoch_events(0, 6, 3) == 2  # 3 and 6, which is the last
    assert epoch_events(2, 2, 5) == 1  # the run ends in the current epoch: its end still counts


def test_the_plan_is_the_largest_step_count_that_fits():
    assert plan_total_steps(costs()) == 100  # 90 s left, 1 s a step, nothing else
    # validation 5 s at every epoch end (10 steps): n steps cost n - 10 + 5 * ceil(n/10 - 1) <= 90
    plan = plan_total_steps(costs(validation_s=5.0))
    assert plan == 70 and time_needed(costs(validation_s=5.0), 70) <= 90 < time_needed(costs(validation_s=5.0), 71)
    # validation only every 3 epochs (and at the end) costs less, so more steps fit
    assert plan_total_steps(costs(validation_s=5.0, val_every=3)) > plan
    # no validation set: its cost does not count
    assert plan_total_steps(costs(validation_s=50.0, has_validation=False)) == 100


def test_an_exhausted_budget_still_plans_one_more_step():
    assert plan_total_steps(costs(elapsed_s=200.0)) == 11


def test_warm_up_keeps_its_share_of_the_schedule():
    assert scaled_warmup(50, 300, 900) == 17
    assert scaled_warmup(50, 1800, 900) == 100
    assert scaled_warmup(0, 300, 900) == 0 and scaled_warmup(5, 1, 900) == 1


# ------------------------------------------------------------------ end to end

runner = CliRunner()
TINY = [*TINY_TRAIN_W4, *set_args("train.time_plan_steps=3", "train.warmup_steps=10")]


def train(synth, tmp_path, *extra):
    return runner.invoke(
        app,
        [
            "train",
            "--data",
            str(synth / "train"),
            "--val-data",
            str(synth / "val"),
            "--device",
            "cpu",
            "--quiet",
            "--set",
            f"log.dir={tmp_path}",
            *TINY,
            *[str(e) for e in extra],
        ],
    )


def test_a_budget_stops_a_long_run_after_validating_and_checkpointing(synth, tmp_path):
    result = train(synth, tmp_path, "--epochs", 100000, "--time-limit", 0.25, "--name", "budget")
    assert result.exit_code == 0, result.output
    state = torch.load(tmp_path / "train" / "budget" / "last.pt", weights_only=False)
    train_state = state["train_state"]
    planned, step = train_state["planned_steps"], train_state["step"]
    assert planned is not None and 3 < planned < 100000 * 2 and 3 < step <= planned
    assert f"{step} steps trained" in result.output and f"planned: {planned}" in result.output
    epochs_run = math.ceil(step / 2)  # 8 images at batch 4
    assert (tmp_path / "train" / "budget" / "val" / f"step{step:07d}").is_dir()  # validated at its last step
    assert train_state["epoch"] == epochs_run
    schedule = state["scheduler"]["lr_lambdas"][0]
    assert schedule["total_steps"] == planned and schedule["warmup_steps"] == scaled_warmup(10, planned, 200000)


def test_a_resumed_run_keeps_the_budget_plan(synth, tmp_path):
    first = train(
        synth, tmp_path, "--epochs", 100000, "--time-limit", 2, "--name", "split", "--set", "train.stop_at_step=5"
    )
    assert first.exit_code == 0, first.output
    run_dir = tmp_path / "train" / "split"
    paused = torch.load(run_dir / "last.pt", weights_only=False)["train_state"]
    assert paused["step"] == 5 and paused["planned_steps"] is not None
    resumed = runner.invoke(app, ["train", "--resume", str(run_dir), "--set", "train.stop_at_step=7"])
    assert resumed.exit_code == 0, resumed.output
    assert "s/step, validation" not in resumed.output  # no fresh first plan: the saved one goes on
    after = torch.load(run_dir / "last.pt", weights_only=False)
    state = after["train_state"]
    assert state["step"] == 7 and state["planned_warmup"] == paused["planned_warmup"]
    # the epoch end at step 6 re-planned from the measured steps; the schedule follows the plan
    assert after["scheduler"]["lr_lambdas"][0]["total_steps"] == state["planned_steps"]
    assert state["elapsed_s"] > paused["elapsed_s"]  # the budget counts across resumes


def test_re_planning_follows_the_measured_step_time(synth, tmp_path):
    from ocrkit.core.config import load_config
    from ocrkit.core.data.formats import load_dataset
    from ocrkit.core.data.train_data import TrainData
    from ocrkit.core.engine.trainer import Trainer

    cfg = load_config(
        overrides=[
            "train.time_limit=100",
            "train.epochs=100000",
            "train.batch_size=4",
            "train.warmup_steps=10",
            "model.base_width=4",
            "model.inner_channels=16",
            "model.head_channels=4",
            "data.train_size=[64,64]",
        ]
    )
    trainer = Trainer(
        cfg, tmp_path, TrainData(cfg, load_dataset(str(synth / "train")).samples, []), torch.device("cpu")
    )
    trainer.state.step, trainer.state.epoch = 20, 10
    trainer.state.planned_steps, trainer.state.planned_warmup = 40, 5  # a first plan, warm-up over
    trainer.budget.step_seconds = [1.0, 1.0]
    trainer.budget.at_epoch_end(trainer)
    at_one_second = trainer.total_steps
    assert 5900 < at_one_second <= 6020  # 100 min at 1 s a step (plus the 20 done)
    trainer.budget.step_seconds = [2.0, 2.0]
    trainer.budget.at_epoch_end(trainer)
    assert trainer.total_steps == pytest.approx(20 + (at_one_second - 20) / 2, abs=2)
    assert trainer.scheduler.lr_lambdas[0].total_steps == trainer.total_steps == trainer.state.planned_steps
    assert trainer.state.planned_warmup == 5  # an elapsed warm-up is not moved


def test_max_steps_stays_a_ceiling_under_a_budget(synth, tmp_path):
    result = train(synth, tmp_path, "--time-limit", 5, "--name", "capped", "--set", "train.max_steps=6")
    assert result.exit_code == 0, result.output
    state = torch.load(tmp_path / "train" / "capped" / "last.pt", weights_only=False)["train_state"]
    assert state["planned_steps"] == 6 and state["step"] == 6


def test_benchmarks_train_fixed_steps_whatever_the_budget():
    from ocrkit.core.bench.timing import fixed_steps_variant
    from ocrkit.core.config import load_config

    cfg = load_config(overrides=["train.time_limit=15", "train.stop_at_step=3"])
    variant = fixed_steps_variant(cfg, 16)
    assert variant.train.time_limit is None and variant.train.max_steps == 16 and variant.train.stop_at_step is None
    assert cfg.train.time_limit == 15  # the caller's config is untouched

"""The NaN guard, through the real ``ocrkit train`` in this process: an inf/NaN planted at one step
(tests/reliability/nan_faults.py) stops the run at that step with one line naming the step, the loss
terms and the precision state, writes the diagnostic, and leaves the last good checkpoint as it was
(byte for byte, loadable, resumable). Under 16-mixed an overflowing gradient is a skipped step.

The runs: a width-4 model on 64x64 crops of the session's ``synth`` set (8 training images at batch
4: 2 steps an epoch), 2 epochs; the fault fires at step 3, the first step after last.pt was written.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest
import torch
from nan_faults import Fault, install
from typer.testing import CliRunner

from conftest import TINY_TRAIN_W4, set_args
from ocrkit.cli.app import app
from ocrkit.core.engine.checkpoint import load_checkpoint

runner = CliRunner()
LOSS_TERMS = ("loss=", "loss_prob=", "loss_thresh=", "loss_binary=")
FAULT_STEP = 3  # epoch 2's first step: last.pt of epoch 1 (step 2) is the last good checkpoint


def train(synth: Path, tmp_path: Path, *extra: str):
    args = [
        "train",
        "--data",
        str(synth / "train"),
        "--val-data",
        str(synth / "val"),
        "--device",
        "cpu",
        "--epochs",
        "2",
        "--quiet",
        "--name",
        "nan",
        *TINY_TRAIN_W4,
        *set_args(f"log.dir={tmp_path / 'runs'}", "health.overflow_probe=false"),
        *extra,
    ]
    return runner.invoke(app, args)


def error_line(result) -> str:
    """The run failed with exactly one error line and no traceback; that line."""
    assert result.exit_code != 0, result.output
    assert "Traceback" not in result.output, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.output
    return errors[0]


def logged(run_dir: Path, tag: str) -> dict[int, float]:
    with open(run_dir / "metrics.csv", newline="") as f:
        return {int(row["step"]): float(row["value"]) for row in csv.DictReader(f) if row["tag"] == tag}


def assert_stopped_at_the_fault(result, fault: Fault, kind: str, precision: str) -> dict:
    """The common checks of a stop: one line naming the step, loss terms and precision state; the
    diagnostic names the step; nothing of the faulty step was logged; last.pt is the last good one."""
    assert fault.fired, "the fault never fired"
    line = error_line(result)
    run_dir = fault.run_dirs[-1]
    diagnostic = run_dir / "diagnostics" / f"{kind}_step{FAULT_STEP:07d}.json"
    assert f"at step {FAULT_STEP} " in line, line
    if kind != "nonfinite_weights":
        assert all(term in line for term in LOSS_TERMS), line
    assert f"precision {precision}, " in line and "loss scal" in line, line
    assert str(diagnostic) in line, line
    body = json.loads(diagnostic.read_text())
    assert body["step"] == FAULT_STEP and body["precision"] == precision
    # stopped within the step: the faulty step never reached the logs
    assert max(logged(run_dir, "train/loss")) == FAULT_STEP - 1
    health = json.loads((run_dir / "health.json").read_text())
    assert any(p.startswith(f"step {FAULT_STEP}: ") for p in health["problems"]), health
    # the last good checkpoint: what was on disk when the fault fired, byte for byte, and loadable
    last = run_dir / "last.pt"
    assert fault.last_pt_before is not None and last.read_bytes() == fault.last_pt_before
    state = load_checkpoint(last)
    assert state["train_state"]["step"] == FAULT_STEP - 1
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())
    assert not list(run_dir.glob("*.pt.tmp*")) and sorted(p.name for p in run_dir.glob("*.pt")) == [
        "best.pt",
        "last.pt",
    ]
    return body


def test_nan_loss_stops_at_that_step_and_the_run_resumes_from_the_last_good_checkpoint(synth, tmp_path, monkeypatch):
    fault = install(monkeypatch, Fault("loss", FAULT_STEP))
    result = train(synth, tmp_path)
    body = assert_stopped_at_the_fault(result, fault, "nonfinite_loss", "32-true")
    line = error_line(result)
    assert "loss=nan" in line and "no loss scaling" in line and "samples synth_" in line, line
    assert math.isnan(body["loss_terms"]["loss"]) and body["samples"]
    saved = torch.load(Path(str(body_path(fault, "nonfinite_loss"))).with_suffix(".pt"), weights_only=True)
    assert saved["batch"]["image"].shape[0] == 4
    # the last good checkpoint carries the run on to its end once the fault is gone
    fault.step = -1
    resumed = runner.invoke(app, ["train", "--resume", str(fault.run_dirs[-1]), "--quiet", "--device", "cpu"])
    assert resumed.exit_code == 0, resumed.output
    assert load_checkpoint(fault.run_dirs[-1] / "last.pt")["train_state"]["step"] == 4


def body_path(fault: Fault, kind: str) -> Path:
    return fault.run_dirs[-1] / "diagnostics" / f"{kind}_step{FAULT_STEP:07d}.json"


@pytest.mark.parametrize("precision", ["32-true", "bf16-mixed"])
@pytest.mark.parametrize("value", [math.nan, math.inf])
def test_non_finite_gradient_without_a_scaler_stops_at_that_step(synth, tmp_path, monkeypatch, precision, value):
    fault = install(monkeypatch, Fault("grad", FAULT_STEP, value))
    result = train(synth, tmp_path, "--precision", precision)
    body = assert_stopped_at_the_fault(result, fault, "nonfinite_grad", precision)
    line = error_line(result)
    assert "non-finite gradient" in line and "grad norm " in line and fault.parameter in line, line
    assert "no loss scaling" in line and "the step was not applied" in line, line
    assert body["nonfinite_params"] == [fault.parameter] and not math.isfinite(body["grad_norm"])
    assert all(math.isfinite(v) for v in body["loss_terms"].values())  # the loss was fine
    saved = torch.load(body_path(fault, "nonfinite_grad").with_suffix(".pt"), weights_only=True)
    assert len(saved["batches"]) == 1 and all(torch.isfinite(v).all() for v in saved["model"].values())


def test_nan_in_a_batch_stops_and_names_the_sample(synth, tmp_path, monkeypatch):
    fault = install(monkeypatch, Fault("batch", FAULT_STEP))
    result = train(synth, tmp_path)
    body = assert_stopped_at_the_fault(result, fault, "nonfinite_loss", "32-true")
    line = error_line(result)
    stems = sorted(p.stem for p in (synth / "train" / "images").iterdir())
    poisoned = stems[fault.poisoned_index]
    assert f"non-finite values in the input of samples {poisoned};" in line, line
    assert body["nonfinite_input"] == [poisoned]


@pytest.mark.parametrize("val_every, refused", [(2, "best.pt"), (3, "last.pt")])
def test_non_finite_weights_are_never_written_over_a_checkpoint(synth, tmp_path, monkeypatch, val_every, refused):
    """Weights poisoned by step 4, epoch 2's last: with validation at epoch 2 the new best.pt is
    refused, without it the new last.pt; last.pt of epoch 1 stays as it was either way."""
    fault = install(monkeypatch, Fault("weights", FAULT_STEP + 1))
    result = train(synth, tmp_path, "--epochs", "3", "--set", f"train.val_every={val_every}")
    assert fault.fired
    line = error_line(result)
    run_dir = fault.run_dirs[-1]
    assert f"non-finite weights at step {FAULT_STEP + 1} " in line and fault.parameter in line, line
    assert f"{refused} was not written" in line and "precision 32-true" in line, line
    assert (run_dir / "diagnostics" / f"nonfinite_weights_step{FAULT_STEP + 1:07d}.json").is_file()
    last = run_dir / "last.pt"
    assert last.read_bytes() == fault.last_pt_before  # epoch 1's, as it was
    assert load_checkpoint(last)["train_state"]["step"] == FAULT_STEP - 1
    assert not (run_dir / "best.pt").exists()  # validated only at epoch 2, by poisoned weights


@pytest.mark.parametrize("value", [math.inf, math.nan])
def test_under_16_mixed_an_overflowing_gradient_is_a_skipped_step_not_a_stop(synth, tmp_path, monkeypatch, value):
    fault = install(monkeypatch, Fault("grad", FAULT_STEP, value))
    # a scale this tiny model never overflows at by itself (65536 overflows in its first steps)
    result = train(synth, tmp_path, "--precision", "16-mixed", "--set", "train.scaler.init_scale=256")
    assert result.exit_code == 0, result.output
    assert fault.fired
    run_dir = fault.run_dirs[-1]
    skipped, scale = logged(run_dir, "health/skipped"), logged(run_dir, "health/loss_scale")
    assert [step for step, v in skipped.items() if v] == [FAULT_STEP]
    assert scale[FAULT_STEP] == scale[FAULT_STEP - 1] / 2  # the scaler halved the scale
    assert max(skipped) == 4  # and the run went on to its end
    health = json.loads((run_dir / "health.json").read_text())
    assert health["skipped_steps"] == 1 and health["nonfinite_grad_steps"] == 1 and not health["problems"]
    assert not (run_dir / "diagnostics").exists()


def test_nonfinite_grad_skip_skips_the_step_without_a_scaler(synth, tmp_path, monkeypatch):
    fault = install(monkeypatch, Fault("grad", FAULT_STEP))
    result = train(synth, tmp_path, "--set", "health.nonfinite_grad=skip")
    assert result.exit_code == 0, result.output
    skipped = logged(fault.run_dirs[-1], "health/skipped")
    assert [step for step, v in skipped.items() if v] == [FAULT_STEP] and max(skipped) == 4

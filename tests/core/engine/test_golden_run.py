"""A golden run: a tiny model trained for 2 epochs (4 steps) on the ``synth`` set, its metrics.csv
compared with numbers recorded from this code, so that a refactor cannot change training silently.

What the numbers depend on: the ``synth`` fixture (generate_synthetic with seed 5: byte-identical
for the same Pillow, FreeType and OpenCV; tests/core/data/test_synth.py), ocrkit's seeding of the
augmentation and the model, and the float arithmetic of the CPU kernels. The last is why the
comparison is relative and not exact: other SIMD paths sum in another order. Torch runs on one
thread here, so the core count does not change the order too.

Tolerance: relative 1e-4 (the CSV keeps 6 significant digits) for the learning rate, the final val
hmean and the loss of steps 1-3, and 1e-3 for the loss of step 4. This tiny model amplifies
last-bit differences from step 3 on (its gradient norm at step 3 moved 0.8% for a 5e-6 change in
the loss); measured on the AVX2 machine that recorded the numbers, forcing other kernels changed
the step-3 loss by at most 3.5e-5 and the step-4 loss by at most 2.2e-4 (ATEN_CPU_CAPABILITY=default
and/or ONEDNN_MAX_CPU_ISA=SSE41), and 2 threads instead of 1 changed step 4 by 2.0e-4.

Recorded with torch 2.13.0 (CPU), Pillow 13.0.0, OpenCV 5.0.0, numpy 2.4.6. If this fails after a
change that is MEANT to change training (a new default, another augmentation), re-record the
numbers from that run's metrics.csv and say so in the commit; if it fails after a refactor, the
refactor changed training."""

from __future__ import annotations

import csv

import pytest
import torch
from typer.testing import CliRunner

from ocrkit.cli.app import app

TINY = {
    "model.base_width": "4",
    "model.inner_channels": "16",
    "model.head_channels": "4",
    "data.train_size": "[64,64]",
    "data.eval_size": "[128,160]",
    "data.num_workers": "0",
    "train.batch_size": "4",
    "train.overlays": "0",
    "log.tensorboard": "false",
}

# metrics.csv of the recorded runs (8 train images at batch 4: 2 steps an epoch; poly decay over 4
# steps), per augmentation pipeline: the albumentations chain's numbers were recorded before the
# fused pipeline existed and still hold; the fused pipeline's were recorded when it became the
# default (2026-12-02)
GOLDEN_LOSS = {
    "albumentations": [7.83105, 8.01865, 8.38999, 7.47501],
    "fused": [7.67618, 9.01976, 7.47634, 6.94937],
}
LOSS_REL_TOL = [1e-4, 1e-4, 1e-4, 1e-3]
GOLDEN_LR = [0.007, 0.00540323, 0.00375121, 0.00201022]  # 0.007 * (1 - step / 4) ** 0.9
GOLDEN_FINAL_HMEAN = 0.0  # 4 steps of a width-4 model find no box yet; pinned all the same


@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("pipeline", ["albumentations", "fused"])
def test_a_tiny_training_run_logs_the_recorded_numbers(synth, tmp_path, one_thread, pipeline):
    args = ["train", "--data", synth / "train", "--val-data", synth / "val", "--device", "cpu", "--quiet"]
    args += ["--epochs", 2, "--name", "golden", "--set", f"log.dir={tmp_path}"]
    for key, value in {**TINY, "data.augment.pipeline": pipeline}.items():
        args += ["--set", f"{key}={value}"]
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output

    with open(tmp_path / "train" / "golden" / "metrics.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    logged: dict[str, list[tuple[int, float]]] = {}
    for row in rows:
        logged.setdefault(row["tag"], []).append((int(row["step"]), float(row["value"])))
    assert [step for step, _ in logged["train/loss"]] == [1, 2, 3, 4]
    assert [step for step, _ in logged["val/hmean"]] == [2, 4]  # validated after each epoch
    losses = [value for _, value in logged["train/loss"]]
    golden = GOLDEN_LOSS[pipeline]
    for step, (got, want, rel) in enumerate(zip(losses, golden, LOSS_REL_TOL, strict=True), start=1):
        assert got == pytest.approx(want, rel=rel), f"train/loss at step {step}: {losses} != {golden}"
    assert [value for _, value in logged["train/lr"]] == pytest.approx(GOLDEN_LR, rel=1e-4)
    assert logged["val/hmean"][-1][1] == pytest.approx(GOLDEN_FINAL_HMEAN, rel=1e-4, abs=1e-6)

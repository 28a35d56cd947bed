"""Two processes on CPU (gloo) under torchrun, end to end: training, equivalence with one process,
failures that stop every rank without a hang, kill and resume.

Each run is a real torchrun job (``python -m ocrkit train --devices 2`` or torchrun on
``ddp_entry.py``, which plants one fault in one rank); a tiny model on 64x64 crops keeps a run
to ~15 s here. One reference job is shared by the tests that compare against it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from conftest import MODEL_W4, run, set_args

ENTRY = Path(__file__).with_name("ddp_entry.py")
JOB_TIMEOUT_S = 240  # far above a healthy run; a hang fails the test instead of the suite

# 16 training images: 2 ranks x batch 1 = 8 optimizer steps per epoch, 2 epochs
TINY = (
    *MODEL_W4,
    "data.train_size=[64,64]",
    "data.eval_size=[128,160]",
    "data.num_workers=0",
    "train.overlays=1",
    "log.tensorboard=false",
    "health.overflow_probe=false",
    "train.epochs=2",
    "train.device=cpu",
)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    from ocrkit.core.data.synth import generate_synthetic

    root = tmp_path_factory.mktemp("ddp-data")
    generate_synthetic(root, 16, 4, size=(128, 160), seed=5, progress=False)
    return root


def train_args(data: Path, runs: Path, *settings: str, batch_size: int = 1) -> list[str]:
    return [
        "train",
        "--data",
        str(data / "train"),
        "--val-data",
        str(data / "val"),
        "--batch-size",
        str(batch_size),
        "-q",
        *set_args(*TINY, f"log.dir={runs}", *settings),
    ]


def ocrkit_devices(args: list[str], devices: int = 2) -> subprocess.CompletedProcess:
    """``python -m ocrkit <args> --devices N``: the launcher under test."""
    return _job([sys.executable, "-m", "ocrkit", *args, "--devices", str(devices)])


def torchrun_fault(args: list[str], fault: str | None = None, nproc: int = 2) -> subprocess.CompletedProcess:
    """torchrun on ddp_entry.py (the CLI, with ``fault`` planted in one rank)."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}"]
    env = {"OCRKIT_TEST_FAULT": fault} if fault else {}
    return _job([*command, str(ENTRY), *args], env)


def _job(command: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    start = time.monotonic()
    result = subprocess.run(command, capture_output=True, text=True, timeout=JOB_TIMEOUT_S, env=full_env)
    result.wall_s = time.monotonic() - start  # type: ignore[attr-defined]
    return result


def weights(checkpoint: Path) -> dict[str, torch.Tensor]:
    return torch.load(checkpoint, weights_only=True)["model"]


def trainable(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Parameters only: BatchNorm running statistics are rank 0's own in a distributed run."""
    return {k: v for k, v in state.items() if not k.endswith(("running_mean", "running_var", "num_batches_tracked"))}


def losses(run_dir: Path) -> list[float]:
    rows = (run_dir / "metrics.csv").read_text().splitlines()[1:]
    return [float(r.split(",")[3]) for r in rows if r.split(",")[2] == "train/loss"]


@pytest.fixture(scope="module")
def reference(data, tmp_path_factory) -> Path:
    """An uninterrupted two-process run (the launcher's own path)."""
    runs = tmp_path_factory.mktemp("ddp-ref")
    result = ocrkit_devices(train_args(data, runs))
    assert result.returncode == 0, result.stderr[-3000:]
    return runs / "train" / "exp"


def test_two_processes_train_validate_and_checkpoint_once(reference):
    files = {p.name for p in reference.iterdir()}
    assert {"last.pt", "best.pt", "config.toml", "metrics.csv", "health.json", "val"} <= files
    state = torch.load(reference / "last.pt", weights_only=True)
    assert state["train_state"]["world_size"] == 2
    assert state["train_state"]["step"] == 16  # 16 images / (2 ranks x batch 1) x 2 epochs
    steps = [int(r.split(",")[0]) for r in (reference / "metrics.csv").read_text().splitlines()[1:]]
    assert steps == sorted(steps)  # one global step counter, logged once
    assert len(losses(reference)) == 16  # one row per step: only rank 0 logs
    validated = sorted(p.name for p in (reference / "val").iterdir())
    assert validated == ["step0000008", "step0000016"]
    outputs = reference / "val" / "step0000016"
    assert len(list(outputs.glob("res_*.txt"))) == 4  # every rank's images, written by rank 0
    assert len(list((outputs / "overlays").glob("*.png"))) == 1


def test_two_processes_equal_one_process_accumulating_the_same_global_batch(reference, data, tmp_path):
    """2 ranks x batch 1 against 1 process x batch 1 x 2 micro-batches: each optimizer step sees
    the same two samples (rank r takes every 2nd sample of the epoch's order), augmented alike,
    each normalised alone by BatchNorm. The parameters come out bit-identical: the all-reduce's
    (g0 + g1) / 2 and accumulation's g0 / 2 + g1 / 2 round alike for two terms. BatchNorm's running
    statistics differ (rank 0 tracked only its own samples), so they are not compared."""
    result = _job([sys.executable, "-m", "ocrkit", *train_args(data, tmp_path, "train.accumulate=2")])
    assert result.returncode == 0, result.stderr[-3000:]  # one thread, like each rank: same kernels
    single = tmp_path / "train" / "exp"
    assert losses(single) == losses(reference)
    one, two = trainable(weights(single / "last.pt")), trainable(weights(reference / "last.pt"))
    assert one.keys() == two.keys()
    for key in one:
        assert torch.equal(one[key], two[key]), key


def test_kill_one_rank_then_resume_continues_exactly(reference, data, tmp_path):
    """Rank 1 is SIGKILLed after step 11 (epoch 2; last.pt holds step 8): the job stops with a
    non-zero exit, last.pt stays loadable, and --resume with 2 processes ends with the weights of
    the uninterrupted run."""
    args = train_args(data, tmp_path)
    killed = torchrun_fault(args, "kill:1:11")
    assert killed.returncode != 0
    assert killed.wall_s < 120
    run_dir = tmp_path / "train" / "exp"
    assert torch.load(run_dir / "last.pt", weights_only=True)["train_state"]["step"] == 8
    refused = run("train", "--resume", str(run_dir), "-q", env={"OMP_NUM_THREADS": "1"})
    assert refused.exit_code != 0
    assert "trained with 2 processes and is resumed with 1" in refused.output
    resumed = ocrkit_devices(["train", "--resume", str(run_dir), "-q"])
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    state = torch.load(run_dir / "last.pt", weights_only=True)
    assert state["train_state"]["step"] == 16
    expected = weights(reference / "last.pt")
    for key, value in trainable(state["model"]).items():
        assert torch.equal(value, expected[key]), key
    assert losses(run_dir)[-5:] == losses(reference)[-5:]


def test_a_rank_that_raises_stops_every_rank_with_one_line(data, tmp_path):
    result = torchrun_fault(train_args(data, tmp_path), "raise:1:3")
    assert result.returncode != 0
    assert result.wall_s < 120
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert any("[rank 1]" in line and "planted fault" in line for line in errors), result.stderr[-3000:]


def test_a_hung_rank_is_a_timeout_error_not_a_hang(data, tmp_path):
    """Rank 1 sleeps after step 2; rank 0 waits at most dist.timeout_s at its next collective."""
    result = torchrun_fault(train_args(data, tmp_path, "dist.timeout_s=5"), "hang:1:2")
    assert result.returncode != 0
    assert result.wall_s < 90
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert any("[rank 0]" in line and "dist.timeout_s=5" in line for line in errors), result.stderr[-3000:]


def test_a_nonfinite_loss_on_one_rank_stops_all_with_one_diagnostic(data, tmp_path):
    result = torchrun_fault(train_args(data, tmp_path), "nan:1:2")
    assert result.returncode != 0
    run_dir = tmp_path / "train" / "exp"
    diagnostics = sorted(p.name for p in (run_dir / "diagnostics").iterdir())
    assert diagnostics == ["nonfinite_loss_step0000003.json", "nonfinite_loss_step0000003.pt"]
    body = json.loads((run_dir / "diagnostics" / diagnostics[0]).read_text())
    assert len(body["samples"]) == 1  # rank 1's micro-batch
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert any("[rank 0]" in line and "rank 1 met a non-finite loss at step 3" in line for line in errors)
    assert any("[rank 1]" in line and "non-finite loss at step 3" in line for line in errors)


def test_launcher_reports_the_failed_rank_and_its_exit_code(tmp_path):
    result = ocrkit_devices(["train", "--data", str(tmp_path / "missing"), "-q", *set_args(*TINY)])
    assert result.returncode == 2  # the ranks' InputError exit code, passed through
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert any("missing" in line for line in errors)
    assert errors[-1].startswith("error: rank ") and "exited with code 2" in errors[-1]
    assert "Traceback" not in result.stderr


@pytest.mark.slow  # make test-slow: keeps make test's time down; the agreement is also checked at every save
def test_mixed_precision_skips_the_same_steps_on_every_rank(data, tmp_path):
    """16-mixed with a loss scale far too high: the first steps overflow. DDP all-reduces the inf
    gradients, so every rank's scaler skips the same steps and halves alike; the weights the
    ranks hold stay identical (checked at each checkpoint, which would stop the run otherwise).
    With train.scale_lr the learning rate is doubled for 2 processes."""
    settings = ("train.precision=16-mixed", "train.scaler.init_scale=1e6", "health.action=warn", "train.scale_lr=true")
    result = ocrkit_devices(train_args(data, tmp_path, *settings, "train.epochs=1"))
    assert result.returncode == 0, result.stderr[-3000:]
    health = json.loads((tmp_path / "train" / "exp" / "health.json").read_text())
    assert 0 < health["skipped_steps"] < health["steps"] == 8, health
    rows = (tmp_path / "train" / "exp" / "metrics.csv").read_text().splitlines()
    assert [float(r.split(",")[3]) for r in rows if ",train/lr," in r][0] == 0.014  # then the schedule decays it


def mixed_size_eval_set(data: Path, root: Path) -> Path:
    """The 16 training images (128x160) and 3 of another size (96x128), so that batch canvases
    differ in size."""
    import shutil

    from ocrkit.core.data.synth import generate_synthetic

    generate_synthetic(root / "other", 3, 0, size=(96, 128), seed=9, progress=False)
    for part in ("images", "gts"):
        shutil.copytree(data / "train" / part, root / "set" / part)
        for path in (root / "other" / "train" / part).iterdir():
            shutil.copy(path, root / "set" / part / path.name.replace("synth_", "other_"))
    return root / "set"


def test_distributed_eval_equals_one_process_exactly(reference, data, tmp_path):
    """19 images in batches of 3 (7 batches; 4 on rank 0, 3 on rank 1), low thresholds so that the
    barely trained model detects many boxes: the metrics, every per-image file and the overlays'
    names equal a one-process evaluation's."""
    eval_set = mixed_size_eval_set(data, tmp_path)
    settings = set_args(
        "postprocess.thresh=0.3", "postprocess.box_thresh=0.0", "train.eval_batch_size=3", "train.overlays=2"
    )
    args = ["eval", "--checkpoint", str(reference / "last.pt"), "--data", str(eval_set), "--json", *settings]
    one = _job([sys.executable, "-m", "ocrkit", *args, "--out", str(tmp_path / "one")])
    two = torchrun_fault([*args, "--out", str(tmp_path / "two")])
    assert one.returncode == 0 and two.returncode == 0, two.stderr[-3000:]
    metrics_one = json.loads(one.stdout.strip().splitlines()[-1])
    assert json.loads(two.stdout.strip().splitlines()[-1]) == metrics_one  # printed once, by rank 0
    assert metrics_one["images"] == 19 and metrics_one["det_care"] > 100
    files = sorted(p.relative_to(tmp_path / "one") for p in (tmp_path / "one").rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(tmp_path / "two") for p in (tmp_path / "two").rglob("*") if p.is_file())
    for name in files:
        if name.suffix in (".txt", ".json"):
            assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes(), name


@pytest.mark.slow  # make test-slow: a 15-second budget plus start-up
def test_a_time_budget_is_planned_by_rank_0_and_followed_by_every_rank(data, tmp_path):
    """Each rank times its own steps; the ranks must still agree on where the schedule ends (one
    stopping early would leave the other waiting at a collective): rank 0's plan is broadcast.
    With gradient accumulation (no_sync on the first micro-batch of each step)."""
    settings = (
        "train.time_limit=0.25",
        "train.time_plan_steps=3",
        "train.epochs=50",
        "train.accumulate=2",
        "dist.timeout_s=60",
    )
    result = ocrkit_devices(train_args(data, tmp_path, *settings))
    assert result.returncode == 0, result.stderr[-3000:]
    state = torch.load(tmp_path / "train" / "exp" / "last.pt", weights_only=True)["train_state"]
    # the plan, or fewer steps where the steps ran slower than planned (the budget's early stop)
    assert state["planned_steps"] is not None and 3 < state["step"] <= state["planned_steps"] < 50 * 4

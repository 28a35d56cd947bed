"""Crash safety: a training process SIGKILLed anywhere resumes to the run it would have been.

Each scenario trains the tiny model 4 epochs on the ``synth`` set (2 optimizer steps an epoch,
validation and a checkpoint every epoch), kills it (and its DataLoader workers) with SIGKILL at a
chosen point, runs ``ocrkit train --resume`` until the end (possibly killed again), and checks:

- after every kill, ``last.pt`` (and ``best.pt``) is absent or a loadable checkpoint; when there
  is none yet, ``--resume`` says "nothing to resume" in one line and the run is started again;
- the final weights (``last.pt``, ``best.pt``) equal an uninterrupted run's bit for bit (CPU, one
  thread, fixed seed: the uninterrupted run is checked to be reproducible first, and to be the
  same with and without a loader worker);
- metrics.csv and TensorBoard hold every (step, tag) of the uninterrupted run exactly once, with
  the same values (wall-clock and store figures aside), steps only increasing, none twice;
- the store is left with no corrupt entry.

The kill points (crashkit.py): during an optimizer step, during validation (between its output
files), during a checkpoint write (temp file half written, complete but not renamed, renamed but
its directory not synced), during a store write (value file half written, or complete but not
indexed), and at random wall-clock delays. The default run kills 10 times: every phase, a resume
killed before its first step, a run killed before its first checkpoint, and a real ``python -m
ocrkit train`` process with its loader worker (about 70 s on 2 cores, 15 s of it the fork server
and the reference runs). The ``slow`` test draws 24 scenarios from a seeded RNG, a third of them
killed again while resuming: 30 kills, about 2 min.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("tensorboard")
if not hasattr(os, "fork") or not hasattr(os, "killpg"):
    pytest.skip("the kill tests need fork and process groups (POSIX)", allow_module_level=True)

from crashkit import KILLED, ForkServer  # noqa: E402
from runkit import (  # noqa: E402
    EPOCHS,
    ONE_THREAD,
    STEPS,
    Reference,
    assert_same_run,
    assert_store_sound,
    one_line_error,
    record,
    resume_args,
    shared_reference,
    shared_server,
    tensorboard_scalars,
    train_settings,
)

from ocrkit.core.engine.checkpoint import load_checkpoint  # noqa: E402
from ocrkit.core.engine.logger import read_metrics  # noqa: E402


@pytest.fixture(scope="module")
def server() -> ForkServer:
    return shared_server()


@pytest.fixture(scope="module")
def reference(server: ForkServer, synth: Path, tmp_path_factory) -> Reference:
    return shared_reference(server, synth, tmp_path_factory.mktemp("reference"))


# ---------------------------------------------------------------- one scenario


@dataclass
class Outcome:
    kills: int = 0
    before_first_checkpoint: int = 0
    resumed_from: list[int] = field(default_factory=list)  # the checkpoint step of each resume
    notes: list[str] = field(default_factory=list)


def after_kill(run_dir: Path) -> int | None:
    """Check what a kill left: a loadable checkpoint or none. The step it resumes from."""
    step = None
    for name in ("last.pt", "best.pt"):
        if (run_dir / name).exists():
            state = load_checkpoint(run_dir / name)  # never torn: InputError would fail the test
            if name == "last.pt":
                step = int(state["train_state"]["step"])
    read_metrics(run_dir / "metrics.csv")  # a torn last line is dropped, not an error
    return step


def run_scenario(
    server: ForkServer, synth: Path, root: Path, workers: int, kills: list[dict[str, Any]], reference: Reference
) -> Outcome:
    """Train with the kills in turn (each in the next command: the first run, then each resume),
    then resume to the end and compare with the reference."""
    cache, runs = root / "cache", root / "runs"
    root.mkdir(parents=True, exist_ok=True)
    outcome = Outcome()
    run_dir: Path | None = None
    finished = False
    for index, kill in enumerate([*kills, None]):
        log = root / f"command{index}.log"
        if run_dir is None:
            name = f"run{index}"
            args = train_settings(synth, cache, runs, workers) + ["--name", name]
            run_dir = runs / "train" / name
        else:
            args = resume_args(run_dir)
        point = kill if kill and "phase" in kill else None
        delay = kill.get("after_s") if kill else None
        code = server.run(args, log, kill=point, kill_after_s=delay)
        if code == 0:
            finished = True
            if kill is not None:
                outcome.notes.append(f"{kill}: not reached, the command finished")
            break
        assert code == KILLED, f"{kill}: exit {code}\n{log.read_text()[-3000:]}"
        outcome.kills += 1
        step = after_kill(run_dir)
        if step is None:  # killed before the first checkpoint: nothing to resume
            outcome.before_first_checkpoint += 1
            code = server.run(resume_args(run_dir), root / f"command{index}-resume.log")
            assert code == 2
            one_line_error(root / f"command{index}-resume.log", "nothing to resume")
            run_dir = None  # the user starts it again
        else:
            outcome.resumed_from.append(step)
    assert finished and run_dir is not None
    assert not list(run_dir.glob(".*.tmp")), "a killed writer's temp file survived the resume"
    assert_same_run(record(run_dir), reference.run)
    assert_store_sound(cache)
    return outcome


# ---------------------------------------------------------------- the sample (default suite)

SAMPLE = [
    (1, [{"phase": "step", "nth": 5, "variant": "after"}, {"phase": "step", "nth": 1, "variant": "before"}]),
    (0, [{"phase": "validation", "nth": 8}]),
    (1, [{"phase": "checkpoint", "nth": 3, "variant": "torn"}]),
    (0, [{"phase": "store", "nth": 10, "variant": "torn"}]),
    (1, [{"phase": "checkpoint", "nth": 5, "variant": "renamed"}]),
]


@pytest.mark.parametrize(("workers", "kills"), SAMPLE, ids=["step", "validation", "checkpoint", "store", "renamed"])
def test_killed_run_resumes_to_the_uninterrupted_run(server, synth, reference, tmp_path, workers, kills):
    outcome = run_scenario(server, synth, tmp_path, workers, kills, reference)
    assert outcome.kills == len(kills), outcome.notes


def test_resume_drops_what_was_logged_after_the_checkpoint(server, synth, reference, tmp_path):
    """Killed at step 5 (the checkpoint is step 4's, metrics.csv has step 5 logged or not), then the
    resume killed before its first step: nothing past step 4 is left, in either sink."""
    args = train_settings(synth, tmp_path / "cache", tmp_path / "runs", 0) + ["--name", "exp"]
    run_dir = tmp_path / "runs" / "train" / "exp"
    assert server.run(args, tmp_path / "a.log", kill={"phase": "validation", "nth": 11}) == KILLED
    assert int(load_checkpoint(run_dir / "last.pt")["train_state"]["step"]) == 4
    assert max(int(r["step"]) for r in read_metrics(run_dir / "metrics.csv")) > 4  # step 6's validation started
    kill = {"phase": "step", "nth": 1, "variant": "before"}
    assert server.run(resume_args(run_dir), tmp_path / "b.log", kill=kill) == KILLED
    assert max(int(r["step"]) for r in read_metrics(run_dir / "metrics.csv")) == 4
    assert max(step for step, _ in tensorboard_scalars(run_dir / "tb")) == 4
    assert not list(run_dir.glob(".*.tmp"))
    assert server.run(resume_args(run_dir), tmp_path / "c.log") == 0
    assert_same_run(record(run_dir), reference.run)


def test_nothing_to_resume_before_the_first_checkpoint(server, synth, tmp_path):
    args = train_settings(synth, tmp_path / "cache", tmp_path / "runs", 0) + ["--name", "exp"]
    run_dir = tmp_path / "runs" / "train" / "exp"
    assert server.run(args, tmp_path / "a.log", kill={"phase": "step", "nth": 2}) == KILLED
    assert not (run_dir / "last.pt").exists()
    assert server.run(resume_args(run_dir), tmp_path / "b.log") == 2
    one_line_error(tmp_path / "b.log", "nothing to resume: checkpoint not found (the run stopped before its first")


def test_real_process_killed_after_its_first_checkpoint_resumes(synth, reference, tmp_path):
    """The same with `python -m ocrkit train` itself (no fork server): killed (with its worker) a
    seeded random 0-1.5 s after its first last.pt appeared, resumed by a second real process."""
    env = {**os.environ, **ONE_THREAD}
    run_dir = tmp_path / "runs" / "train" / "exp"
    args = [sys.executable, "-m", "ocrkit", *train_settings(synth, tmp_path / "cache", tmp_path / "runs", 1)]
    with open(tmp_path / "a.log", "w") as log:
        proc = subprocess.Popen(args, stdout=log, stderr=log, env=env, start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while not (run_dir / "last.pt").exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(random.Random(7).uniform(0.0, 1.5))
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        code = proc.wait()
    assert code == KILLED, (tmp_path / "a.log").read_text()
    load_checkpoint(run_dir / "last.pt")
    resume = [sys.executable, "-m", "ocrkit", *resume_args(run_dir)]
    done = subprocess.run(resume, capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr
    assert_same_run(record(run_dir), reference.run)
    assert_store_sound(tmp_path / "cache")


# ---------------------------------------------------------------- all of it (slow)

PHASES = {  # phase -> (variants, largest n that a fresh run reaches)
    "step": (["before", "after"], STEPS),
    "validation": ([None], 5 * EPOCHS),  # 4 images + metrics.json per validation
    "checkpoint": (["torn", "written", "renamed"], EPOCHS + 1),  # last.pt every epoch, best.pt once
    "store": (["torn", "unrecorded"], 8),  # the first epoch's 8 images (in the worker with one)
}


def draw_scenarios(n: int, seed: int, run_seconds: float) -> list[tuple[int, list[dict[str, Any]]]]:
    rng = random.Random(seed)
    scenarios = []
    for index in range(n):
        kills: list[dict[str, Any]] = []
        for _ in range(2 if index % 3 == 0 else 1):  # every third scenario is killed again on resume
            phase = rng.choice([*PHASES, "wall-clock"])
            if phase == "wall-clock":
                kills.append({"after_s": round(rng.uniform(0.2, 0.9 * run_seconds), 2)})
            else:
                variants, most = PHASES[phase]
                # a resumed run does less: kill it early
                nth = rng.randint(1, most if not kills else max(1, most // 4))
                kills.append({"phase": phase, "nth": nth, "variant": rng.choice(variants)})
        scenarios.append((rng.randint(0, 1), kills))
    return scenarios


@pytest.mark.slow
def test_24_random_kill_scenarios(server, synth, reference, tmp_path):
    total = Outcome()
    for index, (workers, kills) in enumerate(draw_scenarios(24, seed=2024, run_seconds=reference.seconds)):
        outcome = run_scenario(server, synth, tmp_path / f"s{index}", workers, kills, reference)
        total.kills += outcome.kills
        total.before_first_checkpoint += outcome.before_first_checkpoint
        total.resumed_from += outcome.resumed_from
        total.notes += outcome.notes
    print(
        f"\n{total.kills} kills survived ({total.before_first_checkpoint} before the first checkpoint), "
        f"resumed from steps {sorted(total.resumed_from)}; all final weights and logs equal; notes: {total.notes}"
    )
    assert total.kills >= 20

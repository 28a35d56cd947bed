"""What the crash and store-fault tests share: the tiny training command, what a finished run
leaves (weights, metrics.csv, TensorBoard), its comparison with an uninterrupted run, and one fork
server (crashkit.py) and one reference run per test session, whichever test module asks first.

Not a conftest: test files import ``from conftest import ...`` lazily, and a second conftest
module would shadow tests/conftest.py there.
"""

from __future__ import annotations

import atexit
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from crashkit import ForkServer

from ocrkit.core.engine.checkpoint import load_checkpoint
from ocrkit.core.engine.logger import read_metrics

EPOCHS = 4
STEPS = 8  # 8 training images (the synth fixture), batch 4: 2 steps an epoch
ONE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}  # CPU results bit-reproducible
# figures of the wall clock and of the store's state, which an interrupted run rightly differs in
UNSTABLE = ("time/", "cache/", "train/img_per_s", "profile/")


def train_settings(synth: Path, cache: Path, runs: Path, workers: int, *extra: str) -> list[str]:
    """``ocrkit train`` of the width-4 model on ``synth``: 4 epochs, validation and a checkpoint
    every epoch, TensorBoard on; ``extra``: more ``--set`` values."""
    settings = [
        "model.base_width=4",
        "model.inner_channels=16",
        "model.head_channels=4",
        "data.train_size=[64,64]",
        "data.eval_size=[128,160]",
        "train.batch_size=4",
        "train.overlays=0",
        "train.val_every=1",
        "train.checkpoint_every=1",
        "postprocess.max_candidates=20",  # an untrained model's map has thousands of blobs
        "log.tensorboard=true",
        f"data.num_workers={workers}",
        f"cache.dir={cache}",
        f"log.dir={runs}",
        *extra,
    ]
    data = ["--data", str(synth / "train"), "--val-data", str(synth / "val")]
    return ["train", *data, "--epochs", str(EPOCHS), "--device", "cpu", "--quiet"] + [
        arg for s in settings for arg in ("--set", s)
    ]


def resume_args(run_dir: Path) -> list[str]:
    return ["train", "--resume", str(run_dir), "--device", "cpu", "--quiet"]


@dataclass
class RunRecord:
    weights: dict[str, torch.Tensor]
    best_weights: dict[str, torch.Tensor]
    metrics: dict[tuple[int, str], str]
    tensorboard: dict[tuple[int, str], float]


def tensorboard_scalars(tb_dir: Path) -> dict[tuple[int, str], float]:
    """(step, tag) -> value as TensorBoard shows it (purges applied), refusing a step twice."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(tb_dir), size_guidance={"scalars": 0})
    events.Reload()
    out = {}
    for tag in events.Tags()["scalars"]:
        steps = [e.step for e in events.Scalars(tag)]
        assert steps == sorted(set(steps)), f"TensorBoard {tag}: steps {steps} repeat or go back"
        out.update({(e.step, tag): e.value for e in events.Scalars(tag)})
    return out


def metrics_rows(path: Path) -> dict[tuple[int, str], str]:
    """metrics.csv as (step, tag) -> value, refusing a (step, tag) twice or a step going back."""
    rows = read_metrics(path)
    keys = [(int(r["step"]), r["tag"]) for r in rows]
    twice = sorted({k for k in keys if keys.count(k) > 1})
    assert not twice, f"metrics.csv holds these (step, tag) twice: {twice[:5]}"
    assert [k[0] for k in keys] == sorted(k[0] for k in keys), "metrics.csv steps go back"
    return {(int(r["step"]), r["tag"]): r["value"] for r in rows}


def record(run_dir: Path) -> RunRecord:
    return RunRecord(
        load_checkpoint(run_dir / "last.pt")["model"],
        load_checkpoint(run_dir / "best.pt")["model"],
        metrics_rows(run_dir / "metrics.csv"),
        tensorboard_scalars(run_dir / "tb"),
    )


def _stable(values: dict[tuple[int, str], Any]) -> dict[tuple[int, str], Any]:
    return {k: v for k, v in values.items() if not k[1].startswith(UNSTABLE)}


def _without(values: dict[tuple[int, str], Any], prefixes: tuple[str, ...]) -> dict[tuple[int, str], Any]:
    return {k: v for k, v in values.items() if not k[1].startswith(prefixes)} if prefixes else values


def assert_same_run(run: RunRecord, reference: RunRecord, without: tuple[str, ...] = ()) -> None:
    """Weights bit for bit; every (step, tag) once in both sinks, the same values (wall-clock and
    store figures aside), and none past the last step. ``without``: tag prefixes a run rightly
    lacks (``cache/`` when it ran without a store)."""
    for name, got, want in (
        ("last.pt", run.weights, reference.weights),
        ("best.pt", run.best_weights, reference.best_weights),
    ):
        differ = [k for k in want if not torch.equal(got[k], want[k])]
        assert not differ, f"{name}: {len(differ)} tensors differ from the uninterrupted run, e.g. {differ[:3]}"
    for sink, got_values, want_values in (
        ("metrics.csv", run.metrics, reference.metrics),
        ("TensorBoard", run.tensorboard, reference.tensorboard),
    ):
        got_values, want_values = _without(got_values, without), _without(want_values, without)
        assert set(got_values) == set(want_values), f"{sink}: (step, tag) set differs"
        assert _stable(got_values) == _stable(want_values), f"{sink}: values differ"
    assert max(step for step, _ in run.metrics) == STEPS


def assert_store_sound(cache: Path) -> None:
    """Every entry of the store under ``cache`` passes `cache validate --full`: no corrupt,
    stale or mismatched entry."""
    from conftest import new_store
    from ocrkit.core.data.store_commands import validate

    report = validate(new_store(cache / "store"), None, fix=False, progress=False)
    assert report.bad == 0, report


def one_line_error(log: Path, words: str) -> None:
    lines = [line for line in log.read_text().splitlines() if line.strip()]
    assert len(lines) == 1 and words in lines[0] and "Traceback" not in lines[0], lines


# ---------------------------------------------------------------- one server and reference per session

_shared: dict[str, Any] = {}


def shared_server() -> ForkServer:
    if "server" not in _shared:
        server = ForkServer(ONE_THREAD)
        atexit.register(server.close)
        _shared["server"] = server
    return _shared["server"]


@dataclass
class Reference:
    run: RunRecord
    seconds: float  # an uninterrupted run's wall time, fork to exit


def shared_reference(server: ForkServer, synth: Path, root: Path) -> Reference:
    """An uninterrupted run without loader workers; a second one with a worker must equal it
    (bit-reproducible, and the same with and without workers)."""
    if "reference" not in _shared:
        records, seconds = [], 0.0
        for workers in (0, 1):
            start = time.monotonic()
            args = train_settings(synth, root / f"cache{workers}", root / "runs", workers) + ["--name", f"ref{workers}"]
            log = root / f"ref{workers}.log"
            assert server.run(args, log) == 0, log.read_text()
            seconds = max(seconds, time.monotonic() - start)
            records.append(record(root / "runs" / "train" / f"ref{workers}"))
        assert_same_run(records[1], records[0])
        _shared["reference"] = Reference(records[0], seconds)
    return _shared["reference"]

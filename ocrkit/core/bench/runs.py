"""What every training benchmark shares: its set-up (device, data, output directory), one
training variant run to completion, and the JSON document every bench writes."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ocrkit.core.bench.timing import machine_info
from ocrkit.core.config import OcrkitConfig
from ocrkit.core.data.sample import Sample
from ocrkit.core.data.train_data import TrainData
from ocrkit.core.engine.device import resolve_device
from ocrkit.core.engine.rundir import create_run_dir
from ocrkit.core.engine.train_job import plan_data
from ocrkit.core.engine.trainer import Trainer, TrainResult
from ocrkit.core.progress import TrainProgress


@dataclass
class BenchSetup:
    """What a training bench runs on."""

    cfg: OcrkitConfig  # with the data paths resolved (the built-in set by default)
    train: list[Sample]
    val: list[Sample]
    device: torch.device
    out_dir: Path  # runs/bench/<name>


def bench_setup(cfg: OcrkitConfig, name: str, quiet: bool) -> BenchSetup:
    """Resolve the device and the data (the built-in synthetic set by default) and make the
    bench's output directory."""
    device = resolve_device(cfg.train.device)
    plan = plan_data(cfg, overfit_batches=0, progress=not quiet)
    return BenchSetup(plan.cfg, plan.train, plan.val, device, create_run_dir(cfg.log.dir, "bench", name))


def train_variant(
    variant: OcrkitConfig,
    run_dir: Path,
    train: list[Sample],
    val: list[Sample],
    device: torch.device,
    progress: TrainProgress | None = None,
) -> TrainResult:
    """Train one compared variant to its end in ``run_dir``. Warnings are silenced: every
    variant would repeat the ones the CLI has already shown for the config."""
    run_dir.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return Trainer(variant, run_dir, TrainData(variant, train, val, device=device), device, progress=progress).fit()


def bench_document(benchmark: str, **fields: Any) -> dict[str, Any]:
    """The JSON every bench writes: its name, the machine it ran on (CPU model and features,
    GPU), then its own fields."""
    return {"benchmark": benchmark, "machine": machine_info(), **fields}

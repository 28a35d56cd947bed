"""``ocrkit bench ddp``: training throughput with 1, 2, ... processes on this machine.

Each variant is the real thing: ``ocrkit train --devices P`` in a subprocess (torchrun, DDP,
gloo on CPU or NCCL on GPUs), the same config, data and per-process batch (so P processes train
a P times larger global batch: the usual way to scale out), a fixed number of optimizer steps,
no validation. Its figure is the median of the steps' global images per second after the first
few (loader start, allocator) from the run's own metrics.csv; variants alternate in order from
one repeat to the next so that machine drift falls on all alike. Scaling efficiency =
img/s with P processes / (P x img/s with one).

Threads: torchrun gives each process an equal share of the machine's cores (engine/launch.py);
one process keeps torch's default (all cores). The table says how many each variant had.
"""

from __future__ import annotations

import csv
import os
import statistics
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ocrkit.core.bench.runs import bench_document, bench_setup
from ocrkit.core.bench.timing import fixed_steps_variant
from ocrkit.core.config import OcrkitConfig, save_config
from ocrkit.core.errors import OcrkitError
from ocrkit.core.machine import available_cpus

WARMUP_STEPS = 3


@dataclass
class ProcessesResult:
    processes: int
    threads_per_process: int
    images_per_s: float  # global: every process's images, median over steps and repeats
    step_ms: float
    per_run_images_per_s: list[float] = field(default_factory=list)  # the median of each repeat
    efficiency: float = 1.0  # images_per_s / (processes x the one-process figure)


@dataclass
class DdpBench:
    steps: int
    repeats: int
    batch_size: int  # per process
    device: str
    results: list[ProcessesResult]


def threads_for(processes: int) -> int:
    """What each process gets: torch's default alone, the launcher's share with several."""
    if "OMP_NUM_THREADS" in os.environ:
        return int(os.environ["OMP_NUM_THREADS"])
    return available_cpus() if processes == 1 else max(1, available_cpus() // processes)


def run_variant(config_file: Path, processes: int, runs_dir: Path, name: str) -> list[float]:
    """One ``ocrkit train --devices P`` run; its steps' global img/s after the warm-up."""
    command = [
        sys.executable,
        "-m",
        "ocrkit",
        "train",
        "--config",
        str(config_file),
        "--devices",
        str(processes),
        "--name",
        name,
        "-q",
        "--set",
        f"log.dir={runs_dir}",
    ]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise OcrkitError(f"bench ddp: the {processes}-process run failed (exit {done.returncode}): {last}")
    with open(runs_dir / "train" / name / "metrics.csv", newline="") as f:
        rates = [float(row["value"]) for row in csv.DictReader(f) if row["tag"] == "train/img_per_s"]
    return rates[WARMUP_STEPS:]


def run_ddp_bench(cfg: OcrkitConfig, processes: list[int], steps: int, repeats: int, out_dir: Path) -> DdpBench:
    if steps <= WARMUP_STEPS:
        raise OcrkitError(f"--steps {steps}: needs more than the {WARMUP_STEPS} warm-up steps left out")
    variant = fixed_steps_variant(cfg, steps)
    variant.data.val = None  # throughput only: no validation pass in the timed runs
    config_file = out_dir / "config.toml"
    save_config(variant, config_file)
    rates: dict[int, list[float]] = {p: [] for p in processes}
    medians: dict[int, list[float]] = {p: [] for p in processes}
    for repeat in range(repeats):
        order = processes if repeat % 2 == 0 else list(reversed(processes))
        for p in order:
            run_rates = run_variant(config_file, p, out_dir, f"p{p}-r{repeat}")
            rates[p].extend(run_rates)
            medians[p].append(statistics.median(run_rates))
    batch = variant.train.batch_size * variant.train.accumulate
    results = []
    for p in processes:
        ips = statistics.median(rates[p])
        results.append(ProcessesResult(p, threads_for(p), ips, batch * p * 1000 / ips, medians[p]))
    base = next((r for r in results if r.processes == 1), None)
    for r in results:
        r.efficiency = r.images_per_s / (r.processes * base.images_per_s) if base else float("nan")
    return DdpBench(steps, repeats, variant.train.batch_size, cfg.train.device, results)


def ddp_bench_job(
    cfg: OcrkitConfig, processes: list[int], steps: int, repeats: int, name: str, quiet: bool
) -> tuple[DdpBench, Path]:
    if not processes or any(p < 1 for p in processes):
        raise OcrkitError(f"--processes {processes}: expected a list of counts of at least 1, e.g. 1,2")
    setup = bench_setup(cfg, name, quiet)  # the built-in data rendered once, before any variant
    return run_ddp_bench(setup.cfg, processes, steps, repeats, setup.out_dir), setup.out_dir


def results_document(bench: DdpBench, cfg: OcrkitConfig) -> dict:
    return bench_document(
        "ddp",
        train_size=list(cfg.data.train_size),
        model=cfg.model.model_dump(),
        precision=cfg.train.precision,
        result=asdict(bench),
    )

"""``ocrkit bench profile``: what ``train --profile`` costs, measured as a ratio.

The same short training (same seed, data order and steps) runs with the stage timer off and
on, alternating which goes first in each repeat so that machine drift falls on both alike.
Reported: the median step time of each (the first steps left out), their ratio, and whether
the two runs' losses were identical step for step (profiling must observe, never change).
"""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from ocrkit.core.bench.runs import bench_document, bench_setup, train_variant
from ocrkit.core.bench.timing import fixed_steps_variant
from ocrkit.core.config import OcrkitConfig
from ocrkit.core.data.sample import Sample
from ocrkit.core.engine.flops import device_peak, train_flops_per_image, utilisation
from ocrkit.core.engine.profiling import STAGES

WARMUP_STEPS = 2  # allocator, first loader fill


@dataclass
class ProfileBench:
    steps: int
    repeats: int
    off_step_ms: float
    on_step_ms: float
    overhead: float  # on / off - 1
    identical_losses: bool
    breakdown_ms: dict[str, float]  # the profiled runs' stages, ms per step (median over repeats)
    flops_per_image: float = 0.0  # the training step's, counted once (engine/flops.py)
    achieved_tflops: float = 0.0  # at the profile-off step rate, data wait included
    peak_tflops: float | None = None
    peak_source: str = ""
    mfu: float | None = None


def _one_run(
    cfg: OcrkitConfig, profile: bool, steps: int, train: list[Sample], device: torch.device, run_dir: Path
) -> tuple[list[float], list[float], dict[str, float]]:
    variant = fixed_steps_variant(cfg, steps)
    variant.train.profile = profile
    variant.train.profile_trace_steps = 0
    result = train_variant(variant, run_dir, train, [], device)
    step_ms = [variant.train.batch_size * variant.train.accumulate * 1000 / ips for ips in result.images_per_s]
    breakdown = (
        {stage: statistics.mean(epoch[stage] for epoch in result.profile) for stage in STAGES} if result.profile else {}
    )
    return step_ms[WARMUP_STEPS:], result.losses, breakdown


def run_profile_bench(
    cfg: OcrkitConfig, train: list[Sample], device: torch.device, steps: int, repeats: int, out_dir: Path
) -> ProfileBench:
    times: dict[bool, list[float]] = {False: [], True: []}
    losses: list[list[float]] = []
    breakdowns: list[dict[str, float]] = []
    for repeat in range(repeats):
        order = (False, True) if repeat % 2 == 0 else (True, False)
        for profile in order:
            step_ms, run_losses, breakdown = _one_run(
                cfg, profile, steps, train, device, out_dir / f"r{repeat}-{'on' if profile else 'off'}"
            )
            times[profile].extend(step_ms)
            losses.append(run_losses)
            if breakdown:
                breakdowns.append(breakdown)
    off, on = statistics.median(times[False]), statistics.median(times[True])
    breakdown = {stage: statistics.median(b[stage] for b in breakdowns) for stage in STAGES} if breakdowns else {}
    bench = ProfileBench(steps, repeats, off, on, on / off - 1, all(run == losses[0] for run in losses), breakdown)
    _add_utilisation(bench, cfg, device)
    return bench


def _add_utilisation(bench: ProfileBench, cfg: OcrkitConfig, device: torch.device) -> None:
    """Achieved TFLOP/s and MFU at the plain (profile off) step rate."""
    bench.flops_per_image = train_flops_per_image(cfg.model, cfg.data.train_size)
    images_per_s = cfg.train.batch_size * cfg.train.accumulate * 1000 / bench.off_step_ms
    peak = device_peak(device, cfg.train.precision)
    bench.achieved_tflops, bench.mfu = utilisation(bench.flops_per_image, images_per_s, peak)
    bench.peak_tflops, bench.peak_source = peak.tflops, peak.source


def results_document(bench: ProfileBench, cfg: OcrkitConfig) -> dict:
    return bench_document(
        "profile",
        target_overhead=0.02,
        train_size=list(cfg.data.train_size),
        batch_size=cfg.train.batch_size,
        result=asdict(bench),
    )


def profile_bench_job(cfg: OcrkitConfig, steps: int, repeats: int, name: str, quiet: bool) -> tuple[ProfileBench, Path]:
    setup = bench_setup(cfg, name, quiet)
    return run_profile_bench(setup.cfg, setup.train, setup.device, steps, repeats, setup.out_dir), setup.out_dir

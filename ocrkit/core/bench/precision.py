"""``ocrkit bench fp16-vs-fp32``: the same training run at each precision, side by side.

Every variant starts from the same initial weights (the trainer seeds before building the
model), sees the same data in the same order (data order and augmentation are functions of the
seed), trains the same number of optimizer steps under the same LR schedule, and is evaluated on
the same validation set. 32-true is the reference; a variant PASSes when it finished without a
health stop and its val H-mean is within the tolerance of the reference's.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from ocrkit.core.bench.runs import bench_document, bench_setup, train_variant
from ocrkit.core.bench.timing import PeakMemory, fixed_steps_variant
from ocrkit.core.config import OcrkitConfig, normalize_precision
from ocrkit.core.data.sample import Sample
from ocrkit.core.engine.device import resolve_device
from ocrkit.core.engine.flops import device_peak, train_flops_per_image, utilisation
from ocrkit.core.engine.health import HealthStop
from ocrkit.core.engine.probe import SKIP_RATIO, ProbeResult, probe_cache_dir, probe_precisions
from ocrkit.core.errors import OcrkitError
from ocrkit.core.progress import TrainProgress

REFERENCE = "32-true"
# Below this reference H-mean the run is too short for ΔH to say anything about precision.
MIN_REFERENCE_HMEAN = 0.1


@dataclass
class PrecisionRun:
    precision: str
    steps: int
    images_per_s: float | None  # median over optimizer steps after the first few, data wait included
    speedup: float | None  # images_per_s / the reference's
    step_images_per_s: float | None  # the same, timing the training step alone (no data wait)
    step_speedup: float | None
    peak_memory_mib: float | None
    memory_kind: str
    final_loss: float | None  # mean total loss over the last 10% of steps
    precision_: float | None  # val P ("precision" is the variant's name)
    recall: float | None
    hmean: float | None
    delta_hmean: float | None
    skipped_steps: int
    min_scale: float | None
    verdict: str  # REF | PASS | FAIL | INCONCLUSIVE (the reference learned too little) | SKIPPED (too slow here)
    reason: str
    run_dir: str
    tflops: float | None = None  # achieved at images_per_s (engine/flops.py)
    mfu: float | None = None  # of the peak for this precision, where it is known
    peak_tflops: float | None = None
    peak_source: str = ""

    def to_dict(self) -> dict:
        out = asdict(self)
        out["val_precision"] = out.pop("precision_")
        return out


def parse_precisions(text: str) -> list[str]:
    names = [normalize_precision(p.strip()) for p in text.split(",") if p.strip()]
    unknown = [n for n in names if n not in ("32-true", "16-mixed", "bf16-mixed")]
    if unknown:
        raise OcrkitError(f"--precisions: unknown {', '.join(unknown)}; expected 32-true, 16-mixed, bf16-mixed")
    if REFERENCE not in names:
        raise OcrkitError("--precisions must include 32-true: it is the reference every other mode is compared to")
    # the reference first, so the others can be compared with it as they finish
    return [REFERENCE] + [n for n in dict.fromkeys(names) if n != REFERENCE]


def run_precision_bench(
    cfg: OcrkitConfig,
    precisions: list[str],
    steps: int | None,
    train: list[Sample],
    val: list[Sample],
    device: torch.device,
    out_dir: Path,
    tolerance: float,
    progress_factory=None,
    skip: dict[str, str] | None = None,
) -> list[PrecisionRun]:
    """``skip``: modes not to train, with the reason (see ``too_slow``)."""
    if not val:
        raise OcrkitError("the benchmark needs a validation set: give --val-data (or data.val)")
    skip = skip or {}
    runs = [
        _skipped(p, skip[p])
        if p in skip
        else _train_one(cfg, p, steps, train, val, device, out_dir / p, progress_factory)
        for p in precisions
    ]
    _judge(runs, tolerance)
    add_utilisation(runs, cfg, device)
    return runs


def add_utilisation(runs: list[PrecisionRun], cfg: OcrkitConfig, device: torch.device) -> None:
    """Each trained run's TFLOP/s and MFU against its precision's peak (the FLOPs of a step are
    the same in every precision: counted once)."""
    trained = [r for r in runs if r.images_per_s]
    if not trained:
        return
    flops = train_flops_per_image(cfg.model, cfg.data.train_size)
    for run in trained:
        peak = device_peak(device, run.precision)
        assert run.images_per_s is not None
        run.tflops, run.mfu = utilisation(flops, run.images_per_s, peak)
        run.peak_tflops, run.peak_source = peak.tflops, peak.source


def bench_probe(cfg: OcrkitConfig, precisions: list[str]) -> ProbeResult:
    """The precision probe for the benchmarked modes on the benchmark's device (cached)."""
    device = resolve_device(cfg.train.device)
    return probe_precisions(
        cfg.model,
        cfg.train.batch_size,
        cfg.data.train_size,
        device,
        precisions,
        probe_cache_dir(cfg.cache),
        cfg.train.channels_last,
    )


def too_slow(probe: ProbeResult, precisions: list[str], ratio: float = SKIP_RATIO) -> dict[str, str]:
    """Modes the probe measured more than ``ratio`` x slower than 32-true (or could not run):
    training them for the benchmark's schedule would take hours for a known answer."""
    out = {}
    for mode in precisions:
        if mode == REFERENCE:
            continue
        timing, slowdown = probe.timings.get(mode), probe.slowdown(mode)
        if timing is not None and not timing.ok:
            out[mode] = f"the probe could not run {mode} here ({timing.error}); --force trains it anyway"
        elif slowdown is not None and slowdown > ratio:
            out[mode] = (
                f"the probe measured {mode} {slowdown:.1f}x slower than 32-true here (> {ratio:g}x); "
                "--force trains it anyway"
            )
    return out


def _skipped(precision: str, reason: str) -> PrecisionRun:
    return PrecisionRun(
        precision, 0, None, None, None, None, None, "", None, None, None, None, None, 0, None, "SKIPPED", reason, ""
    )


def _variant_config(cfg: OcrkitConfig, precision: str, steps: int | None) -> OcrkitConfig:
    variant = fixed_steps_variant(cfg, steps)
    variant.train.precision = precision
    variant.train.scaler.enabled = None  # auto: on for 16-mixed only
    variant.train.val_every = 10**9  # validate once, at the end
    return variant


def _train_one(cfg, precision, steps, train, val, device, run_dir: Path, progress_factory) -> PrecisionRun:
    variant = _variant_config(cfg, precision, steps)
    progress = progress_factory(precision) if progress_factory else None
    reason = ""
    memory = PeakMemory(device)
    with memory:
        try:
            result = train_variant(variant, run_dir, train, val, device, progress)
        except HealthStop as stop:
            result, reason = stop.result, f"health stop: {stop}"
    health = result.health
    assert health is not None  # the trainer sets it on every exit from fit()
    metrics = result.last_metrics
    return PrecisionRun(
        precision=precision,
        steps=result.state.step,
        images_per_s=_steady_median(result.images_per_s),
        speedup=None,
        step_images_per_s=_steady_median(result.step_images_per_s),
        step_speedup=None,
        peak_memory_mib=memory.mib,
        memory_kind=memory.kind,
        final_loss=_tail_mean(result.losses),
        precision_=metrics.precision if metrics else None,
        recall=metrics.recall if metrics else None,
        hmean=metrics.hmean if metrics else None,
        delta_hmean=None,
        skipped_steps=health.skipped_steps,
        min_scale=None if not result.loss_scaling or math.isinf(health.min_scale) else health.min_scale,
        verdict="",
        reason=reason,
        run_dir=str(run_dir),
    )


def _steady_median(values: list[float]) -> float | None:
    """Median img/s, leaving out the first steps (allocator, autotuning, first loader fill)."""
    if not values:
        return None
    warmup = min(5, len(values) // 5)
    return statistics.median(values[warmup:])


def _tail_mean(values: list[float]) -> float | None:
    if not values:
        return None
    tail = values[-max(1, len(values) // 10) :]
    return sum(tail) / len(tail)


def _judge(runs: list[PrecisionRun], tolerance: float) -> None:
    reference = runs[0]
    reference.verdict = "FAIL" if reference.reason else "REF"
    for run in runs:
        if reference.images_per_s and run.images_per_s:
            run.speedup = run.images_per_s / reference.images_per_s
        if reference.step_images_per_s and run.step_images_per_s:
            run.step_speedup = run.step_images_per_s / reference.step_images_per_s
        if reference.hmean is not None and run.hmean is not None:
            run.delta_hmean = run.hmean - reference.hmean
        if run is reference or run.verdict == "SKIPPED":
            continue
        if run.reason:
            run.verdict = "FAIL"
        elif run.delta_hmean is None or reference.hmean is None:  # one is set only from the other
            run.verdict, run.reason = "FAIL", "no validation result to compare"
        elif reference.hmean < MIN_REFERENCE_HMEAN:
            run.verdict = "INCONCLUSIVE"
            run.reason = (
                f"32-true reached only H {reference.hmean:.3f} in {reference.steps} steps: train longer to compare"
            )
        elif abs(run.delta_hmean) > tolerance:
            run.verdict = "FAIL"
            run.reason = f"|ΔH| {abs(run.delta_hmean):.4f} > tolerance {tolerance}"
        else:
            run.verdict = "PASS"


def precision_bench_job(
    cfg: OcrkitConfig,
    precisions: list[str],
    steps: int | None,
    tolerance: float,
    name: str,
    quiet: bool,
    skip: dict[str, str] | None = None,
) -> tuple[list[PrecisionRun], Path]:
    """Resolve data (the built-in synthetic set by default), device and output directory; run."""
    setup = bench_setup(cfg, name, quiet)

    def progress_factory(precision: str) -> TrainProgress:
        progress = TrainProgress(enabled=not quiet, log_every=cfg.train.log_every)
        progress.message(f"--- {precision} ---")
        return progress

    runs = run_precision_bench(
        setup.cfg,
        precisions,
        steps,
        setup.train,
        setup.val,
        setup.device,
        setup.out_dir,
        tolerance,
        progress_factory,
        skip,
    )
    return runs, setup.out_dir


def results_document(
    runs: list[PrecisionRun], cfg: OcrkitConfig, steps: int | None, tolerance: float, probe: ProbeResult | None = None
) -> dict:
    return bench_document(
        "fp16-vs-fp32",
        probe=probe.to_dict() if probe is not None else None,
        steps=steps,
        tolerance=tolerance,
        config={
            "model": cfg.model.model_dump(mode="json"),
            "train": cfg.train.model_dump(mode="json"),
            "data": cfg.data.model_dump(mode="json"),
        },
        results=[run.to_dict() for run in runs],
    )

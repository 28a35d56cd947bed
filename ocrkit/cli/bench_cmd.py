"""ocrkit bench maps | data | cache | fp16-vs-fp32 | profile."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from ocrkit.cli.common import ConfigOption, SetOption, out_console, resolve_config
from ocrkit.core.atomic import write_text_atomic

app = typer.Typer(help="Benchmarks: compared variants side by side in one process.", no_args_is_help=True)


def write_document(document: dict, *paths: Path | None) -> None:
    """The bench's JSON, atomically, to every path given (the run's own copy, --json)."""
    for path in paths:
        if path is not None:
            write_text_atomic(path, json.dumps(document, indent=2))
            out_console.print(f"wrote {path}")


@app.command("maps")
def maps(
    sample_dir: Annotated[Path | None, typer.Option(help="ICDAR dir for the sparse case (skipped if absent).")] = None,
    size: Annotated[tuple[int, int], typer.Option(help="Map size H W.")] = (640, 640),
    images: Annotated[int, typer.Option(min=1, help="Random layouts in the dense case.")] = 10,
    repeats: Annotated[int, typer.Option(min=1, help="Timed repeats (median reported).")] = 5,
    growth: Annotated[
        bool, typer.Option("--growth/--no-growth", help="Also sweep polygon count and image size.")
    ] = True,
    device_maps: Annotated[
        str | None,
        typer.Option(help="Also time the batched torch maps (data.label_maps=device) on this device: cpu, cuda."),
    ] = None,
    json_file: Annotated[Path | None, typer.Option("--json", help="Write the results here as JSON.")] = None,
    config: ConfigOption = None,
    set_: SetOption = None,
) -> None:
    """Label maps: production vs DB's own algorithm and the exact per-edge oracle (ms per image,
    max difference from the oracle); with --device-maps, the batched torch maps beside them.

    Cases: dense = 100 random rotated quads per image; sparse = the real ICDAR-2015 sample;
    many-vertex = curved 16-32-point polygons; growth with polygon count (10/100/1000) and image
    size (320/640/1280). Target: production at least 15x DB's algorithm on the dense case.
    """
    from ocrkit.core.bench.maps import results_as_dicts, run_maps_bench  # torch, numba: only here
    from ocrkit.core.bench.runs import bench_document
    from ocrkit.core.engine.device import resolve_device

    cfg = resolve_config(config, set_)
    device = resolve_device(device_maps) if device_maps else None
    results = run_maps_bench(sample_dir, size, images, repeats, cfg.maps, growth, device)
    table = Table(title=f"DB label maps at {size[0]}×{size[1]}, ms per image (median of {repeats})")
    columns = (
        "case",
        "images",
        "DB ms",
        "oracle ms",
        "ocrkit ms",
        "vs DB",
        "vs oracle",
        "max Δthresh",
        "masks equal",
        "DB's Δthresh",
    )
    for column in columns:
        table.add_column(column, justify="right")
    for r in results:
        table.add_row(
            r.case,
            str(r.images),
            f"{r.db_ms:.2f}",
            f"{r.oracle_ms:.2f}",
            f"{r.production_ms:.2f}",
            f"{r.speedup_vs_db:.1f}×",
            f"{r.speedup_vs_oracle:.1f}×",
            f"{r.max_thresh_diff:.1e}",
            str(r.binary_maps_identical),
            f"{r.db_max_thresh_diff:.1e}",
        )
    out_console.print(table)
    if device is not None:
        out_console.print(device_maps_table(results, repeats))
    write_document(bench_document("maps", results=results_as_dicts(results)), json_file)


def device_maps_table(results, repeats: int) -> Table:
    table = Table(title=f"batched torch maps on {results[0].device}, ms per image (median of {repeats})")
    for column in ("case", "ocrkit ms", "plan ms", "device ms", "vs ocrkit", "max Δthresh", "masks equal"):
        table.add_column(column, justify="right")
    for r in results:
        table.add_row(
            r.case,
            f"{r.production_ms:.2f}",
            f"{r.device_plan_ms:.2f}",
            f"{r.device_draw_ms:.2f}",
            f"{r.device_speedup:.2f}×",
            f"{r.device_max_thresh_diff:.1e}",
            str(r.device_masks_identical),
        )
    return table


@app.command("cache")
def cache(
    data: Annotated[
        str | None, typer.Option(help="Validation data (default: data.val, else the built-in set).")
    ] = None,
    repeats: Annotated[int, typer.Option(min=1, help="Timed repeats (median reported).")] = 3,
    full: Annotated[bool, typer.Option("--full/--data-only", help="Also time a full validation pass.")] = True,
    checkpoint: Annotated[Path | None, typer.Option(help="Model for the full pass (default: a fresh one).")] = None,
    json_file: Annotated[Path | None, typer.Option("--json", help="Write the results here as JSON.")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress output.")] = False,
    config: ConfigOption = None,
    set_: SetOption = None,
) -> None:
    """The store on the validation path: no store vs cold (empty) vs warm (filled).

    Targets: warm at least 6x faster than cold on the data path; cold at most 5% slower than no store.
    """
    from ocrkit.core.bench.cache import cache_bench_job  # torch, numba, diskcache: only here
    from ocrkit.core.bench.cache import results_document as cache_results_document

    rows, cfg, source = cache_bench_job(config, set_, data, repeats, full, checkpoint, quiet)
    table = Table(
        title=f"store on the validation path: {rows[0].images} images of {source} at eval size "
        f"{list(cfg.data.eval_size)}, seconds per epoch (median of {repeats})"
    )
    for column in (
        "scope",
        "no store",
        "cold",
        "warm",
        "warm speed-up vs cold",
        "cold overhead",
        "warm vs no store",
        "store MB",
    ):
        table.add_column(column, justify="right")
    for r in rows:
        table.add_row(
            r.scope,
            f"{r.none_s:.3f}",
            f"{r.cold_s:.3f}",
            f"{r.warm_s:.3f}",
            f"{r.warm_speedup:.2f}×",
            f"{r.cold_overhead:+.1%}",
            f"{r.warm_vs_none:.2f}×",
            f"{r.store_bytes / 1e6:.1f}",
        )
    out_console.print(table)
    out_console.print(
        f"once, outside the epochs: creating an empty store {rows[0].store_create_ms:.0f} ms, "
        f"opening it in a process {rows[0].store_open_ms:.0f} ms"
    )
    write_document(cache_results_document(rows, cfg, repeats, source), json_file)


@app.command("fp16-vs-fp32")
def fp16_vs_fp32(
    precisions: Annotated[
        str, typer.Option(help="Comma-separated; 32-true is the reference.")
    ] = "32-true,16-mixed,bf16-mixed",
    steps: Annotated[
        int | None, typer.Option(min=1, help="Optimizer steps per precision (default: the config's schedule).")
    ] = None,
    data: Annotated[str | None, typer.Option(help="Training data (default: the built-in synthetic set).")] = None,
    val_data: Annotated[str | None, typer.Option(help="Validation data every precision is scored on.")] = None,
    device: Annotated[str | None, typer.Option(help="cpu | cuda | auto.")] = None,
    tolerance: Annotated[float, typer.Option(min=0, help="Largest |ΔH| vs 32-true that passes.")] = 0.01,
    name: Annotated[str, typer.Option(help="Output under runs/bench/<name>.")] = "fp16-vs-fp32",
    json_file: Annotated[Path | None, typer.Option("--json", help="Write the results here as JSON.")] = None,
    strict: Annotated[bool, typer.Option("--strict", help="Exit 1 when any precision FAILs.")] = False,
    force: Annotated[
        bool, typer.Option("--force", help="Also train modes the probe measured more than 5x slower than 32-true.")
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No training progress output.")] = False,
    config: ConfigOption = None,
    set_: SetOption = None,
) -> None:
    """Train the same run at each precision (same weights, data order, seed, steps); compare speed and val H.

    First the precision probe times one training step per mode on this device; a mode measured more
    than 5x slower than 32-true is skipped (with the reason) unless --force.
    """
    from ocrkit.cli.tables import probe_table
    from ocrkit.core.bench.precision import (
        bench_probe,
        parse_precisions,
        precision_bench_job,
        results_document,
        too_slow,
    )

    names = parse_precisions(precisions)
    cfg = resolve_config(config, set_, data__train=data, data__val=val_data, train__device=device)
    probe = bench_probe(cfg, names)
    out_console.print(probe_table(probe))
    skip = {} if force else too_slow(probe, names)
    for mode, reason in skip.items():
        out_console.print(f"skipping {mode}: {reason}", soft_wrap=True)
    runs, out_dir = precision_bench_job(cfg, names, steps, tolerance, name, quiet, skip)
    out_console.print(precision_table(runs, tolerance))
    for run in runs:
        if run.reason:
            out_console.print(f"{run.precision}: {run.reason}", soft_wrap=True)
    write_document(results_document(runs, cfg, steps, tolerance, probe), out_dir / "results.json", json_file)
    if strict and any(run.verdict == "FAIL" for run in runs):
        raise typer.Exit(1)


def precision_table(runs, tolerance: float) -> Table:
    def num(value, fmt):
        return "—" if value is None else format(value, fmt)

    table = Table(title=f"precision vs 32-true (PASS: |ΔH| ≤ {tolerance} and no health stop)")
    for column in (
        "precision",
        "img/s",
        "speed-up",
        "step img/s",
        "step speed-up",
        "TFLOP/s",
        "MFU",
        "peak MiB",
        "final loss",
        "P",
        "R",
        "H",
        "ΔH",
        "skipped",
        "min scale",
        "verdict",
    ):
        table.add_column(column, justify="right")
    for r in runs:
        table.add_row(
            r.precision,
            num(r.images_per_s, ".2f"),
            num(r.speedup, ".2f") + ("×" if r.speedup else ""),
            num(r.step_images_per_s, ".2f"),
            num(r.step_speedup, ".2f") + ("×" if r.step_speedup else ""),
            num(r.tflops, ".3f"),
            num(r.mfu, ".1%"),
            num(r.peak_memory_mib, ".0f"),
            num(r.final_loss, ".4f"),
            num(r.precision_, ".4f"),
            num(r.recall, ".4f"),
            num(r.hmean, ".4f"),
            num(r.delta_hmean, "+.4f"),
            f"{r.skipped_steps}/{r.steps}",
            num(r.min_scale, "g"),
            r.verdict,
        )
    return table


@app.command("profile")
def profile(
    steps: Annotated[int, typer.Option(min=4, help="Optimizer steps per run.")] = 30,
    repeats: Annotated[int, typer.Option(min=1, help="Runs per variant (off and on alternate).")] = 3,
    name: Annotated[str, typer.Option(help="Output under runs/bench/<name>.")] = "profile",
    json_file: Annotated[Path | None, typer.Option("--json", help="Write the results here as JSON.")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress output.")] = False,
    config: ConfigOption = None,
    set_: SetOption = None,
) -> None:
    """What `train --profile` costs: the same training with the stage timer off and on.

    Target: at most 2% of step time. Also checks that both runs' losses are identical.
    """
    from ocrkit.core.bench.profile import profile_bench_job
    from ocrkit.core.bench.profile import results_document as profile_results_document

    cfg = resolve_config(config, set_)
    bench, out_dir = profile_bench_job(cfg, steps, repeats, name, quiet)
    table = Table(title=f"train --profile overhead: {steps} steps x {repeats} runs per variant, ms per step (median)")
    for column in ("profile off", "profile on", "overhead", "losses identical"):
        table.add_column(column, justify="right")
    table.add_row(
        f"{bench.off_step_ms:.1f}", f"{bench.on_step_ms:.1f}", f"{bench.overhead:+.2%}", str(bench.identical_losses)
    )
    out_console.print(table)
    mfu = f"{bench.mfu:.1%} of {bench.peak_tflops:.2f} TFLOP/s" if bench.mfu is not None else "no known peak"
    out_console.print(
        f"training step: {bench.flops_per_image / 1e9:.2f} GFLOP per image, {bench.achieved_tflops:.3f} TFLOP/s "
        f"achieved, MFU {mfu} ({bench.peak_source})",
        soft_wrap=True,
    )
    if bench.breakdown_ms:
        total = sum(bench.breakdown_ms.values())
        out_console.print(
            "profiled step: " + ", ".join(f"{k} {v:.1f} ms ({v / total:.0%})" for k, v in bench.breakdown_ms.items())
        )
    write_document(profile_results_document(bench, cfg), out_dir / "profile.json", json_file)


@app.command("data")
def data(
    sources: Annotated[str, typer.Option(help="Comma-separated: files, store, preload.")] = "files,store,preload",
    pipelines: Annotated[
        str, typer.Option(help="Comma-separated augmentation pipelines: albumentations, fused.")
    ] = "albumentations,fused",
    workers: Annotated[str, typer.Option(help="Comma-separated DataLoader worker counts.")] = "0,1,2",
    epoch_images: Annotated[int, typer.Option(min=1, help="Training samples in one timed loader epoch.")] = 96,
    repeats: Annotated[int, typer.Option(min=1, help="Epochs per variant (median reported).")] = 3,
    model_steps: Annotated[
        int, typer.Option(min=0, help="Training steps per worker count for the model's rate (0: skip).")
    ] = 8,
    stages: Annotated[bool, typer.Option("--stages/--no-stages", help="Time each stage of a sample.")] = True,
    name: Annotated[str, typer.Option(help="Output under runs/bench/<name>.")] = "data",
    json_file: Annotated[Path | None, typer.Option("--json", help="Write the results here as JSON.")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress output.")] = False,
    config: ConfigOption = None,
    set_: SetOption = None,
) -> None:
    """Where a training image's time goes, stage by stage; loader images/s per pipeline, source and
    worker count; beside the model's step rate, TFLOP/s and MFU.

    Shows whether data or compute is the bottleneck on this machine, for this config.
    """
    from ocrkit.core.bench.data import data_bench_job, parse_counts, parse_pipelines, parse_sources
    from ocrkit.core.bench.data import results_document as data_results_document

    cfg = resolve_config(config, set_)
    chosen, counts = parse_sources(sources), parse_counts(workers, "--workers")
    bench, out_dir = data_bench_job(
        cfg, chosen, counts, epoch_images, repeats, model_steps, name, quiet, tuple(parse_pipelines(pipelines)), stages
    )
    h, w = bench.train_size
    if bench.stages:
        out_console.print(stage_table(bench, repeats))
        out_console.print(bench.stage_speedup(), soft_wrap=True)
    maps = "maps from the store" if bench.maps_from_store else "maps made per sample (random augmentation)"
    table = Table(title=f"training data pipeline: batch {bench.batch_size} at {h}×{w}, {maps}; median of {repeats}")
    for column in ("pipeline", "source", "workers", "epoch img/s", "steady img/s", "first batch ms"):
        table.add_column(column, justify="right")
    for r in bench.loader:
        table.add_row(
            r.pipeline,
            r.source,
            str(r.workers),
            f"{r.epoch_images_per_s:.1f}",
            f"{r.images_per_s:.1f}",
            f"{r.first_batch_ms:.0f}",
        )
    out_console.print(table)
    if bench.model:
        out_console.print(model_table(bench, model_steps))
        out_console.print(bench.verdict(), soft_wrap=True)
    write_document(data_results_document(bench), out_dir / "data.json", json_file)


def stage_table(bench, repeats: int) -> Table:
    from ocrkit.core.bench.data import STAGES

    h, w = bench.train_size
    table = Table(
        title=f"one training image at {h}×{w}, ms per image on one core (median-time repeat of {repeats}); "
        f"'to device' on {bench.device}"
    )
    for column in ("pipeline", "source", *STAGES, "loader", "img/s per core"):
        table.add_column(column, justify="right")
    for row in bench.stages:
        stage_ms = [f"{row.ms_per_image[stage]:.2f}" for stage in STAGES]
        table.add_row(
            row.pipeline,
            row.source,
            *stage_ms,
            f"{row.loader_ms_per_image:.2f}",
            f"{row.images_per_core_s:.1f}",
        )
    return table


def model_table(bench, model_steps: int) -> Table:
    peak = f"{bench.peak_tflops:.2f} TFLOP/s" if bench.peak_tflops else "unknown"
    table = Table(
        title=f"the model on {bench.device}: {model_steps} training steps per worker count; "
        f"{bench.flops_per_image / 1e9:.2f} GFLOP per image, peak {peak} ({bench.peak_source})"
    )
    for column in ("workers", "step img/s", "train img/s", "waiting for data", "TFLOP/s", "MFU"):
        table.add_column(column, justify="right")
    for row in bench.model:
        table.add_row(
            str(row.workers),
            f"{row.step_images_per_s:.1f}",
            f"{row.train_images_per_s:.1f}",
            f"{row.data_wait_share:.0%}",
            f"{row.train_tflops:.3f}",
            f"{row.train_mfu:.1%}" if row.train_mfu is not None else "-",
        )
    return table


@app.command("ddp")
def ddp(
    processes: Annotated[str, typer.Option(help="Comma-separated process counts (one GPU each on CUDA).")] = "1,2",
    steps: Annotated[int, typer.Option(min=4, help="Optimizer steps per run.")] = 30,
    repeats: Annotated[int, typer.Option(min=1, help="Runs per process count (orders alternate).")] = 2,
    name: Annotated[str, typer.Option(help="Output under runs/bench/<name>.")] = "ddp",
    json_file: Annotated[Path | None, typer.Option("--json", help="Write the results here as JSON.")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress output.")] = False,
    config: ConfigOption = None,
    set_: SetOption = None,
) -> None:
    """Distributed training throughput: `ocrkit train --devices P` for each P, same per-process
    batch, global img/s and scaling efficiency against one process."""
    from ocrkit.core.bench.data import parse_counts
    from ocrkit.core.bench.ddp import ddp_bench_job
    from ocrkit.core.bench.ddp import results_document as ddp_results_document

    cfg = resolve_config(config, set_)
    bench, out_dir = ddp_bench_job(cfg, parse_counts(processes, "--processes", minimum=1), steps, repeats, name, quiet)
    table = Table(
        title=f"training with several processes: batch {bench.batch_size} per process, {steps} steps x {repeats} runs"
    )
    for column in ("processes", "threads each", "img/s (all)", "ms per step", "scaling efficiency", "per run img/s"):
        table.add_column(column, justify="right")
    for r in bench.results:
        table.add_row(
            str(r.processes),
            str(r.threads_per_process),
            f"{r.images_per_s:.1f}",
            f"{r.step_ms:.0f}",
            f"{r.efficiency:.0%}",
            ", ".join(f"{v:.1f}" for v in r.per_run_images_per_s),
        )
    out_console.print(table)
    write_document(ddp_results_document(bench, cfg), out_dir / "ddp.json", json_file)


@app.command("predict")
def predict(
    checkpoint: Annotated[Path, typer.Option(help="A trained checkpoint (detections shape post-processing's cost).")],
    images: Annotated[list[Path], typer.Argument(help="Image files or directories (e.g. ICDAR test images).")],
    batch_sizes: Annotated[str, typer.Option(help="Comma-separated batch sizes.")] = "1,4",
    repeats: Annotated[int, typer.Option(min=1, help="Timed passes over the images per variant.")] = 3,
    onnx: Annotated[bool, typer.Option("--onnx/--no-onnx", help="Also export and run with onnxruntime.")] = True,
    name: Annotated[str, typer.Option(help="Output under runs/bench/<name>.")] = "predict",
    json_file: Annotated[Path | None, typer.Option("--json", help="Write the results here as JSON.")] = None,
    config: ConfigOption = None,
    set_: SetOption = None,
) -> None:
    """predict end to end: images/s and latency percentiles, PyTorch vs onnxruntime, batch 1 and
    batched, with the time split into decode, resize, model and post-processing."""
    from ocrkit.core.bench.data import parse_counts
    from ocrkit.core.bench.predict import predict_bench_job, slowest_stage
    from ocrkit.core.bench.predict import results_document as predict_results_document
    from ocrkit.core.engine.rundir import create_run_dir

    cfg = resolve_config(config, set_)
    out_dir = create_run_dir(cfg.log.dir, "bench", name)
    sizes = parse_counts(batch_sizes, "--batch-sizes", minimum=1)
    bench = predict_bench_job(checkpoint, images, sizes, repeats, out_dir, config, set_, onnx)
    h, w = bench.eval_size
    table = Table(title=f"predict on {bench.images} images at eval size {h}×{w}, {bench.device}; median of {repeats}")
    columns = ("runtime", "precision", "batch", "img/s", "pipelined img/s", "p50 ms", "p90 ms", "p99 ms")
    for column in (*columns, "decode", "resize", "model", "post", "boxes/img"):
        table.add_column(column, justify="right")
    for v in bench.variants:
        stages = v.stage_ms_per_image
        table.add_row(
            v.runtime,
            v.precision,
            str(v.batch_size),
            f"{v.images_per_s:.2f}",
            f"{v.pipelined_images_per_s:.2f}",
            *(f"{v.latency_ms[p]:.0f}" for p in ("p50", "p90", "p99")),
            *(f"{stages[s]:.1f}" for s in ("decode", "resize", "model", "post")),
            f"{v.detections_per_image:.1f}",
        )
    out_console.print(table)
    out_console.print("stage columns: ms per image; " + "; ".join(bench.notes), soft_wrap=True)
    stage, share = slowest_stage(bench.variants[0])
    out_console.print(
        f"slowest stage ({bench.variants[0].runtime}, batch {bench.variants[0].batch_size}): {stage} ({share:.0%})"
    )
    write_document(predict_results_document(bench), out_dir / "predict.json", json_file)

"""``ocrkit bench predict``: what ``predict`` costs end to end, per stage, per runtime.

Variants: the PyTorch model (eager) and the same checkpoint exported to ONNX and run by
onnxruntime, at batch 1 and batched, in fp32 and (PyTorch) in the fastest mixed mode the
precision probe finds faster than fp32 on this device, if any.

Two measurements per variant, over the same images after one warm-up pass:

- **staged**: decode, resize, model, post-processing run one after another for each batch and
  are timed apart (the model's time includes normalisation and, on a GPU, the copy back of the
  probability map, which waits for the device). A batch's latency is the sum; with batch 1 it is
  the latency of one image. Percentiles p50/p90/p99 are over batches.
- **pipelined**: the real ``predict_batches`` (the next batch is decoded and resized on a helper
  thread while the model runs), timed as a whole: images per second.

No store: every image is decoded and resized each time, as for new images.
"""

from __future__ import annotations

import contextlib
import statistics
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ocrkit.core.bench.runs import bench_document
from ocrkit.core.config import OcrkitConfig
from ocrkit.core.data.image import load_image, resize_content
from ocrkit.core.engine.inference import batch_from_contents, predict_batches
from ocrkit.core.engine.precision import AUTOCAST_DTYPES
from ocrkit.core.geometry.postprocess import detect_text
from ocrkit.core.geometry.transform import plan_resize

STAGES = ("decode", "resize", "model", "post")


@dataclass
class PredictVariant:
    runtime: str  # torch | onnxruntime
    precision: str
    batch_size: int
    images_per_s: float  # staged: the stages one after another
    pipelined_images_per_s: float  # predict_batches, decoding overlapped with the model
    latency_ms: dict[str, float]  # p50, p90, p99 of a batch (one image at batch 1)
    stage_ms_per_image: dict[str, float]  # median over passes
    detections_per_image: float


@dataclass
class PredictBench:
    images: int
    image_sizes: list[list[int]]
    eval_size: list[int]
    repeats: int
    device: str
    variants: list[PredictVariant] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _autocast(precision: str, device: torch.device) -> contextlib.AbstractContextManager:
    dtype = AUTOCAST_DTYPES.get(precision)
    return torch.autocast(device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()


@torch.inference_mode()
def staged_pass(
    model: nn.Module, paths: Sequence[Path], cfg: OcrkitConfig, device: torch.device, batch_size: int, precision: str
) -> tuple[dict[str, float], list[float], int]:
    """One pass over ``paths``: seconds per stage (summed), each batch's latency, detections."""
    totals = dict.fromkeys(STAGES, 0.0)
    latencies, found = [], 0
    data, post = cfg.data, cfg.postprocess
    for start in range(0, len(paths), batch_size):
        chunk = paths[start : start + batch_size]
        t0 = time.perf_counter()
        images = [load_image(p) for p in chunk]
        t1 = time.perf_counter()
        transforms = [plan_resize(im.shape[:2], data.eval_size, data.keep_ratio, data.pad_multiple) for im in images]
        contents = [
            np.ascontiguousarray(resize_content(im, t).transpose(2, 0, 1))
            for im, t in zip(images, transforms, strict=True)
        ]
        batch = batch_from_contents(chunk, list(zip(contents, transforms, strict=True)))
        t2 = time.perf_counter()
        with _autocast(precision, device):
            logits = model(batch.model_input(data, device))["prob_logits"]
        probs = torch.sigmoid(logits.float())[:, 0].cpu().numpy()  # waits for the device
        _sync(device)
        t3 = time.perf_counter()
        found += sum(len(detect_text(p, t, post)) for p, t in zip(probs, transforms, strict=True))
        t4 = time.perf_counter()
        for stage, seconds in zip(STAGES, (t1 - t0, t2 - t1, t3 - t2, t4 - t3), strict=True):
            totals[stage] += seconds
        latencies.append(t4 - t0)
    return totals, latencies, found


def pipelined_pass(
    model: nn.Module, paths: Sequence[Path], cfg: OcrkitConfig, device: torch.device, batch_size: int, precision: str
) -> float:
    """Seconds for ``predict_batches`` over ``paths`` (the production path)."""
    start = time.perf_counter()
    with _autocast(precision, device):
        for _ in predict_batches(model, paths, cfg.data, cfg.postprocess, device, batch_size):
            pass
    _sync(device)
    return time.perf_counter() - start


def measure_variant(
    runtime: str,
    model: nn.Module,
    paths: Sequence[Path],
    cfg: OcrkitConfig,
    device: torch.device,
    batch_size: int,
    precision: str,
    repeats: int,
) -> PredictVariant:
    staged_pass(model, paths[: max(batch_size, 2)], cfg, device, batch_size, precision)  # warm-up
    stage_rows, latencies, passes_s, pipelined_s, found = [], [], [], [], 0
    for _ in range(repeats):
        totals, batch_latencies, found = staged_pass(model, paths, cfg, device, batch_size, precision)
        stage_rows.append({k: 1000 * v / len(paths) for k, v in totals.items()})
        latencies += batch_latencies
        passes_s.append(sum(totals.values()))
        pipelined_s.append(pipelined_pass(model, paths, cfg, device, batch_size, precision))
    ms = np.array(latencies) * 1000
    return PredictVariant(
        runtime,
        precision,
        batch_size,
        len(paths) / statistics.median(passes_s),
        len(paths) / statistics.median(pipelined_s),
        {f"p{q}": float(np.percentile(ms, q)) for q in (50, 90, 99)},
        {stage: statistics.median(row[stage] for row in stage_rows) for stage in STAGES},
        found / len(paths),
    )


def slowest_stage(variant: PredictVariant) -> tuple[str, float]:
    """The stage with the largest share of the staged time, and that share."""
    stages = variant.stage_ms_per_image
    name = max(stages, key=lambda k: stages[k])
    return name, stages[name] / sum(stages.values())


def results_document(bench: PredictBench) -> dict:
    return bench_document("predict", result=asdict(bench))


def mixed_mode(cfg: OcrkitConfig, device: torch.device) -> tuple[str | None, str]:
    """The fastest mixed mode the precision probe finds faster than fp32 here (None: none is),
    and the probe's reason. The probe times training steps of this model: a mode slower to
    train is not faster to run."""
    from ocrkit.core.engine.probe import resolve_precision

    probe_cfg = cfg.model_copy(deep=True)
    probe_cfg.train.precision = "auto"
    chosen = resolve_precision(probe_cfg, device)
    if chosen is None:
        return None, "fp32 only"
    decision, _ = chosen
    return (decision.mode if decision.mode != "32-true" else None), decision.reason


def predict_bench_job(
    checkpoint: Path,
    images: list[Path],
    batch_sizes: list[int],
    repeats: int,
    out_dir: Path,
    config_file: Path | None,
    sets: list[str] | None,
    onnx: bool = True,
) -> PredictBench:
    from ocrkit.core.data.formats import load_image_paths
    from ocrkit.core.engine.eval_job import load_for_inference

    loaded = load_for_inference(checkpoint, config_file, sets, {})
    cfg, device = loaded.cfg, loaded.device
    paths = load_image_paths(images, skip_bad=False)
    sizes = sorted({tuple(load_image(p).shape[:2]) for p in paths[:50]})
    bench = PredictBench(len(paths), [list(s) for s in sizes], list(cfg.data.eval_size), repeats, str(device))
    runtimes: list[tuple[str, nn.Module, list[str]]] = []
    mixed, reason = mixed_mode(cfg, device)
    bench.notes.append(f"precision probe on {device}: {reason}")
    runtimes.append(("torch", loaded.model, ["32-true", *([mixed] if mixed else [])]))
    if onnx:
        runtimes.append(("onnxruntime", _exported(loaded.model, cfg, checkpoint, out_dir), ["32-true"]))
    for runtime, model, precisions in runtimes:
        for batch_size in batch_sizes:
            for precision in precisions:
                bench.variants.append(
                    measure_variant(runtime, model, paths, cfg, device, batch_size, precision, repeats)
                )
    return bench


def _exported(model: nn.Module, cfg: OcrkitConfig, checkpoint: Path, out_dir: Path) -> nn.Module:
    """The checkpoint exported with dynamic shapes (so batches take the same canvases) and loaded
    for onnxruntime."""
    from ocrkit.core.engine.onnx_export import export_onnx
    from ocrkit.core.engine.onnx_model import load_onnx_model

    path = out_dir / "model.onnx"
    export_onnx(model, cfg, path, checkpoint, dynamic=True)
    return load_onnx_model(path, None, None, {}).model

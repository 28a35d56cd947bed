"""``ocrkit doctor``: what decides speed and correctness on this machine, measured here.

Sections: versions, cpu, gpus, store, rates (the precision probe of the configured model, label
maps on a dense layout, one training sample through the data pipeline) and advice. Every section
is computed on its own: one that fails reports its error and the others still run.
"""

from __future__ import annotations

import math
import os
import platform
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ocrkit import __version__
from ocrkit.core.config import OcrkitConfig
from ocrkit.core.machine import cpu_features, cpu_model

WRITE_PROBE_BYTES = 64 * 2**20
SECTIONS = ("versions", "cpu", "gpus", "store", "rates", "advice")


def guarded(fn: Callable[[], Any]) -> Any:
    """The section's value, or {"error": ...}: a probe that fails is a finding, not a crash."""
    try:
        return fn()
    except Exception as exc:
        return {"error": f"{type(exc).__name__}: {exc}".splitlines()[0][:300]}


def versions() -> dict[str, Any]:
    import cv2
    import numba
    import numpy
    import torch

    return {
        "ocrkit": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_build": {
            "cuda": torch.version.cuda,
            "debug": torch.version.debug,
            "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "mkldnn": torch.backends.mkldnn.is_available(),
            "openmp": torch.backends.openmp.is_available(),
        },
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "numba": numba.__version__,
        "opencv": cv2.__version__,
        "numpy": numpy.__version__,
    }


def cpu() -> dict[str, Any]:
    import torch

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "model": cpu_model(),
        "features": cpu_features(),
        "cores": cores,
        "torch_threads": torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(),
    }


def gpus() -> list[dict[str, Any]]:
    import torch

    if not torch.cuda.is_available():
        return []
    out = []
    for index in range(torch.cuda.device_count()):
        props = torch.cuda.get_device_properties(index)
        out.append(
            {
                "index": index,
                "name": props.name,
                "memory_gib": round(props.total_memory / 2**30, 1),
                "capability": f"{props.major}.{props.minor}",
                "bf16": torch.cuda.is_bf16_supported(),
                "matmul_allow_tf32": torch.backends.cuda.matmul.allow_tf32,
                "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32,
            }
        )
    return out


def store(cfg: OcrkitConfig) -> dict[str, Any]:
    from ocrkit.core.paths import user_cache_dir

    root = user_cache_dir(cfg.cache)
    existing = next(p for p in (root, *root.parents) if p.exists())
    usage = shutil.disk_usage(existing)
    return {
        "location": str(root / "store"),
        "enabled": cfg.cache.enabled,
        "size_limit_gb": cfg.cache.size_limit_gb,
        "free_gb": round(usage.free / 1e9, 1),
        "write_mb_per_s": round(write_speed(existing), 1),
    }


def write_speed(directory: Path, size: int = WRITE_PROBE_BYTES) -> float:
    """MB/s of writing ``size`` bytes and fsyncing them where the store lives (file removed after)."""
    block = os.urandom(2**20)
    with tempfile.NamedTemporaryFile(dir=directory, prefix=".ocrkit-doctor-") as handle:
        start = time.perf_counter()
        for _ in range(size // len(block)):
            handle.write(block)
        handle.flush()
        os.fsync(handle.fileno())
        return size / 1e6 / (time.perf_counter() - start)


def precision_rates(cfg: OcrkitConfig, device) -> dict[str, Any]:
    from ocrkit.core.engine.probe import MODES, decide, probe_cache_dir, probe_precisions

    probe = probe_precisions(
        cfg.model,
        cfg.train.batch_size,
        cfg.data.train_size,
        device,
        list(MODES),
        probe_cache_dir(cfg.cache),
        cfg.train.channels_last,
        fresh=True,
    )
    auto = decide("auto", probe)
    return {
        "probe": probe.to_dict(),
        "auto": auto.mode,
        "auto_reason": auto.reason,
        "train_images_per_s": probe.images_per_s(auto.mode),
    }


def maps_rate(cfg: OcrkitConfig, images: int = 5, repeats: int = 3) -> dict[str, Any]:
    from ocrkit.core.bench.maps import dense_case
    from ocrkit.core.bench.timing import median_seconds
    from ocrkit.core.geometry.maps import make_db_maps

    size = (640, 640)
    layouts = dense_case(size, images)

    def run_all() -> None:
        for polygons, ignore in layouts:
            make_db_maps(polygons, ignore, *size, cfg.maps)

    return {
        "layout": "100 rotated quads at 640x640",
        "ms_per_image": round(median_seconds(run_all, repeats) / images * 1e3, 2),
    }


def sample_rate(cfg: OcrkitConfig, images: int = 4, repeats: int = 3) -> dict[str, Any]:
    """One training sample (decode, augmentation, maps, tensors) of the configured pipeline, from
    files with the store off, on synthetic 640x640 images made in a temporary directory."""
    from ocrkit.core.data.dataset import TrainDataset
    from ocrkit.core.data.formats import load_dataset
    from ocrkit.core.data.synth import generate_synthetic

    with tempfile.TemporaryDirectory(prefix="ocrkit-doctor-") as tmp:
        generate_synthetic(tmp, images, 0, size=(640, 640), seed=0, progress=False)
        samples = load_dataset(str(Path(tmp) / "train")).samples
        dataset = TrainDataset(samples, cfg.data, cfg.maps, cfg.train.seed)
        dataset[0]  # first-call costs (kernels, allocator)
        times = []
        for epoch in range(repeats):
            dataset.set_epoch(epoch)
            start = time.perf_counter()
            for index in range(len(dataset)):
                dataset[index]
            times.append((time.perf_counter() - start) / len(dataset))
    return {"train_size": list(cfg.data.train_size), "ms_per_image": round(statistics.median(times) * 1e3, 2)}


def advice(report: dict[str, Any], device_type: str) -> list[str]:
    """Concrete lines from the measured figures; none from assumptions."""
    lines = []
    rates = report.get("rates", {})
    precision = rates.get("precision", {})
    if "auto" in precision:
        lines.append(f"precision: train with --precision {precision['auto']} ({precision['auto_reason']})")
    model_rate = precision.get("train_images_per_s")
    sample_ms = rates.get("sample", {}).get("ms_per_image")
    cores = report.get("cpu", {}).get("cores") or os.cpu_count() or 1
    if model_rate and sample_ms:
        lines.append(loader_advice(model_rate, sample_ms, cores, device_type))
    store_info = report.get("store", {})
    if store_info.get("free_gb") is not None and store_info["free_gb"] < store_info.get("size_limit_gb", 0):
        lines.append(
            f"store: only {store_info['free_gb']} GB free where the store lives, below cache.size_limit_gb "
            f"{store_info['size_limit_gb']}: lower the limit or move cache.dir"
        )
    threads = report.get("cpu", {}).get("torch_threads")
    if device_type == "cpu" and threads and threads < cores:
        lines.append(
            f"threads: torch uses {threads} of {cores} cores (OMP_NUM_THREADS?); training on the CPU wants all"
        )
    return lines


def loader_advice(model_images_per_s: float, sample_ms: float, cores: int, device_type: str) -> str:
    """Loader workers from the model's measured rate and one sample's measured CPU time."""
    needed = model_images_per_s * sample_ms / 1e3  # cores' worth of data work to keep up
    spare = max(0, cores - 1)
    if device_type == "cpu":
        share = needed / (1 + needed)
        return (
            f"loader: one sample takes {sample_ms:.0f} ms and the model {1e3 / model_images_per_s:.0f} ms per "
            f"image here, so data is {share:.0%} of the work; on a CPU the model and the loader share the cores: "
            f"data.num_workers = {min(1, spare)} (more only takes cores from the model)"
        )
    workers = math.ceil(needed * 1.25)  # a quarter spare for stalls
    if workers <= spare:
        return (
            f"loader: the model trains {model_images_per_s:.0f} img/s and one sample takes {sample_ms:.0f} ms of "
            f"CPU: data.num_workers = {max(1, workers)} keeps it fed"
        )
    return (
        f"loader: the model trains {model_images_per_s:.0f} img/s and one sample takes {sample_ms:.0f} ms of CPU, "
        f"so it needs ~{workers} workers but only {spare} cores are spare: expect a data-bound run; use all "
        f"{spare} (data.num_workers), the store or a RAM preload (cache.preload_bytes)"
    )


def run_doctor(cfg: OcrkitConfig) -> dict[str, Any]:
    report: dict[str, Any] = {
        "versions": guarded(versions),
        "cpu": guarded(cpu),
        "gpus": guarded(gpus),
        "store": guarded(lambda: store(cfg)),
    }
    device_type = "cpu"
    device = guarded(lambda: _device(cfg))
    if isinstance(device, dict):  # the configured device cannot be had: still measure the rest
        report["rates"] = {
            "precision": device,
            "maps": guarded(lambda: maps_rate(cfg)),
            "sample": guarded(lambda: sample_rate(cfg)),
        }
    else:
        device_type = device.type
        report["rates"] = {
            "device": str(device),
            "precision": guarded(lambda: precision_rates(cfg, device)),
            "maps": guarded(lambda: maps_rate(cfg)),
            "sample": guarded(lambda: sample_rate(cfg)),
        }
    report["advice"] = guarded(lambda: advice(report, device_type))
    return report


def _device(cfg: OcrkitConfig):
    from ocrkit.core.engine.device import resolve_device

    return resolve_device(cfg.train.device)

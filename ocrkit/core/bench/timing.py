"""Repeat-and-median timing shared by every benchmark."""

from __future__ import annotations

import platform
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime


def median_seconds(fn: Callable[[], object], repeats: int, warmup: int = 1) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def fixed_steps_variant(cfg, steps: int | None):
    """A copy of ``cfg`` that trains exactly ``steps`` optimizer steps (None: the configured
    schedule) straight through: a benchmark compares equal work, so no pause and no time budget."""
    variant = cfg.model_copy(deep=True)
    if steps is not None:
        variant.train.max_steps = steps
    variant.train.stop_at_step = None
    variant.train.time_limit = None
    return variant


def machine_info() -> dict[str, object]:
    import os

    import torch

    from ocrkit.core.machine import cpu_features, cpu_model

    info: dict[str, object] = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_model": cpu_model(),
        "cpu_features": [name for name, present in cpu_features().items() if present],
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
    }
    if torch.cuda.is_available():
        # TF32 settings decide what "32-true" means for convolutions and matmuls on Ampere and later
        info.update(
            gpu=torch.cuda.get_device_name(),
            cuda=torch.version.cuda,
            cudnn_allow_tf32=torch.backends.cudnn.allow_tf32,
            matmul_allow_tf32=torch.backends.cuda.matmul.allow_tf32,
            cudnn_benchmark=torch.backends.cudnn.benchmark,
        )
    return info


class PeakMemory:
    """Peak memory of one benchmarked variant: CUDA allocator peak on a GPU; on Linux CPUs the
    process's resident-set high-water mark, reset through /proc/self/clear_refs before the run.
    ``mib`` stays None where neither can be measured."""

    def __init__(self, device) -> None:
        self.device = device
        self.mib: float | None = None
        self.kind = "cuda allocated" if device.type == "cuda" else "process RSS"

    def __enter__(self) -> PeakMemory:
        import torch

        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        else:
            try:
                with open("/proc/self/clear_refs", "w") as handle:
                    handle.write("5")
            except OSError:
                self.kind = "unavailable"
        return self

    def __exit__(self, *exc) -> None:
        import torch

        if self.device.type == "cuda":
            self.mib = torch.cuda.max_memory_allocated(self.device) / 2**20
        elif self.kind != "unavailable":
            self.mib = _vm_hwm_mib()


def _vm_hwm_mib() -> float | None:
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None

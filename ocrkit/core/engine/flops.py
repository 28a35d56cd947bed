"""Model FLOP utilisation: how much of the device's arithmetic a training step uses.

The FLOPs of one training step (forward and backward of the model at the training crop) are
counted once with ``torch.utils.flop_counter.FlopCounterMode``, which counts the matrix
multiplications and convolutions (2 FLOPs per multiply-add; the elementwise work, which is small
beside them, is not counted, the usual convention for MFU). Achieved TFLOP/s = FLOPs per image x
images per second; MFU = achieved / the device's peak.

Peaks: for common GPUs, the vendors' dense (no sparsity) 16-bit tensor-core figures and their
fp32 figures, by device name; for a CPU, the peak is measured here from a large fp32 matrix
multiplication (what the machine really sustains on the operation that dominates the model,
not a datasheet figure). A device that is not in the table has no MFU, only TFLOP/s.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

# dense TFLOP/s: (16-bit tensor cores, fp32 without TF32), from the vendors' datasheets
GPU_PEAK_TFLOPS = {
    "H200": (989.0, 67.0),
    "H100 SXM": (989.0, 67.0),
    "H100 PCIE": (756.0, 51.0),
    "H100": (989.0, 67.0),
    "A100": (312.0, 19.5),
    "L40S": (362.0, 91.6),
    "L4": (121.0, 30.3),
    "A10": (125.0, 31.2),
    "T4": (65.0, 8.1),
    "V100": (125.0, 15.7),
}


def count_step_flops(model: nn.Module, images: torch.Tensor) -> int:
    """FLOPs of one forward and backward pass of ``model`` on ``images`` (parameters' gradients
    included; the model's training mode is used as it is)."""
    with FlopCounterMode(display=False) as counter:
        outputs = model(images)
        total = sum(v.float().sum() for v in (outputs.values() if isinstance(outputs, dict) else [outputs]))
        total.backward()
    model.zero_grad(set_to_none=True)
    return int(counter.get_total_flops())


def train_flops_per_image(model_cfg, train_size: tuple[int, int]) -> float:
    """Training FLOPs per image of the configured DBNet at ``train_size`` (counted on CPU, once)."""
    from ocrkit.core.model import build_model

    model = build_model(model_cfg).train()
    return float(count_step_flops(model, torch.zeros(1, 3, *train_size)))


@dataclass(frozen=True)
class Peak:
    tflops: float | None  # None: unknown for this device
    source: str  # where the figure comes from


def gpu_peak(name: str, precision: str) -> Peak:
    """The table's figure for a GPU name as torch reports it (longest matching key first)."""
    upper = name.upper()
    for key in sorted(GPU_PEAK_TFLOPS, key=len, reverse=True):
        if key in upper:
            half, single = GPU_PEAK_TFLOPS[key]
            mixed = precision in ("16-mixed", "bf16-mixed")
            return Peak(half if mixed else single, f"{key} datasheet, dense {'16-bit' if mixed else 'fp32'}")
    return Peak(None, f"{name}: not in ocrkit's table of GPU peaks")


CPU_MATMUL_DTYPES = {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}


def measured_cpu_peak(size: int = 1024, repeats: int = 10, dtype: torch.dtype = torch.float32, warmup: int = 3) -> Peak:
    """TFLOP/s of a ``size``² matrix multiplication in ``dtype`` on this CPU with torch's threads
    (the best of ``repeats`` after ``warmup`` calls: a process's first call measured 40% below
    the later ones here, the thread pool and the matmul library starting up)."""
    a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
    for _ in range(warmup):
        torch.mm(a, b)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - start)
    name = str(dtype).removeprefix("torch.")
    return Peak(2 * size**3 / best / 1e12, f"measured: {name} {size}x{size} matmul, {torch.get_num_threads()} threads")


def device_peak(device: torch.device, precision: str) -> Peak:
    """The peak MFU is taken against: the GPU table's; on a CPU the faster of a float32 matmul
    and, for a 16-bit precision, a matmul in that dtype. A CPU without 16-bit arithmetic (no
    AVX512-BF16 or AMX) ran a bf16 matmul at 1/70 of float32 here while autocast's convolutions
    took another path: its peak is still what the float32 units can do, so MFU stays below 100%;
    a CPU with AMX gets its faster 16-bit peak."""
    if device.type == "cuda":
        return gpu_peak(torch.cuda.get_device_name(device), precision)
    single = measured_cpu_peak()
    dtype = CPU_MATMUL_DTYPES.get(precision)
    if dtype is None:
        return single
    # 16-bit matmuls without native support took 3 s for one 1024² here: a smaller one
    half = measured_cpu_peak(size=384, dtype=dtype)
    assert single.tflops is not None and half.tflops is not None
    return half if half.tflops > single.tflops else Peak(single.tflops, f"{single.source}; faster than {half.source}")


def utilisation_line(images_per_s: float, flops_per_image: float, peak: Peak) -> str:
    """``12.3 img/s, 0.050 TFLOP/s, MFU 4.1% of 0.120 TFLOP/s (measured: ...)``."""
    achieved, mfu = utilisation(flops_per_image, images_per_s, peak)
    share = f"MFU {mfu:.1%} of {peak.tflops:.3f} TFLOP/s" if mfu is not None else "MFU unknown"
    return f"{images_per_s:.1f} img/s, {achieved:.3f} TFLOP/s, {share} ({peak.source})"


def utilisation(flops_per_image: float, images_per_s: float, peak: Peak) -> tuple[float, float | None]:
    """(achieved TFLOP/s, MFU or None without a known peak)."""
    achieved = flops_per_image * images_per_s / 1e12
    return achieved, (achieved / peak.tflops if peak.tflops else None)

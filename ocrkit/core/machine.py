"""What this machine is, as far as speed is concerned: CPU model and the instruction-set features
that decide whether reduced precision has native kernels. Read from /proc/cpuinfo (Linux) with a
platform fallback; no torch here, so the CLI can show it without loading the engine.

Which features matter and why: bf16 arithmetic is native only with AVX512-BF16 or AMX (AMX-BF16
tiles); with AVX2/FMA alone, oneDNN emulates bf16 by converting to fp32 and back, which can make
a bf16 autocast step many times slower than fp32. The decision is never taken from these flags:
they are reported beside a measurement (engine/probe.py), which decides.
"""

from __future__ import annotations

import os
import platform
from functools import lru_cache

# /proc/cpuinfo flag → the name users know; in the order we print them
SPEED_FEATURES = {
    "avx2": "AVX2",
    "fma": "FMA",
    "f16c": "F16C",
    "avx512f": "AVX-512",
    "avx512_vnni": "AVX512-VNNI",
    "avx512_bf16": "AVX512-BF16",
    "avx512_fp16": "AVX512-FP16",
    "amx_tile": "AMX",
    "amx_bf16": "AMX-BF16",
    "amx_fp16": "AMX-FP16",
}


@lru_cache(maxsize=1)
def _cpuinfo() -> dict[str, str]:
    """The first processor block of /proc/cpuinfo ({} where there is none)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as handle:
            text = handle.read()
    except OSError:
        return {}
    fields: dict[str, str] = {}
    for line in text.split("\n\n")[0].splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields.setdefault(key.strip(), value.strip())
    return fields


def cpu_model() -> str:
    info = _cpuinfo()
    return info.get("model name") or info.get("Model") or platform.processor() or platform.machine()


def cpu_flags() -> set[str]:
    info = _cpuinfo()
    return set((info.get("flags") or info.get("Features") or "").split())


def cpu_features() -> dict[str, bool]:
    """Each speed-relevant feature: present or not (all False where /proc/cpuinfo is missing)."""
    flags = cpu_flags()
    return {name: flag in flags for flag, name in SPEED_FEATURES.items()}


def native_bf16() -> bool:
    features = cpu_features()
    return features["AVX512-BF16"] or features["AMX-BF16"]


def cpu_summary() -> str:
    """One line for tables and logs: model, cores, and the features present."""
    present = [name for name, on in cpu_features().items() if on]
    return f"{cpu_model()}, {os.cpu_count()} cores, {' '.join(present) or 'no AVX2'}"


def available_cpus() -> int:
    """The CPU cores this process may run on (its affinity mask, where the OS has one)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)

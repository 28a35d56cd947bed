"""Which torch device a run uses (``train.device``)."""

from __future__ import annotations

import torch

from ocrkit.core.errors import OcrkitError


def resolve_device(name: str) -> torch.device:
    """``auto`` → cuda when available, else cpu; ``cpu``; ``cuda`` or ``cuda:N`` (must exist)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise OcrkitError(f"unknown device {name!r}: expected auto, cpu, cuda or cuda:N") from None
    if device.type == "cpu":
        return device
    if device.type != "cuda":
        raise OcrkitError(f"unsupported device {name!r}: expected auto, cpu, cuda or cuda:N")
    if not torch.cuda.is_available():
        raise OcrkitError(f"device {name!r} requested but CUDA is not available here; use --device cpu or auto")
    if device.index is not None and device.index >= torch.cuda.device_count():
        raise OcrkitError(f"device {name!r} requested but only {torch.cuda.device_count()} CUDA device(s) exist")
    return device

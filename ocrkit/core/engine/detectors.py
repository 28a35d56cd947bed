"""Which detector ``predict`` and ``eval`` run: a PyTorch checkpoint or an exported ONNX model
(onnxruntime). Both come back with the config they run under and go through the same
pre- and post-processing (engine/inference.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ocrkit.core.engine.eval_job import LoadedModel, load_for_inference
from ocrkit.core.engine.onnx_model import load_onnx_model
from ocrkit.core.errors import OcrkitError


def load_detector(
    checkpoint: Path | None,
    model: Path | None,
    config_file: Path | None,
    sets: list[str] | None,
    flags: dict[str, Any],
    weights: str = "raw",
) -> LoadedModel:
    if (checkpoint is None) == (model is None):
        raise OcrkitError("give --checkpoint (a PyTorch checkpoint) or --model (an exported ONNX model): one of them")
    if model is None:
        assert checkpoint is not None
        return load_for_inference(checkpoint, config_file, sets, flags, weights)
    if weights != "raw":
        raise OcrkitError("--weights chooses a checkpoint's weights; an ONNX export holds the ones it was made from")
    return load_onnx_model(model, config_file, sets, flags)

"""``ocrkit export --format onnx``: a trained detector as an ONNX model that carries everything
inference needs, checked against PyTorch before it is kept.

The graph is the detector's probability branch: a normalised N×3×H×W float32 RGB batch in
(``images``), the probability logits N×1×H×W out (``prob_logits``; the sigmoid and the
post-processing stay in ocrkit, shared with the PyTorch path). The threshold branch only trains.

Shapes: ``dynamic=True`` leaves batch, height and width free (torch.export dynamic dimensions),
so the same file takes any batch and the keep-ratio eval canvases; otherwise the input is fixed
at one image of the eval canvas (``data.eval_size`` padded to ``data.pad_multiple``) and
ocrkit's runner pads smaller canvases into it (engine/onnx_model.py).

What inference needs (normalisation, the resize policy, post-processing settings, the model
config, the ocrkit version) is stored twice: in the model's ONNX metadata (key ``ocrkit``, so the
file works alone) and in a sidecar ``<name>.json`` a person can read.

torch's exporter (``torch.onnx.export(dynamo=True)``) needs the ``onnx`` and ``onnxscript``
packages, and checking the export needs ``onnxruntime``: the ``onnx`` extra
(``pip install 'ocrkit[onnx]'``). Without them this is one line naming the extra.
"""

from __future__ import annotations

import contextlib
import datetime
import importlib
import io
import json
import logging
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ocrkit import __version__
from ocrkit.core.atomic import atomic_output, write_text_atomic
from ocrkit.core.config import DataConfig, OcrkitConfig
from ocrkit.core.errors import OcrkitError
from ocrkit.core.geometry.transform import plan_resize

ONNX_FORMAT = "ocrkit-onnx-v1"
METADATA_KEY = "ocrkit"
INPUT_NAME, OUTPUT_NAME = "images", "prob_logits"
PARITY_TOLERANCE = 1e-4  # largest |ΔP| (probabilities) accepted between onnxruntime and PyTorch
MAX_SIDE = 8192  # the largest height or width a dynamic model is exported for


def require_onnx_package(name: str) -> Any:
    """Import an optional package of the ``onnx`` extra, or stop with one line naming the extra."""
    try:
        return importlib.import_module(name)
    except ImportError:
        raise OcrkitError(
            f"this needs the {name} package, which ocrkit's onnx extra installs: pip install 'ocrkit[onnx]'"
        ) from None


class ProbabilityLogits(nn.Module):
    """The detector's inference graph: images in, probability logits out."""

    def __init__(self, detector: nn.Module):
        super().__init__()
        self.detector = detector

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.detector(images)["prob_logits"]


def eval_canvas(data: DataConfig) -> tuple[int, int]:
    """The largest eval input: ``data.eval_size`` padded as the eval resize pads."""
    h, w = data.eval_size
    return plan_resize((h, w), (h, w), data.keep_ratio, data.pad_multiple).padded_size


@dataclass
class ExportReport:
    path: Path
    sidecar: Path
    opset: int
    dynamic: bool
    input_shape: list[int | str]
    max_prob_difference: float  # onnxruntime vs PyTorch on a random input, probabilities
    seconds: float


def export_onnx(
    model: nn.Module,
    cfg: OcrkitConfig,
    out: Path,
    source: Path,
    weights: str = "raw",
    dynamic: bool = False,
    opset: int | None = None,
) -> ExportReport:
    """Export ``model`` (eval mode, CPU) to ``out`` atomically with its metadata and sidecar,
    after checking onnxruntime's probabilities against PyTorch's on a random input."""
    onnx = require_onnx_package("onnx")
    require_onnx_package("onnxscript")  # torch's exporter imports it
    start = time.perf_counter()
    graph = ProbabilityLogits(model.eval().cpu())
    height, width = eval_canvas(cfg.data)
    example = torch.randn(1, 3, height, width, generator=torch.Generator().manual_seed(0))
    program = _run_exporter(graph, example, dynamic, opset)
    proto = program.model_proto
    used_opset = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), opset or 0)
    metadata = export_metadata(cfg, source, weights, used_opset, dynamic, (height, width))
    entry = proto.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, json.dumps(metadata)
    out = Path(out)
    with atomic_output(out, fsync=True) as tmp:
        onnx.save_model(proto, str(tmp))
    sidecar = out.with_suffix(".json")
    write_text_atomic(sidecar, json.dumps(metadata, indent=2) + "\n", fsync=True)
    difference = check_parity(graph, out, example, dynamic)
    if difference > PARITY_TOLERANCE:
        out.unlink(missing_ok=True)
        sidecar.unlink(missing_ok=True)
        raise OcrkitError(
            f"export failed: onnxruntime's probabilities differ from PyTorch's by {difference:.2e} "
            f"(more than {PARITY_TOLERANCE:g}); nothing was written"
        )
    shape = metadata["input"]["shape"]
    return ExportReport(out, sidecar, used_opset, dynamic, shape, difference, time.perf_counter() - start)


def _run_exporter(graph: nn.Module, example: torch.Tensor, dynamic: bool, opset: int | None) -> Any:
    dynamic_shapes = None
    if dynamic:
        dims = [
            torch.export.Dim("batch", min=1, max=1024),
            torch.export.Dim("height", min=32, max=MAX_SIDE),
            torch.export.Dim("width", min=32, max=MAX_SIDE),
        ]
        dynamic_shapes = {"images": {0: dims[0], 2: dims[1], 3: dims[2]}}
    try:
        # torch's exporter prints its progress to stdout; ocrkit reports the outcome itself
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), _quiet_logger("torch.onnx"):
            warnings.simplefilter("ignore")
            return torch.onnx.export(
                graph,
                (example,),
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                opset_version=opset,
                dynamic_shapes=dynamic_shapes,
                dynamo=True,
                verbose=False,
            )
    except Exception as exc:  # the exporter raises many types; the first line says what failed
        text = str(exc).strip().splitlines()
        raise OcrkitError(f"export failed: {exc.__class__.__name__}: {text[0] if text else 'no message'}") from None


@contextlib.contextmanager
def _quiet_logger(name: str) -> Iterator[None]:
    """Errors only from ``name`` for the duration (the exporter warns about optional packages,
    e.g. torchvision's operators, that a DBNet does not use)."""
    logger = logging.getLogger(name)
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def export_metadata(
    cfg: OcrkitConfig, source: Path, weights: str, opset: int, dynamic: bool, canvas: tuple[int, int]
) -> dict[str, Any]:
    """Everything inference needs besides the graph, as plain JSON."""
    shape: list[int | str] = ["batch", 3, "height", "width"] if dynamic else [1, 3, *canvas]
    return {
        "format": ONNX_FORMAT,
        "ocrkit_version": __version__,
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "source_checkpoint": str(source),
        "weights": weights,
        "opset": opset,
        "dynamic": dynamic,
        "input": {
            "name": INPUT_NAME,
            "shape": shape,
            "dtype": "float32",
            "layout": "N x 3 x H x W, RGB, (pixel / 255 - mean) / std; each image's resized content at the "
            "top-left, 0 elsewhere",
            "mean": list(cfg.data.mean),
            "std": list(cfg.data.std),
        },
        "output": {
            "name": OUTPUT_NAME,
            "shape": ["batch", 1, "height", "width"] if dynamic else [1, 1, *canvas],
            "meaning": "probability logits: sigmoid gives the text probability map P",
        },
        "resize": {
            "eval_size": list(cfg.data.eval_size),
            "keep_ratio": cfg.data.keep_ratio,
            "pad_multiple": cfg.data.pad_multiple,
        },
        "postprocess": cfg.postprocess.model_dump(mode="json"),
        "config": cfg.model_dump(mode="json"),
    }


def check_parity(graph: nn.Module, path: Path, example: torch.Tensor, dynamic: bool) -> float:
    """Largest |P_onnxruntime - P_torch| on ``example`` (and, for a dynamic model, on a batch of
    two at another size, which the fixed export size would not exercise)."""
    ort = require_onnx_package("onnxruntime")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    inputs = [example]
    if dynamic:
        h, w = example.shape[-2:]
        inputs.append(torch.randn(2, 3, max(32, h // 2 + 3), max(32, w // 2 + 5)))
    worst = 0.0
    with torch.inference_mode():
        for x in inputs:
            ours = torch.sigmoid(graph(x)).numpy()
            theirs = 1 / (1 + np.exp(-session.run(None, {INPUT_NAME: x.numpy()})[0]))
            worst = max(worst, float(np.abs(ours - theirs).max()))
    return worst

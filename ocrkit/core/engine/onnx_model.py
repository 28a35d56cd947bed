"""An exported ONNX detector run by onnxruntime behind the same interface as the PyTorch model,
so ``predict``, ``eval`` and the benches use one pre- and post-processing path for both.

``OnnxDetector`` is called with the normalised batch ``prepared_batches`` makes (N×3×H×W float32,
each image's content at the top-left, 0 elsewhere) and returns ``{"prob_logits": tensor}``, as
``DBNet`` does in eval mode. A fixed-shape model (exported without ``--dynamic``) takes one image
of its export canvas: each image is run alone, zero-padded into that canvas (which is what batch
padding does anyway: the model sees the same values) and its output cropped back.

Providers: CUDA where onnxruntime has it and a GPU is there, else the CPU.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ocrkit.core.config import OcrkitConfig, load_config
from ocrkit.core.engine.eval_job import LoadedModel
from ocrkit.core.engine.onnx_export import INPUT_NAME, METADATA_KEY, ONNX_FORMAT, require_onnx_package
from ocrkit.core.errors import InputError, OcrkitError


class OnnxDetector(nn.Module):
    """An onnxruntime session that looks like an eval-mode DBNet to the inference code (a
    module without parameters: ``eval()`` and ``train()`` only set its flag)."""

    def __init__(self, path: Path, metadata: dict[str, Any], session: Any):
        super().__init__()
        self.path, self.metadata, self.session = path, metadata, session
        shape = metadata["input"]["shape"]
        self.fixed: tuple[int, int] | None = None if metadata["dynamic"] else (int(shape[2]), int(shape[3]))
        self.eval()

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        x = images.detach().float().cpu().numpy()
        if self.fixed is None:
            return {"prob_logits": torch.from_numpy(self._run(x))}
        return {"prob_logits": torch.from_numpy(np.concatenate([self._run_fixed(image) for image in x]))}

    def _run(self, x: np.ndarray) -> np.ndarray:
        return self.session.run(None, {INPUT_NAME: np.ascontiguousarray(x)})[0]

    def _run_fixed(self, image: np.ndarray) -> np.ndarray:
        assert self.fixed is not None
        (h, w), (fh, fw) = image.shape[-2:], self.fixed
        if h > fh or w > fw:
            raise OcrkitError(
                f"{self.path}: an input of {h}x{w} does not fit this model's fixed {fh}x{fw}: export it with "
                "--dynamic, or evaluate with the data.eval_size it was exported with"
            )
        canvas = np.zeros((1, 3, fh, fw), dtype=np.float32)
        canvas[0, :, :h, :w] = image
        return self._run(canvas)[:, :, :h, :w]


def read_metadata(path: Path, session: Any) -> dict[str, Any]:
    raw = session.get_modelmeta().custom_metadata_map.get(METADATA_KEY)
    try:
        metadata = json.loads(raw) if raw else None
    except json.JSONDecodeError:
        metadata = None
    if not isinstance(metadata, dict) or metadata.get("format") != ONNX_FORMAT:
        raise InputError(path, "not an ocrkit ONNX export (no ocrkit metadata): export it with `ocrkit export`")
    return metadata


def open_session(path: Path) -> Any:
    ort = require_onnx_package("onnxruntime")
    if not path.is_file():
        raise InputError(path, "ONNX model not found")
    wanted = ["CUDAExecutionProvider"] if torch.cuda.is_available() else []
    providers = [p for p in wanted if p in ort.get_available_providers()] + ["CPUExecutionProvider"]
    try:
        return ort.InferenceSession(str(path), providers=providers)
    except Exception as exc:  # onnxruntime raises its own types for a damaged or foreign file
        first = (str(exc).strip().splitlines() or [exc.__class__.__name__])[0]
        raise InputError(path, f"onnxruntime cannot load it: {first}") from None


def load_onnx_model(path: Path, config_file: Path | None, sets: list[str] | None, flags: dict[str, Any]) -> LoadedModel:
    """The exported model and its config: the export's own, with the user's TOML, flags and
    --set on top (as for a checkpoint); the model section must stay the export's."""
    path = Path(path)
    session = open_session(path)
    metadata = read_metadata(path, session)
    cfg = load_config(config_file, sets, flags, base=metadata["config"])
    if cfg.model.model_dump() != OcrkitConfig.model_validate(metadata["config"]).model.model_dump():
        raise OcrkitError(f"{path}: the model section is fixed by the export; leave model.* settings out")
    return LoadedModel(OnnxDetector(path, metadata, session), cfg, torch.device("cpu"))

"""Checkpoints: written atomically, read back with clear errors, checked against the model.

A checkpoint holds only tensors and plain data (dicts, lists, str, int, float, bool, None: the
config is saved as its JSON form, the counters as a dict), so it is read with
``torch.load(weights_only=True)``: a file holding any other object is refused, never unpickled,
so loading a foreign file cannot run its code.
"""

from __future__ import annotations

import pickle
import warnings
from pathlib import Path
from typing import Any

import torch

from ocrkit import __version__
from ocrkit.core.atomic import atomic_output
from ocrkit.core.config import ModelConfig, OcrkitConfig
from ocrkit.core.errors import InputError
from ocrkit.core.model import DBNet

FORMAT = "ocrkit-checkpoint-v1"
REQUIRED_KEYS = ("model", "config")  # what every use (eval, predict, resume, --init-from) reads


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> Path:
    """Write ``state`` (plus format and version tags) via a temp file, fsync, an atomic rename and
    a directory fsync, so an interrupted save (a killed process, a power cut) never leaves a
    truncated checkpoint behind: ``path`` holds the previous checkpoint or the complete new one."""
    path = Path(path)
    with atomic_output(path, fsync=True) as tmp:
        torch.save({"format": FORMAT, "ocrkit_version": __version__, **state}, tmp)
    return path


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "checkpoint not found")
    try:
        with warnings.catch_warnings():  # a foreign pickle's protocol, not the user's concern
            warnings.filterwarnings("ignore", message="Detected pickle protocol", category=UserWarning)
            state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:  # random bytes, or objects weights_only refuses to build
        raise InputError(path, "not an ocrkit checkpoint: not a file of tensors and plain data") from None
    except Exception as exc:  # torch raises many types for a damaged or foreign file
        raise InputError(path, f"not an ocrkit checkpoint: unreadable ({exc.__class__.__name__})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise InputError(path, "not an ocrkit checkpoint")
    missing = [key for key in REQUIRED_KEYS if key not in state]
    if missing:
        raise InputError(path, f"incomplete ocrkit checkpoint: no {', '.join(missing)}")
    return state


def checkpoint_config(state: dict[str, Any], path: str | Path) -> OcrkitConfig:
    try:
        return OcrkitConfig.model_validate(state["config"])
    except Exception:
        raise InputError(path, "checkpoint holds no valid ocrkit config") from None


def _architecture(cfg: ModelConfig) -> dict[str, Any]:
    return cfg.model_dump(exclude={"k"})


def load_weights(model: DBNet, state: dict[str, Any], path: str | Path, model_cfg: ModelConfig) -> None:
    """Load the checkpoint's weights, refusing a checkpoint of another architecture by name."""
    saved = checkpoint_config(state, path).model
    if _architecture(saved) != _architecture(model_cfg):
        diff = ", ".join(
            f"model.{key}={value} (here {getattr(model_cfg, key)})"
            for key, value in _architecture(saved).items()
            if getattr(model_cfg, key) != value
        )
        raise InputError(path, f"checkpoint is of another architecture: {diff}")
    try:
        model.load_state_dict(state["model"])
    except (KeyError, RuntimeError) as exc:
        raise InputError(path, f"weights do not fit the model ({str(exc).splitlines()[0]})") from None

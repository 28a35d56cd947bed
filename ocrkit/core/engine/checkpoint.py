"""Checkpoints: written atomically, read back with clear errors, checked against the model.

A checkpoint holds only tensors and plain data (dicts, lists, str, int, float, bool, None: the
config is saved as its JSON form, the counters as a dict), so it is read with
``torch.load(weights_only=True)``: a file holding any other object is refused, never unpickled,
so loading a foreign file cannot run its code. The same holds for the other weights a new run can
start from: a backbone file or torchvision's download (``model.pretrained``), and a MhLiao/DB
checkpoint given to ``--init-from`` (its names mapped by model/pretrained.py).
"""

from __future__ import annotations

import hashlib
import pickle
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.error import URLError

import torch

from ocrkit import __version__
from ocrkit.core.atomic import atomic_output
from ocrkit.core.config import ModelConfig, OcrkitConfig
from ocrkit.core.errors import ConfigError, InputError, OcrkitError
from ocrkit.core.model import DBNet
from ocrkit.core.model.pretrained import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    TORCHVISION_WEIGHTS,
    LoadReport,
    TorchvisionWeights,
    WeightsMismatch,
    is_db_state,
    load_backbone,
    load_db_state,
    unwrap_state,
)

FORMAT = "ocrkit-checkpoint-v1"
DB_LAYOUT = "db-family-state-dict"  # what read_init_source tags a MhLiao/DB checkpoint with
REQUIRED_KEYS = ("model", "config")  # what every use (eval, predict, resume, --init-from) reads


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> Path:
    """Write ``state`` (plus format and version tags) via a temp file, fsync, an atomic rename and
    a directory fsync, so an interrupted save (a killed process, a power cut) never leaves a
    truncated checkpoint behind: ``path`` holds the previous checkpoint or the complete new one."""
    path = Path(path)
    with atomic_output(path, fsync=True) as tmp:
        torch.save({"format": FORMAT, "ocrkit_version": __version__, **state}, tmp)
    return path


def read_tensor_file(path: str | Path, what: str = "an ocrkit checkpoint") -> Any:
    """``torch.load(weights_only=True)`` on CPU, every failure one line naming the file."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "file not found" if what == "a state dict" else "checkpoint not found")
    try:
        with warnings.catch_warnings():  # a foreign pickle's protocol, not the user's concern
            warnings.filterwarnings("ignore", message="Detected pickle protocol", category=UserWarning)
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:  # random bytes, or objects weights_only refuses to build
        raise InputError(path, f"not {what}: not a file of tensors and plain data") from None
    except Exception as exc:  # torch raises many types for a damaged or foreign file
        raise InputError(path, f"not {what}: unreadable ({exc.__class__.__name__})") from None


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    return _ocrkit_checkpoint(read_tensor_file(path), Path(path))


def _ocrkit_checkpoint(state: Any, path: Path, what: str = "an ocrkit checkpoint") -> dict[str, Any]:
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise InputError(path, f"not {what}")
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
    return cfg.model_dump(exclude={"k", "pretrained"})  # pretrained: where a run started, not its shape


def load_weights(model: DBNet, state: dict[str, Any], path: str | Path, model_cfg: ModelConfig) -> str | None:
    """Load the checkpoint's weights, refusing a checkpoint of another architecture by name. A
    MhLiao/DB checkpoint (``read_init_source``) is mapped instead, and the line that says what was
    loaded comes back."""
    if state.get("format") == DB_LAYOUT:
        source = f"MhLiao/DB checkpoint {path}"
        return _load_foreign(lambda: load_db_state(model, state["model"], source), path, "--init-from")
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
    return None


def read_init_source(path: str | Path) -> dict[str, Any]:
    """``--init-from``: an ocrkit checkpoint, or a DB-family one (a plain state dict with MhLiao/DB's
    ``backbone.``/``decoder.`` names, DataParallel prefixes allowed), tagged for ``load_weights``."""
    raw = read_tensor_file(path, "an ocrkit or MhLiao/DB checkpoint")
    if isinstance(raw, dict) and raw.get("format") != FORMAT and is_db_state(raw):
        try:
            return {"format": DB_LAYOUT, "model": unwrap_state(raw)}
        except WeightsMismatch as exc:
            raise InputError(path, str(exc)) from None
    return _ocrkit_checkpoint(raw, Path(path), "an ocrkit or MhLiao/DB checkpoint")


# ---------------------------------------------------------------- pretrained backbones


def load_pretrained(cfg: OcrkitConfig) -> tuple[dict[str, torch.Tensor], str]:
    """``model.pretrained``'s weights and a label for them: torchvision's ImageNet weights of
    ``model.backbone`` (downloaded once) or a local file. The ImageNet weights expect the
    ImageNet normalisation, so other ``data.mean``/``data.std`` are refused."""
    source = cfg.model.pretrained
    assert source is not None  # the caller asks only when it is set
    if tuple(cfg.data.mean) != IMAGENET_MEAN or tuple(cfg.data.std) != IMAGENET_STD:
        raise ConfigError(
            f"model.pretrained: ImageNet weights expect data.mean = {list(IMAGENET_MEAN)} and data.std = "
            f"{list(IMAGENET_STD)} (got {list(cfg.data.mean)} and {list(cfg.data.std)})"
        )
    if source == "torchvision":
        weights = TORCHVISION_WEIGHTS[cfg.model.backbone]
        return fetch_torchvision(weights), weights.label
    raw = read_tensor_file(source, "a state dict")
    if isinstance(raw, dict) and raw.get("format") == FORMAT:
        raise InputError(source, "an ocrkit checkpoint: start from it with --init-from, not model.pretrained")
    try:
        return unwrap_state(raw), source
    except WeightsMismatch as exc:
        raise InputError(source, str(exc)) from None


def fetch_torchvision(weights: TorchvisionWeights) -> dict[str, torch.Tensor]:
    """torchvision's file through torch.hub's download-and-cache (``<hub dir>/checkpoints``, the
    sha256 prefix in its name checked on download). A file placed there by hand is checked here
    first: torch.hub checks only what it downloads. No network is one line naming the URL and
    the path where the file can be put."""
    cached = Path(torch.hub.get_dir()) / "checkpoints" / weights.file_name
    if cached.is_file():
        _check_sha256_prefix(cached)
    try:
        state = torch.hub.load_state_dict_from_url(
            weights.url, map_location="cpu", progress=sys.stderr.isatty(), check_hash=True, weights_only=True
        )
    except URLError as exc:  # HTTPError too; the download's temp file is already removed
        raise OcrkitError(
            f"model.pretrained = 'torchvision': cannot download {weights.url} ({exc.reason}); "
            f"download it elsewhere and place it at {cached}"
        ) from None
    except (OSError, RuntimeError) as exc:  # a dropped connection; a download whose hash does not match
        first_line = str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__
        raise OcrkitError(
            f"model.pretrained = 'torchvision': {weights.url} failed ({first_line}); place the file at {cached}"
        ) from None
    return unwrap_state(state)


def _check_sha256_prefix(path: Path) -> None:
    match = torch.hub.HASH_REGEX.search(path.name)  # torch.hub's own reading of the name
    if match is None:
        return
    expected = match.group(1)
    with path.open("rb") as handle:
        digest = hashlib.file_digest(handle, "sha256").hexdigest()
    if not digest.startswith(expected):
        raise InputError(
            path,
            f"sha256 {digest[:12]}... does not start with {expected} as the file name says: a damaged or "
            "different file; delete it",
        )


def load_pretrained_backbone(model: DBNet, pretrained: tuple[dict[str, torch.Tensor], str]) -> str:
    """Copy ``load_pretrained``'s weights into the backbone; the line that says what was loaded."""
    state, source = pretrained
    return _load_foreign(lambda: load_backbone(model, state, source), source, "pretrained backbone")


def _load_foreign(load: Callable[[], LoadReport], source: str | Path, what: str) -> str:
    try:
        return load().line(what)
    except WeightsMismatch as exc:
        raise InputError(source, str(exc)) from None

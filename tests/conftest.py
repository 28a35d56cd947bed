"""Shared fixtures: the real ICDAR-2015 sample (skipped when absent) and data the tests make."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np
import pytest

from ocrkit.core.config import AugmentConfig
from ocrkit.core.data.formats import write_icdar_gt

if TYPE_CHECKING:
    import torch

    from ocrkit.core.config import DataConfig, OcrkitConfig
    from ocrkit.core.engine.precision import PrecisionPolicy
    from ocrkit.core.engine.probe import ProbeResult
    from ocrkit.core.engine.trainer import Trainer
    from ocrkit.core.store.store import Store

REPO = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------- tiny `ocrkit` runs from the CLI


def set_args(*settings: str) -> list[str]:
    """``--set key=value`` flags for an ``ocrkit`` command line."""
    return [arg for setting in settings for arg in ("--set", setting)]


MODEL_W4 = ("model.base_width=4", "model.inner_channels=16", "model.head_channels=4")
MODEL_W8 = ("model.base_width=8", "model.inner_channels=32", "model.head_channels=8")
# a width-4 model on 64x64 crops, batch 4, nothing written but metrics.csv and checkpoints
TINY_TRAIN_W4 = set_args(
    *MODEL_W4,
    "data.train_size=[64,64]",
    "data.eval_size=[128,160]",
    "data.num_workers=0",
    "train.batch_size=4",
    "train.overlays=0",
    "log.tensorboard=false",
)
# a width-8 model on 96x96 crops (enough to detect something after a short overfit)
TINY_TRAIN_W8 = set_args(
    *MODEL_W8,
    "data.train_size=[96,96]",
    "data.eval_size=[128,160]",
    "data.num_workers=0",
    "train.eval_batch_size=2",
)


# ---------------------------------------------------------------- stores and images the tests make


def new_store(root: Path, **kw) -> Store:
    """A store of ocrkit's data kinds with synchronous writes unless asked: a read right after a
    write sees it."""
    from ocrkit.core.data.kinds import KIND_VERSIONS
    from ocrkit.core.store.store import Store

    return Store(
        root,
        size_limit_bytes=kw.pop("limit", 10**9),
        kinds=kw.pop("kinds", KIND_VERSIONS),
        flush_every=kw.pop("flush_every", 1),
        write_behind=kw.pop("write_behind", False),
        **kw,
    )


def write_image(path: Path, seed: int, size=(96, 128)) -> Path:
    """A random RGB PNG at ``path``."""
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), rng.integers(0, 255, (*size, 3), dtype=np.uint8))
    return path


def sample_dir() -> Path:
    return Path(os.environ.get("OCRKIT_SAMPLE_DIR", REPO.parent / "shared" / "data" / "icdar2015_sample"))


@pytest.fixture
def icdar_sample() -> Path:
    root = sample_dir()
    if not (root / "images").is_dir() or not (root / "gts").is_dir():
        pytest.skip(f"ICDAR-2015 sample not found at {root} (set OCRKIT_SAMPLE_DIR to its folder)")
    return root


def random_quad(rng: np.random.Generator, h: int, w: int, min_side: float = 10, max_side: float = 120) -> np.ndarray:
    """A rotated rectangle, clockwise on screen, somewhere in (or partly outside) the image."""
    center = (rng.uniform(0, w), rng.uniform(0, h))
    size = (rng.uniform(min_side, max_side), rng.uniform(min_side * 0.8, max_side / 3))
    return cv2.boxPoints((center, size, rng.uniform(-90, 90))).astype(np.float32)


def make_icdar_dir(root: Path, images: dict[str, tuple[np.ndarray, list[np.ndarray], list[bool]]]) -> Path:
    """Write ``{stem: (rgb image, polygons, ignore)}`` in ICDAR layout under ``root``."""
    (root / "images").mkdir(parents=True, exist_ok=True)
    for stem, (image, polygons, ignore) in images.items():
        cv2.imwrite(str(root / "images" / f"{stem}.png"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        texts = [f"word{i}" for i in range(len(polygons))]
        write_icdar_gt(root / "gts" / f"gt_{stem}.txt", polygons, texts, ignore)
    return root


@pytest.fixture
def tiny_icdar(tmp_path: Path) -> Path:
    """Three small non-square images with axis-aligned and rotated words, one don't-care each."""
    images = {}
    for i, (h, w) in enumerate([(240, 320), (300, 200), (256, 256)]):
        image = np.full((h, w, 3), 200, np.uint8)
        polygons = [
            np.array([[20, 20], [150, 20], [150, 60], [20, 60]], np.float32) * [w / 320, h / 240],
            cv2.boxPoints(((w * 0.5, h * 0.7), (w * 0.4, 30), 15.0 * (i - 1))).astype(np.float32),
            np.array([[5, h - 30], [60, h - 30], [60, h - 10], [5, h - 10]], np.float32),
        ]
        for p in polygons[:2]:
            cv2.fillPoly(image, [p.astype(np.int32)], (20, 20, 20))
        images[f"img_{i}"] = (image, polygons, [False, False, True])
    return make_icdar_dir(tmp_path / "tiny", images)


@pytest.fixture(scope="session")
def synth(tmp_path_factory) -> Path:
    """A tiny built-in-style synthetic set (8 train, 4 val at 128x160), made once per session; read only."""
    from ocrkit.core.data.synth import generate_synthetic

    root = tmp_path_factory.mktemp("synth")
    generate_synthetic(root, 8, 4, size=(128, 160), seed=5, progress=False)
    return root


@pytest.fixture(autouse=True, scope="session")
def isolated_store(tmp_path_factory) -> Path:
    """Every test session speaks to its own store, never the user's ~/.cache/ocrkit."""
    root = tmp_path_factory.mktemp("ocrkit-cache")
    patch = pytest.MonkeyPatch()
    patch.setenv("OCRKIT_CACHE__DIR", str(root))
    yield root
    patch.undo()


# ---------------------------------------------------------------- engine helpers (imported lazily:
# the geometry and data tests do not need torch's start-up)


def linear_problem(seed: int = 0) -> tuple[torch.nn.Linear, torch.Tensor, torch.Tensor]:
    """A seeded nn.Linear(4, 2) and one batch (x, y) of 8 for it."""
    import torch

    torch.manual_seed(seed)
    model = torch.nn.Linear(4, 2)
    x, y = torch.randn(8, 4), torch.randn(8, 2)
    return model, x, y


def fp16_policy(**scaler) -> PrecisionPolicy:
    """A 16-mixed policy on the CPU (``scaler``: train.scaler settings), its warnings silenced."""
    import warnings

    import torch

    from ocrkit.core.config import load_config
    from ocrkit.core.engine.precision import PrecisionPolicy

    cfg = load_config(overrides=["train.precision=16-mixed"] + [f"train.scaler.{k}={v}" for k, v in scaler.items()])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return PrecisionPolicy("16-mixed", torch.device("cpu"), cfg.train.scaler)


def tiny_cfg(*overrides: str) -> OcrkitConfig:
    """A width-8 model on 96x96 crops, batch 4, no workers, overlays or TensorBoard; then ``overrides``."""
    from ocrkit.core.config import load_config

    base = [
        "model.base_width=8",
        "model.inner_channels=32",
        "model.head_channels=8",
        "data.train_size=[96,96]",
        "data.eval_size=[128,160]",
        "data.num_workers=0",
        "train.batch_size=4",
        "train.overlays=0",
        "train.eval_batch_size=4",
        "log.tensorboard=false",
    ]
    return load_config(overrides=base + list(overrides))


def make_trainer(synth: Path, tmp_path: Path, *overrides: str) -> Trainer:
    """A CPU Trainer with ``tiny_cfg(*overrides)`` on the ``synth`` set, writing to tmp_path/run."""
    import torch

    from ocrkit.core.data.formats import load_dataset
    from ocrkit.core.data.train_data import TrainData
    from ocrkit.core.engine.trainer import Trainer

    cfg = tiny_cfg(*overrides)
    samples = load_dataset(str(synth / "train")).samples
    val = load_dataset(str(synth / "val")).samples
    (tmp_path / "run").mkdir(parents=True)
    return Trainer(cfg, tmp_path / "run", TrainData(cfg, samples, val), torch.device("cpu"))


# ---------------------------------------------------------------- helpers shared by several test modules

FULL = (1, 3, 320, 320)  # the probe's full-size input in fake probe results
STRONG_AUGMENT = AugmentConfig(scale=(0.5, 2.0), rotate=30.0, flip=0.5)


def run(*args, env=None):
    """``ocrkit ARGS...`` in-process (typer's CliRunner); numbers and paths are stringified."""
    from typer.testing import CliRunner

    from ocrkit.cli.app import app

    return CliRunner().invoke(app, [str(a) for a in args], env=env)


def assert_one_line_error(result, *fragments):
    assert result.exit_code != 0
    assert result.exception is None or isinstance(result.exception, SystemExit)
    lines = [line for line in result.output.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), result.output
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in lines[0]


def fake_probe(device_type="cpu", bf16_supported=False, **seconds) -> ProbeResult:
    """A probe result from step times in seconds: ``bf16=0.5`` (full), or an Exception instance."""
    from ocrkit.core.engine.probe import ModeTiming, ProbeResult

    names = {"fp32": "32-true", "fp16": "16-mixed", "bf16": "bf16-mixed"}
    timings = {}
    for key, value in seconds.items():
        mode = names[key]
        if isinstance(value, Exception):
            timings[mode] = ModeTiming(mode, error=str(value))
        else:
            timings[mode] = ModeTiming(mode, screen_s=value / 10, full_s=value)
    return ProbeResult(
        "cuda:0 (Test GPU)" if device_type == "cuda" else "cpu", device_type, FULL, timings, bf16_supported
    )


def data_cfg(train_size=(96, 96), **augment) -> DataConfig:
    """A data config with strong augmentation (scale 0.5-2, rotate 30, flip 0.5), changed by ``augment``."""
    from ocrkit.core.config import DataConfig

    return DataConfig(train_size=train_size, augment=STRONG_AUGMENT.model_copy(update=augment))


def rect(x0: float, y0: float, x1: float, y1: float) -> np.ndarray:
    return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], dtype=np.float64)


def care_polygons(s) -> list[np.ndarray]:
    return [p for p, flag in zip(s.polygons, s.ignore, strict=True) if not flag]

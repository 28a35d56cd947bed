"""Device label maps (data.label_maps = "device") against the oracle and the numba path: masks
identical, threshold within 1e-3 (through the dataset: tests/core/data/test_dataset.py)."""

from __future__ import annotations

import numpy as np
import torch

from conftest import random_quad
from ocrkit.core.config import MapsConfig
from ocrkit.core.data.device_maps import device_db_maps
from ocrkit.core.geometry.maps import BINARY_MAP_KEYS, make_db_maps, plan_db_maps
from ocrkit.core.geometry.reference_maps import reference_db_maps

CPU = torch.device("cpu")


def scene(rng: np.random.Generator, h: int, w: int) -> tuple[list[np.ndarray], list[bool]]:
    """Quads, some pushed past the image edges, some don't-care, some too small to keep."""
    n = int(rng.integers(0, 9))
    polygons = [random_quad(rng, h, w, 4, 70) for _ in range(n)]
    polygons = [p + rng.uniform(-25, 25, 2) if rng.random() < 0.3 else p for p in polygons]
    return polygons, [bool(f) for f in rng.random(n) < 0.2]


def test_device_maps_equal_the_oracle_and_the_numba_path():
    rng = np.random.default_rng(0)
    cfg = MapsConfig(min_text_size=6)
    h, w = 96, 128
    for _ in range(12):
        scenes = [scene(rng, h, w) for _ in range(4)]
        plans = [plan_db_maps(p, f, h, w, cfg) for p, f in scenes]
        ours = device_db_maps(plans, h, w, cfg, CPU)
        assert all(v.shape == (4, h, w) and v.dtype == torch.float32 for v in ours.values())
        for b, (polygons, ignore) in enumerate(scenes):
            oracle = reference_db_maps(polygons, ignore, h, w, cfg)
            numba = make_db_maps(polygons, ignore, h, w, cfg).as_dict()
            for key in BINARY_MAP_KEYS:
                assert np.array_equal(ours[key][b].numpy(), oracle[key]), key
                assert np.array_equal(ours[key][b].numpy(), numba[key]), key
            assert np.abs(ours["thresh"][b].numpy() - oracle["thresh"]).max() <= 1e-3
            assert np.abs(ours["thresh"][b].numpy() - numba["thresh"]).max() <= 1e-3


def test_device_maps_of_an_image_without_text():
    cfg = MapsConfig()
    ours = device_db_maps([plan_db_maps([], [], 32, 32, cfg)], 32, 32, cfg, CPU)
    assert not ours["shrink"].any() and ours["shrink_mask"].all() and not ours["thresh_mask"].any()
    assert torch.all(ours["thresh"] == cfg.thresh_min)

"""Production DB maps against the plain per-edge oracle (reference_maps.py)."""

import cv2
import numpy as np
import pytest

from conftest import random_quad
from ocrkit.core.config import MapsConfig
from ocrkit.core.data.formats import load_icdar_dir
from ocrkit.core.geometry.border_kernel import polygon_measures
from ocrkit.core.geometry.maps import make_db_maps, offset_polygon
from ocrkit.core.geometry.reference_maps import reference_db_maps
from ocrkit.core.geometry.transform import plan_resize

CFG = MapsConfig()


def assert_matches_oracle(polygons, ignore, h, w, cfg=CFG):
    got = make_db_maps(polygons, ignore, h, w, cfg).as_dict()
    want = reference_db_maps(polygons, ignore, h, w, cfg)
    for key in ("shrink", "shrink_mask", "thresh_mask"):
        np.testing.assert_array_equal(got[key], want[key], err_msg=key)
    assert np.abs(got["thresh"] - want["thresh"]).max() <= 1e-3
    for key, value in got.items():
        assert value.dtype == np.float32 and value.shape == (h, w), key
    return got


def star(rng, h, w, n_points):
    """A concave star-like polygon with ``n_points`` vertices."""
    cx, cy = rng.uniform(0, w), rng.uniform(0, h)
    angles = np.sort(rng.uniform(0, 2 * np.pi, n_points))
    radii = rng.uniform(8, 60, n_points) * np.where(np.arange(n_points) % 2, 0.45, 1.0)
    return np.stack([cx + radii * np.cos(angles), cy + radii * np.sin(angles)], 1).astype(np.float32)


FAMILIES = {
    "rotated_quads": lambda rng, h, w: [random_quad(rng, h, w) for _ in range(30)],
    "clipped": lambda rng, h, w: [random_quad(rng, h, w) + rng.choice([-60, 60], 2) for _ in range(20)],
    "concave_many_vertex": lambda rng, h, w: [star(rng, h, w, int(rng.integers(16, 33))) for _ in range(12)],
    "tiny": lambda rng, h, w: [random_quad(rng, h, w, 1, 14) for _ in range(40)],
    "overlapping": lambda rng, h, w: [random_quad(rng, 80, 80) + 40 for _ in range(25)],
    "degenerate": lambda rng, h, w: [
        np.array([[10, 10], [60, 10], [60, 10], [10, 10.5]], np.float32),  # zero-height sliver
        np.array([[20, 20], [20, 20], [20, 20]], np.float32),  # a point
        np.array([[5, 5], [80, 60], [80, 5], [5, 60]], np.float32),  # bow-tie (self-intersecting)
        np.array([[30, 30], [90, 30], [90, 30.2], [90, 70], [30, 70]], np.float32),  # near-duplicate vertex
    ],
}


@pytest.mark.parametrize("family", sorted(FAMILIES))
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_oracle_on_random_polygons(family, seed):
    rng = np.random.default_rng(seed)
    h, w = (160, 224) if seed % 2 else (200, 150)
    polygons = FAMILIES[family](rng, h, w)
    ignore = list(rng.random(len(polygons)) < 0.15)
    maps = assert_matches_oracle(polygons, ignore, h, w)
    assert set(np.unique(maps["shrink"])) <= {0.0, 1.0}
    assert CFG.thresh_min - 1e-6 <= maps["thresh"].min() and maps["thresh"].max() <= CFG.thresh_max + 1e-6


def test_matches_oracle_with_other_settings():
    rng = np.random.default_rng(5)
    polygons = [random_quad(rng, 128, 128) for _ in range(15)]
    cfg = MapsConfig(shrink_ratio=0.6, thresh_min=0.2, thresh_max=0.9, min_text_size=4)
    assert_matches_oracle(polygons, [False] * 15, 128, 128, cfg)


@pytest.mark.parametrize("size", [None, (640, 640), (736, 1280), (480, 320)])
def test_matches_oracle_on_icdar_sample(icdar_sample, size):
    for sample in load_icdar_dir(icdar_sample).samples:
        transform = plan_resize((720, 1280), size or (720, 1280), keep_ratio=False)
        polygons = [transform.forward(p) for p in sample.polygons]
        assert_matches_oracle(polygons, sample.ignore, *transform.padded_size)


def test_ignore_rules():
    h, w = 100, 100
    care = np.array([[10, 10], [60, 10], [60, 30], [10, 30]], np.float32)
    dont_care = care + [0, 50]
    too_small = np.array([[70, 70], [95, 70], [95, 76], [70, 76]], np.float32)  # 6 px tall
    maps = make_db_maps([care, dont_care, too_small], [False, True, False], h, w, CFG)
    assert maps.shrink[20, 35] == 1 and maps.shrink_mask[20, 35] == 1
    assert maps.shrink[70, 35] == 0 and maps.shrink_mask[70, 35] == 0  # ### is masked out
    assert maps.shrink_mask[73, 80] == 0 and maps.shrink[73, 80] == 0  # tiny text is masked out
    assert maps.thresh_mask[70, 35] == 0 and maps.thresh_mask[73, 80] == 0  # no border supervision
    assert maps.thresh_mask[20, 35] == 1 and maps.thresh_mask[9, 35] == 1  # dilation reaches past the edge
    assert maps.thresh[10, 35] == pytest.approx(CFG.thresh_max, abs=1e-6)  # on the edge: max


def test_split_shrink_fills_every_piece():
    """A dumbbell whose shrink splits in two: both pieces are text (PaddleOCR's rule, not DB's)."""
    dumbbell = (
        np.array(
            [
                [0, 0],
                [40, 0],
                [40, 18],
                [60, 18],
                [60, 0],
                [100, 0],
                [100, 40],
                [60, 40],
                [60, 22],
                [40, 22],
                [40, 40],
                [0, 40],
            ],
            np.float32,
        )
        + 10
    )
    pieces = offset_polygon(dumbbell, -dumbbell_offset(dumbbell))
    assert len(pieces) == 2
    maps = make_db_maps([dumbbell], [False], 70, 130, CFG)
    n_labels, _ = cv2.connectedComponents(maps.shrink.astype(np.uint8))
    assert n_labels - 1 == 2


def dumbbell_offset(polygon):
    area, perimeter, _ = polygon_measures(polygon)
    return area * (1 - CFG.shrink_ratio**2) / perimeter


def test_empty_image_maps():
    maps = make_db_maps([], [], 32, 48, CFG)
    assert maps.shrink.sum() == 0 and maps.shrink_mask.min() == 1 and maps.thresh_mask.sum() == 0
    assert np.all(maps.thresh == np.float32(CFG.thresh_min))

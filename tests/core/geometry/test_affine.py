"""The fused warp's geometry: matrices in the pixel-edge convention move pixels (through
OpenCV's centre convention) exactly as they move polygons."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from conftest import random_quad
from ocrkit.core.config import AugmentConfig, DataConfig
from ocrkit.core.data.augment import FusedAugmenter, warp_to_fit
from ocrkit.core.geometry import affine
from ocrkit.core.geometry.transform import plan_resize

SUBPIXEL_BITS = 8  # fillPoly's fixed-point vertices: polygons rendered to 1/256 px


def render(polygons: list[np.ndarray], shape: tuple[int, int]) -> np.ndarray:
    """Fill edge-convention polygons: OpenCV's pixel (i, j) is the point (i + ½, j + ½)."""
    mask = np.zeros(shape, np.uint8)
    for polygon in polygons:
        fixed = np.rint((np.asarray(polygon, np.float64) - 0.5) * 2**SUBPIXEL_BITS).astype(np.int32)
        cv2.fillPoly(mask, [fixed], 255, lineType=cv2.LINE_8, shift=SUBPIXEL_BITS)
    return mask


def warp(image: np.ndarray, matrix: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    fit = plan_resize(size, size, keep_ratio=True, pad_to_target=True)
    return np.ascontiguousarray(warp_to_fit(image, matrix, fit)[..., :3])


@pytest.fixture
def picture() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (40, 56, 3), dtype=np.uint8)


def test_quarter_turn_flip_and_whole_pixel_shift_move_pixels_exactly(picture):
    h, w = picture.shape[:2]
    turn, canvas = affine.fit_canvas(affine.rotation_scaling(1.0, 90.0), (h, w))
    assert canvas == (w, h)
    assert np.array_equal(warp(picture, turn, canvas), np.rot90(picture))  # counter-clockwise
    assert np.array_equal(warp(picture, affine.mirror_x(w), (h, w)), picture[:, ::-1])
    shifted = warp(picture, affine.translation(3, 2), (h, w))
    assert np.array_equal(shifted[2:, 3:], picture[:-2, :-3]) and not shifted[:2].any() and not shifted[:, :3].any()
    # the same matrices move the corner points as they moved the pixels
    assert np.allclose(affine.apply(turn, [[0, 0], [w, 0]]), [[0, w], [0, 0]], atol=1e-9)
    assert np.allclose(affine.apply(affine.mirror_x(w), [[1, 5]]), [[w - 1, 5]])


def test_fit_canvas_holds_the_whole_rotated_image():
    rng = np.random.default_rng(1)
    for _ in range(50):
        scale, angle = rng.uniform(0.3, 2.5), rng.uniform(-180, 180)
        size = (int(rng.integers(5, 300)), int(rng.integers(5, 300)))
        matrix, (ch, cw) = affine.fit_canvas(affine.rotation_scaling(scale, angle), size)
        corners = affine.apply(matrix, [[0, 0], [size[1], 0], [size[1], size[0]], [0, size[0]]])
        assert corners.min() > -1e-3 and corners[:, 0].max() <= cw + 1e-3 and corners[:, 1].max() <= ch + 1e-3
        assert corners[:, 0].max() > cw - 1 and corners[:, 1].max() > ch - 1  # no slack


@pytest.mark.parametrize("crop", ["db", "fixed"])
def test_fused_warp_moves_polygons_exactly_as_it_moves_pixels(crop):
    """A polygon rendered into the image and warped agrees with the polygon mapped by the same
    matrix and rendered afterwards, up to the bilinear blur of its one-pixel rim."""
    cfg = DataConfig(train_size=(96, 128), augment=AugmentConfig(scale=(0.5, 2.0), rotate=30, flip=0.5, crop=crop))
    augmenter = FusedAugmenter(cfg)
    rng = np.random.default_rng(2)
    compared = 0
    for seed in range(40):
        h, w = int(rng.integers(80, 300)), int(rng.integers(80, 300))
        quad = random_quad(rng, h, w, min_side=20, max_side=70).astype(np.float32)
        image = np.repeat(render([quad], (h, w))[..., None], 3, axis=2)
        gens = np.random.default_rng(seed).spawn(2)
        matrix, fit, polys, _ = augmenter.plan(gens[0], gens[1], (h, w), [quad], [False])
        warped = warp_to_fit(image, matrix, fit)[..., 0]
        expected = render([affine.apply(matrix, quad)], fit.padded_size)
        rim = cv2.dilate(cv2.Canny(expected, 1, 1), np.ones((3, 3), np.uint8)) > 0
        rim |= cv2.dilate(cv2.Canny((warped > 127).astype(np.uint8) * 255, 1, 1), np.ones((3, 3), np.uint8)) > 0
        # only where the source image is (a polygon may stick out of it) and inside the content
        seen = warp_to_fit(np.full_like(image, 255), matrix, fit)[..., 0] == 255
        inside, outside = (expected > 0) & ~rim & seen, (expected == 0) & ~rim & seen
        assert (warped[inside] > 127).all() and (warped[outside] <= 127).all(), f"seed {seed}"
        if polys:  # the kept polygon is the one the matrix mapped
            assert np.allclose(polys[0], affine.apply(matrix, quad)) or np.allclose(
                polys[0], affine.apply(matrix, quad)[::-1]
            )
            compared += inside.sum() > 0
    assert compared >= 30


def test_a_strong_shrink_is_area_resized_first_and_still_lands_on_the_polygon(monkeypatch):
    """Below AREA_BELOW the warp first area-resizes the source (no skipped pixels), and the
    corrected matrix puts the pixels where the same matrix puts the polygon."""
    import ocrkit.core.data.augment as augment

    resized = []
    real_resize = augment.cv2.resize
    monkeypatch.setattr(augment.cv2, "resize", lambda *a, **k: resized.append(a[1]) or real_resize(*a, **k))
    h, w = 301, 397
    quad = np.array([[40.5, 60.25], [350, 80], [330, 250.5], [60, 230]], np.float32)
    image = np.repeat(render([quad], (h, w))[..., None], 3, axis=2)
    matrix, canvas = affine.fit_canvas(affine.rotation_scaling(0.3, 17.0), (h, w))
    fit = plan_resize(canvas, canvas, keep_ratio=True, pad_to_target=True)
    warped = warp_to_fit(image, matrix, fit)[..., 0]
    assert resized == [(round(w * 0.3), round(h * 0.3))]
    expected = render([affine.apply(matrix, quad)], fit.padded_size) > 0
    rim = cv2.dilate(cv2.Canny(expected.astype(np.uint8) * 255, 1, 1), np.ones((5, 5), np.uint8)) > 0
    assert (warped[expected & ~rim] > 127).all() and (warped[~expected & ~rim] <= 127).all()
    assert (expected & ~rim).sum() > 500
    # an ordinary shrink (above AREA_BELOW) is one warp, no resize
    resized.clear()
    matrix, canvas = affine.fit_canvas(affine.rotation_scaling(0.8, 17.0), (h, w))
    warp_to_fit(image, matrix, plan_resize(canvas, canvas, keep_ratio=True, pad_to_target=True))
    assert resized == []

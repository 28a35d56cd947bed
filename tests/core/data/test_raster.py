"""data/raster.py draws exactly the pixels cv2.fillPoly draws, lines and clipping included."""

from __future__ import annotations

import cv2
import numpy as np
import pyclipper
import pytest
import torch

from ocrkit.core.data.raster import Groups, fill_groups


def random_polygon(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Star-shaped (sorted angles) or arbitrary (self-intersecting) integer polygons, some
    reaching far outside the image."""
    n = int(rng.integers(3, 10))
    if rng.random() < 0.5:
        centre, radius = rng.uniform(-10, max(h, w) + 10, 2), rng.uniform(1, 40)
        angles = np.sort(rng.uniform(0, 2 * np.pi, n))
        points = centre + radius * np.stack([np.cos(angles), np.sin(angles)], axis=1)
    else:
        points = rng.uniform(-20, [w + 20, h + 20], (n, 2))
    return np.rint(points).astype(np.int32)


def reference(groups: list[tuple[int, list[np.ndarray]]], batch: int, h: int, w: int) -> np.ndarray:
    out = np.zeros((batch, h, w), np.uint8)
    for image, polygons in groups:
        cv2.fillPoly(out[image], polygons, 1)
    return out.astype(bool)


@pytest.mark.parametrize("seed", range(4))
def test_fill_equals_opencv_on_random_polygons(seed):
    rng = np.random.default_rng(seed)
    for _ in range(60):
        h, w, batch = int(rng.integers(4, 70)), int(rng.integers(4, 70)), 3
        groups = [
            (int(rng.integers(batch)), [random_polygon(rng, h, w) for _ in range(int(rng.integers(1, 4)))])
            for _ in range(int(rng.integers(1, 6)))
        ]
        ours = fill_groups(Groups.build(groups, torch.device("cpu")), batch, h, w).numpy()
        assert np.array_equal(ours, reference(groups, batch, h, w))


def test_fill_equals_opencv_on_round_offsets():
    """The polygons the maps really fill: pyclipper's round-join offsets, shrunk and dilated."""
    rng = np.random.default_rng(7)
    groups = []
    for _ in range(80):
        quad = rng.uniform(-10, 110, (4, 2))
        offsetter = pyclipper.PyclipperOffset()
        offsetter.AddPath(quad.tolist(), pyclipper.JT_ROUND, pyclipper.ET_CLOSEDPOLYGON)
        for delta in (-3.0, 6.0):
            pieces = [np.asarray(p, np.int32) for p in offsetter.Execute(delta)]
            if pieces:
                groups.append((int(rng.integers(2)), pieces))
    ours = fill_groups(Groups.build(groups, torch.device("cpu")), 2, 96, 100).numpy()
    assert np.array_equal(ours, reference(groups, 2, 96, 100))


def test_nothing_to_fill():
    assert not fill_groups(Groups.build([], torch.device("cpu")), 2, 8, 8).any()
    far = [(0, [np.array([[-50, -50], [-40, -50], [-40, -40]], np.int32)])]
    assert not fill_groups(Groups.build(far, torch.device("cpu")), 1, 8, 8).any()

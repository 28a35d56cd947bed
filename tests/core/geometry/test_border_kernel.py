"""The numba border kernel: polygon measures and the exact segment distance of the threshold map."""

import numpy as np
import pytest

from ocrkit.core.geometry.border_kernel import draw_border_closeness, polygon_measures


def test_polygon_measures():
    rectangle = np.array([[10, 10], [50, 10], [50, 30], [10, 30]], np.float32)
    assert polygon_measures(rectangle) == pytest.approx((800.0, 120.0, 20.0))
    assert polygon_measures(rectangle[::-1].copy()) == pytest.approx((800.0, 120.0, 20.0))  # |area|


def border(polygon, distance, h=60, w=60):
    canvas = np.zeros((h, w), np.float32)
    corners = np.array([[0, 0], [w - 1, h - 1]], np.int32)  # the whole canvas as the dilated box
    draw_border_closeness(np.asarray(polygon, np.float32), distance, corners, canvas)
    return canvas


def test_border_kernel_uses_the_exact_segment_distance():
    canvas = border([[10, 10], [50, 10], [50, 30], [10, 30]], 6.0)
    assert canvas[7, 30] == pytest.approx(0.5)  # 3 px above the top edge
    assert canvas[33, 53] == pytest.approx(1 - np.hypot(3, 3) / 6)  # past a corner: to the vertex
    assert canvas[10, 50] == pytest.approx(1.0)  # on a vertex
    assert canvas[20, 30] < 1e-9 and canvas[3, 30] < 1e-9  # 10 px inside, 7 px outside: beyond D
    assert canvas[20, 13] == pytest.approx(0.5)  # inside, 3 px from the left edge


def test_border_kernel_on_a_point_polygon_and_clipped_box():
    point = border([[20, 20], [20, 20], [20, 20]], 5.0)
    assert point[20, 23] == pytest.approx(0.4) and point[24, 23] < 1e-9  # distance 3, then exactly D
    canvas = np.full((40, 40), 0.25, np.float32)
    box = np.array([[-10, -10], [15, 15]], np.int32)  # reaches off the canvas: clipped, no error
    draw_border_closeness(np.array([[0, 0], [8, 0], [8, 8], [0, 8]], np.float32), 4.0, box, canvas)
    assert canvas[0, 4] == 1 and canvas[20, 20] == 0.25  # max-merged; untouched outside the box
    assert canvas[4, 4] == 0.25  # 4 px from every edge: closeness ~0 < what was there

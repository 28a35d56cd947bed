"""2-D affine maps for the fused training warp (numpy only).

Convention: continuous pixel-EDGE coordinates, in which pixel (i, j) covers [i, i+1) × [j, j+1)
and the image of size (h, w) spans [0, w] × [0, h]. Polygon vertices are taken to be in this
convention, as ``ResizeTransform.forward`` (p · scale) and ``cv2.resize`` treat them. OpenCV's
``warpAffine`` samples at integer pixel centres instead, so ``to_opencv`` shifts the matrix by
half a pixel on both sides: the pixels and the polygons then move by exactly the same map.

Matrices are 3×3 float64 (the last row 0 0 1) so that they compose by ``@``.
"""

from __future__ import annotations

import math

import numpy as np


def translation(dx: float, dy: float) -> np.ndarray:
    return np.array([[1.0, 0.0, dx], [0.0, 1.0, dy], [0.0, 0.0, 1.0]])


def scaling(sx: float, sy: float) -> np.ndarray:
    return np.array([[sx, 0.0, 0.0], [0.0, sy, 0.0], [0.0, 0.0, 1.0]])


def rotation_scaling(scale: float, degrees: float) -> np.ndarray:
    """Rotate by ``degrees`` (counter-clockwise on screen, where y points down) and scale, about
    the origin."""
    theta = math.radians(degrees)
    c, s = scale * math.cos(theta), scale * math.sin(theta)
    return np.array([[c, s, 0.0], [-s, c, 0.0], [0.0, 0.0, 1.0]])


def mirror_x(width: float) -> np.ndarray:
    """x → width − x: a horizontal flip of an image ``width`` wide."""
    return np.array([[-1.0, 0.0, width], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])


def apply(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """``points`` (n, 2) mapped by ``matrix``, float32 (the polygons' dtype)."""
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    return (pts @ matrix[:2, :2].T + matrix[:2, 2]).astype(np.float32)


def fit_canvas(matrix: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, tuple[int, int]]:
    """``matrix`` followed by the translation that puts the mapped image's bounding box at the
    origin, and that box's size (h, w) rounded up to whole pixels: the canvas on which nothing of
    the image is lost (albumentations' ``fit_output``)."""
    h, w = size
    corners = apply(matrix, np.array([[0, 0], [w, 0], [w, h], [0, h]], dtype=np.float64)).astype(np.float64)
    low, high = corners.min(axis=0), corners.max(axis=0)
    # 1e-6: a 90° turn of 100 px spans 100.00000000000001, which must not round up to 101
    canvas_w, canvas_h = (max(1, math.ceil(v - 1e-6)) for v in high - low)
    return translation(-low[0], -low[1]) @ matrix, (canvas_h, canvas_w)


def to_opencv(matrix: np.ndarray) -> np.ndarray:
    """The 2×3 matrix ``cv2.warpAffine`` needs to move pixels as ``matrix`` moves edge-convention
    points: OpenCV's pixel (i, j) is the point (i + ½, j + ½) here."""
    return (translation(-0.5, -0.5) @ matrix @ translation(0.5, 0.5))[:2]

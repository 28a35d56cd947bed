"""The compiled part of the DB label maps (numba): per-polygon measures and the border kernel.

Why compiled: the threshold map needs, for every pixel near a polygon, the exact distance to its
nearest edge. Vectorised numpy evaluated every edge over the whole bounding box of the dilated
polygon (2.3 M pixel-edge pairs per image for 100 rotated quads at 640×640) in a dozen passes
over memory, ~6 ms; and a few numpy calls on 4-point arrays cost more than the arithmetic.
Here each edge visits only the pixels of its own band (the rectangle of half-width D around the
segment, extended by D at both ends: outside it the edge is farther than D and cannot change the
result, which is clipped at D), 6.5× fewer pairs, and the minimum stays in one small buffer.

Both functions are plain loops with the arithmetic of the oracle (``reference_maps.py``):
projection clamped to the segment, squared distance, one square root per pixel, all in float64
(``np.float64(v)``: numba's ``float(v)`` keeps a float32 vertex in float32, which moved D enough
to change the shrink map of clipped polygons). ``fastmath``
lets LLVM vectorise the min/max loops; it changes results by a few ulps at most, far inside the
1e-3 the tests allow (measured: 1.1e-6). ``cache=True`` keeps the machine code beside the module
(or in numba's user cache where that is read-only), so a process compiles once, not per run.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def polygon_measures(polygon: np.ndarray) -> tuple[float, float, float]:
    """|Shoelace area|, perimeter and the shorter side of the bounding box, in float64."""
    n = polygon.shape[0]
    twice_area = 0.0
    perimeter = 0.0
    x_min = x_max = np.float64(polygon[0, 0])
    y_min = y_max = np.float64(polygon[0, 1])
    for i in range(n):
        j = i + 1 if i + 1 < n else 0
        ax, ay = np.float64(polygon[i, 0]), np.float64(polygon[i, 1])
        bx, by = np.float64(polygon[j, 0]), np.float64(polygon[j, 1])
        twice_area += ax * by - bx * ay
        perimeter += math.hypot(bx - ax, by - ay)
        x_min, x_max = min(x_min, ax), max(x_max, ax)
        y_min, y_max = min(y_min, ay), max(y_max, ay)
    return abs(twice_area) / 2, perimeter, min(x_max - x_min, y_max - y_min)


@njit(cache=True, nogil=True, inline="always")
def _slab_on_row(cx, cy, c, low, high, y, x_from, x_to):
    """The x interval of row ``y`` where low ≤ cx·x + cy·y + c ≤ high, within [x_from, x_to]
    (empty when the result has from > to)."""
    r = cy * y + c
    if cx == 0.0:
        return (x_from, x_to) if low <= r <= high else (1.0, 0.0)
    u, v = (low - r) / cx, (high - r) / cx
    if u > v:
        u, v = v, u
    return max(x_from, u), min(x_to, v)


@njit(cache=True, nogil=True, fastmath=True)
def draw_border_closeness(polygon: np.ndarray, distance: float, dilated: np.ndarray, canvas: np.ndarray) -> None:
    """Max-merge 1 − min(d/D, 1) into ``canvas`` over the dilated polygon's bounding box (clipped
    to the canvas), d the exact distance to the nearest edge of ``polygon`` and D ``distance``."""
    h, w = canvas.shape
    x0 = max(0, dilated[:, 0].min())
    y0 = max(0, dilated[:, 1].min())
    x1 = min(w - 1, dilated[:, 0].max())
    y1 = min(h - 1, dilated[:, 1].max())
    if x1 < x0 or y1 < y0:
        return
    d2 = distance * distance
    nearest = np.full((y1 - y0 + 1, x1 - x0 + 1), d2)  # squared distance, capped at D²
    row_from = np.full(y1 - y0 + 1, x1 - x0 + 1)  # the columns any band touched, per row
    row_to = np.full(y1 - y0 + 1, -1)
    n = polygon.shape[0]
    for i in range(n):
        j = i + 1 if i + 1 < n else 0
        ax, ay = np.float64(polygon[i, 0]), np.float64(polygon[i, 1])
        dx, dy = np.float64(polygon[j, 0]) - ax, np.float64(polygon[j, 1]) - ay
        length2 = dx * dx + dy * dy
        inverse = 1.0 / length2 if length2 > 0 else 0.0  # a point edge: t = 0, distance to a
        length = math.sqrt(length2)
        ux, uy = (dx / length, dy / length) if length > 0 else (1.0, 0.0)
        for y in range(
            max(y0, int(math.floor(min(ay, ay + dy) - distance))),
            min(y1, int(math.ceil(max(ay, ay + dy) + distance))) + 1,
        ):
            # the band: −D ≤ along ≤ L + D and |across| ≤ D, (along, across) relative to a
            low, high = _slab_on_row(ux, uy, -(ux * ax + uy * ay), -distance, length + distance, y, x0, x1)
            low, high = _slab_on_row(-uy, ux, uy * ax - ux * ay, -distance, distance, y, low, high)
            first, last = max(x0, int(math.floor(low))), min(x1, int(math.ceil(high)))
            if first > last:
                continue
            row_from[y - y0] = min(row_from[y - y0], first - x0)
            row_to[y - y0] = max(row_to[y - y0], last - x0)
            # a slice and a 0-based counter: with x − x0 indices numba must check for negative
            # (wrap-around) indices, which keeps LLVM from vectorising the loop (2.2× slower)
            span = nearest[y - y0, first - x0 : last - x0 + 1]
            px0, py = first - ax, y - ay
            for k in range(span.shape[0]):
                px = px0 + k
                t = min(max((px * dx + py * dy) * inverse, 0.0), 1.0)
                ex, ey = px - t * dx, py - t * dy
                span[k] = min(span[k], ex * ex + ey * ey)
    for r in range(y1 - y0 + 1):
        if row_to[r] < row_from[r]:
            continue
        span = nearest[r, row_from[r] : row_to[r] + 1]
        out = canvas[y0 + r, x0 + row_from[r] : x0 + row_to[r] + 1]
        for k in range(span.shape[0]):  # beyond D: closeness 0, which the max leaves alone
            out[k] = max(out[k], 1.0 - math.sqrt(min(span[k], d2)) / distance)

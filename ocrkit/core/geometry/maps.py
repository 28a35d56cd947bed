"""DB label maps (numpy/opencv/pyclipper only), in DB's order.

1. Vertices are clipped to the image; a polygon is ignored when it is don't-care, |area| < 1,
   its bounding box's shorter side < ``min_text_size``, or its shrink comes back empty. Ignored
   polygons are filled with 0 in the shrink mask.
2. Shrink map: offset by D = A·(1 − r²)/L inwards (round joins); EVERY piece of a shrink that
   splits is filled with 1 (PaddleOCR's choice; DB fills only the first piece, which leaves the
   other pieces labelled "not text" although they are text).
3. Threshold map: for each non-ignored polygon, dilate by +D; inside the dilated polygon's
   bounding box (clipped to the image) each pixel gets 1 − min(1, d/D), d being the EXACT
   distance to the nearest polygon edge (point-to-segment, not DB's law-of-cosines shortcut);
   merged with max and scaled to [thresh_min, thresh_max]. Threshold mask = filled dilated
   polygons.

``reference_maps.py`` holds the plain per-edge oracle this module is tested against.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import pyclipper

from ocrkit.core.config import MapsConfig
from ocrkit.core.geometry.transform import ResizeTransform


@dataclass
class DBMaps:
    """The four training targets of one image, float32 (H, W)."""

    shrink: np.ndarray
    shrink_mask: np.ndarray
    thresh: np.ndarray
    thresh_mask: np.ndarray

    def as_dict(self) -> dict[str, np.ndarray]:
        return {
            "shrink": self.shrink,
            "shrink_mask": self.shrink_mask,
            "thresh": self.thresh,
            "thresh_mask": self.thresh_mask,
        }


def _next_vertices(polygon: np.ndarray) -> np.ndarray:
    """Each vertex's successor around the ring (np.roll costs 7 µs a call; this costs 1)."""
    return np.concatenate((polygon[1:], polygon[:1]))


def polygon_area(polygon: np.ndarray) -> float:
    """Signed shoelace area (positive for counter-clockwise in x-right, y-up axes)."""
    p = np.asarray(polygon, np.float64)
    q = _next_vertices(p)
    return 0.5 * float(np.dot(p[:, 0], q[:, 1]) - np.dot(q[:, 0], p[:, 1]))


def polygon_perimeter(polygon: np.ndarray) -> float:
    p = np.asarray(polygon, np.float64)
    edges = _next_vertices(p) - p
    return float(np.hypot(edges[:, 0], edges[:, 1]).sum())


def offset_distance(polygon: np.ndarray, shrink_ratio: float) -> float:
    """DB's D = A·(1 − r²)/L, the distance by which a text polygon is shrunk or dilated."""
    perimeter = polygon_perimeter(polygon)
    if perimeter <= 0:
        return 0.0
    return abs(polygon_area(polygon)) * (1 - shrink_ratio**2) / perimeter


def offset_polygon(polygon: np.ndarray, distance: float) -> list[np.ndarray]:
    """pyclipper offset with round joins; negative shrinks. Returns the pieces (int32 (n, 2))."""
    offsetter = pyclipper.PyclipperOffset()
    offsetter.AddPath(polygon.tolist(), pyclipper.JT_ROUND, pyclipper.ET_CLOSEDPOLYGON)
    return [np.asarray(piece, dtype=np.int32).reshape(-1, 2) for piece in offsetter.Execute(distance)]


def clip_to_image(polygons: list[np.ndarray], h: int, w: int) -> list[np.ndarray]:
    """Clamp every vertex into [0, w−1]×[0, h−1] (DB's rule; not a geometric clip)."""
    out = []
    for polygon in polygons:
        p = np.asarray(polygon, dtype=np.float32).reshape(-1, 2).copy()
        np.clip(p[:, 0], 0, w - 1, out=p[:, 0])
        np.clip(p[:, 1], 0, h - 1, out=p[:, 1])
        out.append(p)
    return out


def _too_small(polygon: np.ndarray, min_text_size: float) -> bool:
    extent = polygon.max(axis=0) - polygon.min(axis=0)
    return bool(min(extent) < min_text_size)


def draw_shrink(
    polygons: list[np.ndarray], ignore: list[bool], h: int, w: int, cfg: MapsConfig
) -> tuple[np.ndarray, np.ndarray, list[float | None]]:
    """Shrink map, shrink mask, and each polygon's offset distance D (None where the polygon is
    ignored: the threshold map skips it)."""
    shrink = np.zeros((h, w), dtype=np.float32)
    mask = np.ones((h, w), dtype=np.float32)
    distances: list[float | None] = []
    for polygon, flag in zip(polygons, ignore, strict=True):
        pieces: list[np.ndarray] = []
        distance = 0.0
        if not (flag or _too_small(polygon, cfg.min_text_size)):
            area, perimeter = abs(polygon_area(polygon)), polygon_perimeter(polygon)
            if area >= 1 and perimeter > 0:
                distance = area * (1 - cfg.shrink_ratio**2) / perimeter
                pieces = offset_polygon(polygon, -distance)
        if pieces:
            cv2.fillPoly(shrink, pieces, 1.0)
        else:
            cv2.fillPoly(mask, [polygon.astype(np.int32)], 0.0)
        distances.append(distance if pieces else None)
    return shrink, mask, distances


def nearest_segment_distance(
    xs: np.ndarray, ys: np.ndarray, starts: np.ndarray, ends: np.ndarray
) -> np.ndarray:
    """Exact distance of every grid pixel to its nearest segment: (len(ys), len(xs)), float32.

    All edges at once (vectorised over edges), in place wherever possible (two (edges, ys, xs)
    temporaries instead of seven), minimum over squared distances and one square root at the
    end; degenerate edges fall back to the distance to their point.
    """
    ax, ay = starts[:, 0, None, None], starts[:, 1, None, None]
    dx = (ends[:, 0] - starts[:, 0])[:, None, None]
    dy = (ends[:, 1] - starts[:, 1])[:, None, None]
    length2 = dx * dx + dy * dy
    px = xs[None, None, :] - ax  # (edges, 1, xs): the x and y parts stay one-dimensional
    py = ys[None, :, None] - ay  # (edges, ys, 1)
    t = px * dx + py * dy
    t /= np.where(length2 > 0, length2, 1)
    np.clip(t, 0, 1, out=t)
    ex = t * dx
    np.subtract(px, ex, out=ex)
    ex *= ex
    t *= dy  # t is not needed any more: reuse it for the y residual
    np.subtract(py, t, out=t)
    t *= t
    ex += t
    nearest = ex.min(axis=0)
    return np.sqrt(nearest, out=nearest)


def draw_border(polygon: np.ndarray, distance: float, canvas: np.ndarray, mask: np.ndarray) -> None:
    """Add one polygon's 1 − d/D border to ``canvas`` (max-merge) and its dilation by D to ``mask``."""
    if distance <= 0:
        return
    dilated = offset_polygon(polygon, distance)
    if not dilated:
        return
    cv2.fillPoly(mask, [dilated[0]], 1.0)
    h, w = canvas.shape
    x0, y0 = np.maximum(dilated[0].min(axis=0), 0)
    x1, y1 = np.minimum(dilated[0].max(axis=0), [w - 1, h - 1])
    if x1 < x0 or y1 < y0:
        return
    xs = np.arange(x0, x1 + 1, dtype=np.float32)
    ys = np.arange(y0, y1 + 1, dtype=np.float32)
    edges_from = polygon.astype(np.float32)
    closeness = nearest_segment_distance(xs, ys, edges_from, _next_vertices(edges_from))
    closeness /= np.float32(distance)  # in place: 1 - min(d / D, 1)
    np.minimum(closeness, 1, out=closeness)
    np.subtract(1, closeness, out=closeness)
    region = canvas[y0 : y1 + 1, x0 : x1 + 1]
    np.maximum(region, closeness, out=region)


def make_db_maps(
    polygons: list[np.ndarray], ignore: list[bool], h: int, w: int, cfg: MapsConfig
) -> DBMaps:
    """All four DB targets for polygons given in the (h, w) image's own pixel coordinates."""
    clipped = clip_to_image(polygons, h, w)
    shrink, shrink_mask, distances = draw_shrink(clipped, list(ignore), h, w, cfg)
    canvas = np.zeros((h, w), dtype=np.float32)
    thresh_mask = np.zeros((h, w), dtype=np.float32)
    for polygon, distance in zip(clipped, distances, strict=True):
        if distance is not None:
            draw_border(polygon, distance, canvas, thresh_mask)
    thresh = canvas * np.float32(cfg.thresh_max - cfg.thresh_min) + np.float32(cfg.thresh_min)
    return DBMaps(shrink, shrink_mask, thresh, thresh_mask)


def make_maps_in_network_space(
    polygons: list[np.ndarray], ignore: list[bool], transform: ResizeTransform, cfg: MapsConfig
) -> DBMaps:
    """Maps on the padded network input for polygons given in original-image coordinates."""
    h, w = transform.padded_size
    return make_db_maps([transform.forward(p) for p in polygons], ignore, h, w, cfg)

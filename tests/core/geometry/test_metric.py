"""Tests for the ICDAR-2015 detection metric (DB's iou.py protocol)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
from shapely.geometry import Polygon

from conftest import sample_dir
from ocrkit.core.data.formats import load_icdar_dir, write_icdar_gt, write_predictions
from ocrkit.core.data.scoring import evaluate_dirs
from ocrkit.core.errors import InputError
from ocrkit.core.geometry.metric import (
    DetectionMetrics,
    MatchedPair,
    evaluate,
    evaluate_image,
)

SAMPLE_DIR = sample_dir()
SAMPLE_CARE_BOXES = 21


def rect(x0: float, y0: float, x1: float, y1: float) -> np.ndarray:
    return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], dtype=np.float64)


def bow_tie(x0: float, y0: float, x1: float, y1: float) -> np.ndarray:
    """A self-intersecting quad: shapely calls it invalid."""
    return np.array([[x0, y0], [x1, y1], [x1, y0], [x0, y1]], dtype=np.float64)


GT_BOX = rect(0, 0, 100, 10)  # area 1000: a det rect(0, 0, w, 10) inside it has IoU w / 100


# --- don't-care regions --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("inside", "is_dontcare"),
    [(60, True), (50.01, True), (50, False), (40, False)],
)
def test_detection_is_dontcare_only_when_more_than_half_lies_in_a_dontcare_gt(inside, is_dontcare):
    # The det spans x in [-(100 - inside), inside]: `inside` percent of its 1000 px² area is in ###.
    det = rect(inside - 100, 0, inside, 10)
    result = evaluate_image([GT_BOX], [True], [det])
    assert result.counts.n_dontcare_gt == 1
    assert result.counts.n_care_gt == 0
    assert result.counts.n_dontcare_det == int(is_dontcare)
    assert result.counts.n_care_det == int(not is_dontcare)
    assert result.dontcare_det == ((0,) if is_dontcare else ())


def test_dontcare_detection_lowers_neither_precision_nor_recall():
    care_gt, dontcare_gt = rect(0, 50, 100, 60), GT_BOX
    dets = [rect(-40, 0, 60, 10), rect(0, 50, 100, 60)]  # 60% inside ###, then an exact hit
    result = evaluate_image([dontcare_gt, care_gt], [True, False], dets)
    assert result.pairs == (MatchedPair(gt=1, det=1, iou=1.0),)
    assert (result.precision, result.recall, result.hmean) == (1.0, 1.0, 1.0)


def test_detection_40_percent_inside_dontcare_is_a_false_positive():
    care_gt = rect(0, 50, 100, 60)
    dets = [rect(-60, 0, 40, 10), rect(0, 50, 100, 60)]
    result = evaluate_image([GT_BOX, care_gt], [True, False], dets)
    assert result.counts.n_care_det == 2 and result.counts.n_matched == 1
    assert result.precision == 0.5 and result.recall == 1.0


def test_dontcare_gt_is_never_matched():
    result = evaluate_image([GT_BOX], [True], [])
    assert result.counts.n_care_gt == 0 and result.counts.n_dontcare_gt == 1


# --- IoU threshold -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("width", "matched"),
    [(51, True), (50.001, True), (50, False), (49.999, False), (30, False)],
)
def test_match_needs_iou_strictly_above_half(width, matched):
    result = evaluate_image([GT_BOX], [False], [rect(0, 0, width, 10)])
    assert result.counts.n_matched == int(matched)
    if matched:
        assert result.pairs[0].iou == pytest.approx(width / 100)


@pytest.mark.parametrize("shift", [20.0, 33.0, 33.4, 40.0])
def test_shifted_box_matches_iff_computed_iou_exceeds_half(shift):
    # Same-size boxes shifted by s along x: IoU = (100 - s) / (100 + s), > 0.5 iff s < 100/3.
    expected_iou = (100 - shift) / (100 + shift)
    result = evaluate_image([GT_BOX], [False], [rect(shift, 0, 100 + shift, 10)])
    assert result.counts.n_matched == int(expected_iou > 0.5)
    if result.pairs:
        assert result.pairs[0].iou == pytest.approx(expected_iou)


# --- matching order and one-to-one ---------------------------------------------------------------


def test_matching_is_greedy_in_file_order_not_optimal():
    gts = [rect(0, 0, 100, 10), rect(20, 0, 120, 10)]
    # det0 has IoU 90/110 with both gts; det1 has IoU 80/120 with gt0 and 60/140 with gt1.
    dets = [rect(10, 0, 110, 10), rect(-20, 0, 80, 10)]
    result = evaluate_image(gts, [False, False], dets)
    # An optimal assignment (gt0-det1, gt1-det0) would match both; greedy gt0 grabs det0 first.
    assert [(p.gt, p.det) for p in result.pairs] == [(0, 0)]
    assert result.counts.n_matched == 1
    assert result.precision == 0.5 and result.recall == 0.5


def test_gt_takes_the_first_detection_above_threshold_not_the_best():
    dets = [rect(0, 0, 60, 10), rect(0, 0, 99, 10)]  # IoU 0.6, then 0.99
    result = evaluate_image([GT_BOX], [False], dets)
    assert result.pairs == (MatchedPair(gt=0, det=0, iou=pytest.approx(0.6)),)


def test_two_detections_on_one_gt_give_one_tp_and_one_fp():
    result = evaluate_image([GT_BOX], [False], [GT_BOX.copy(), rect(0, 0, 98, 10)])
    assert result.counts.n_matched == 1 and result.counts.n_care_det == 2
    assert result.precision == 0.5 and result.recall == 1.0
    assert result.hmean == pytest.approx(2 * 0.5 / 1.5)


def test_one_detection_cannot_match_two_gts():
    gts = [GT_BOX, GT_BOX.copy()]
    result = evaluate_image(gts, [False, False], [GT_BOX.copy()])
    assert result.counts.n_matched == 1
    assert result.precision == 1.0 and result.recall == 0.5


# --- invalid polygons ----------------------------------------------------------------------------


def test_invalid_gt_and_detections_are_dropped_and_counted():
    gts = [bow_tie(0, 0, 10, 10), rect(50, 0, 90, 10), np.array([[0.0, 0.0], [5.0, 5.0]])]
    dets = [bow_tie(0, 0, 10, 10), rect(50, 0, 90, 10), np.array([[0, 0], [1, 0], [2, 0]], float)]
    result = evaluate_image(gts, [False, False, False], dets)
    c = result.counts
    assert (c.invalid_gt, c.invalid_det) == (2, 2)  # bow-tie + 2-point gt; bow-tie + degenerate det
    assert (c.n_care_gt, c.n_care_det, c.n_matched) == (1, 1, 1)
    assert result.pairs == (MatchedPair(gt=1, det=1, iou=1.0),)  # indices into the input lists


def test_invalid_dontcare_gt_does_not_make_detections_dontcare():
    det = rect(0, 0, 10, 10)
    result = evaluate_image([bow_tie(0, 0, 10, 10)], [True], [det])
    assert result.counts.invalid_gt == 1 and result.counts.n_dontcare_gt == 0
    assert result.counts.n_care_det == 1 and result.counts.n_dontcare_det == 0


def test_invalid_counts_are_summed_globally():
    metrics = evaluate(
        {"a": ([bow_tie(0, 0, 5, 5)], [False]), "b": ([GT_BOX], [False])},
        {"a": [bow_tie(0, 0, 5, 5)], "b": [bow_tie(0, 0, 5, 5), GT_BOX]},
    )
    assert (metrics.invalid_gt, metrics.invalid_det) == (1, 2)
    assert (metrics.precision, metrics.recall) == (1.0, 1.0)


# --- input checks --------------------------------------------------------------------------------


def test_bad_polygon_shape_and_length_mismatch_raise():
    with pytest.raises(ValueError, match="shape"):
        evaluate_image([np.zeros(8)], [False], [])
    with pytest.raises(ValueError, match="ignore flags"):
        evaluate_image([GT_BOX], [], [])


def test_prediction_for_unknown_stem_raises_naming_it():
    with pytest.raises(ValueError, match="img_404"):
        evaluate({"img_1": ([GT_BOX], [False])}, {"img_404": [GT_BOX]})


# --- global aggregation --------------------------------------------------------------------------


def test_detections_on_images_without_care_gt_are_global_false_positives():
    gt = {
        "hit": ([GT_BOX], [False]),
        "only_dontcare": ([rect(0, 50, 100, 60)], [True]),
        "no_gt": ([], []),
    }
    det = {"hit": [GT_BOX.copy()], "only_dontcare": [rect(0, 0, 50, 10)], "no_gt": [GT_BOX.copy()]}
    metrics = evaluate(gt, det)
    assert (metrics.matched, metrics.gt_care, metrics.det_care) == (1, 1, 3)
    assert metrics.precision == pytest.approx(1 / 3) and metrics.recall == 1.0
    assert metrics.hmean == pytest.approx(2 * (1 / 3) / (4 / 3))
    # DB's per-image rule: no care gt gives recall 1, and precision 0 when there are care dets.
    no_gt = metrics.per_image["no_gt"]
    assert (no_gt.precision, no_gt.recall) == (0.0, 1.0)


def test_image_without_prediction_entry_counts_as_no_detections():
    metrics = evaluate({"a": ([GT_BOX], [False]), "b": ([GT_BOX], [False])}, {"a": [GT_BOX]})
    assert metrics.recall == 0.5 and metrics.precision == 1.0
    b = metrics.per_image["b"]
    assert (b.precision, b.recall, b.hmean) == (0.0, 0.0, 0.0)


def test_image_with_nothing_at_all_is_perfect_per_image_but_adds_nothing_globally():
    metrics = evaluate({"empty": ([], []), "a": ([GT_BOX], [False])}, {"a": [rect(0, 0, 10, 10)]})
    empty = metrics.per_image["empty"]
    assert (empty.precision, empty.recall, empty.hmean) == (1.0, 1.0, 1.0)
    assert (metrics.precision, metrics.recall, metrics.hmean) == (0.0, 0.0, 0.0)


@pytest.mark.parametrize("gt", [{}, {"a": ([], [])}, {"a": ([GT_BOX], [True])}])
def test_empty_inputs_give_zeros_without_division_errors(gt):
    metrics = evaluate(gt, {})
    assert (metrics.precision, metrics.recall, metrics.hmean) == (0.0, 0.0, 0.0)
    assert (metrics.matched, metrics.gt_care, metrics.det_care) == (0, 0, 0)
    assert metrics.images == len(gt)


def test_to_dict_is_json_serialisable_with_the_documented_keys():
    metrics = evaluate(
        {"a": ([GT_BOX, rect(0, 50, 9, 60)], [False, True]), "b": ([], [])},
        {"a": [GT_BOX, rect(0, 50, 9, 60), bow_tie(0, 0, 5, 5)]},
    )
    summary = json.loads(json.dumps(metrics.to_dict()))
    assert set(summary) == {
        "precision",
        "recall",
        "hmean",
        "matched",
        "gt_care",
        "det_care",
        "invalid_gt",
        "invalid_det",
        "images",
        "per_image",
    }
    assert summary["images"] == 2 and set(summary["per_image"]) == {"a", "b"}
    assert (summary["matched"], summary["gt_care"], summary["det_care"], summary["invalid_det"]) == (1, 1, 1, 1)
    assert summary["per_image"]["a"]["counts"] == {
        "n_care_gt": 1,
        "n_care_det": 1,
        "n_matched": 1,
        "n_dontcare_gt": 1,
        "n_dontcare_det": 1,
        "invalid_gt": 0,
        "invalid_det": 1,
    }
    assert summary["per_image"]["a"]["hmean"] == 1.0


# --- equivalence with a plain pairwise implementation --------------------------------------------


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


def test_500_images_of_10_polygons_score_fast():
    rng = np.random.default_rng(0)
    gt, det = {}, {}
    for k in range(500):
        boxes = [rect(x, y, x + 40, y + 12) for x, y in rng.uniform(0, 600, (10, 2))]
        gt[f"img_{k}"] = (boxes, [i == 9 for i in range(10)])
        det[f"img_{k}"] = [b + rng.normal(0, 0.5, 2) for b in boxes[:9]]
    start = time.perf_counter()
    metrics = evaluate(gt, det)
    elapsed = time.perf_counter() - start
    assert metrics.images == 500 and metrics.det_care > 0
    assert metrics.recall > 0.9 and metrics.precision > 0.9
    assert elapsed < 2.0, f"500×10 polygons took {elapsed:.2f}s"


# --- evaluate_dirs -------------------------------------------------------------------------------


def _write_synthetic_gt(folder: Path) -> None:
    write_icdar_gt(folder / "gt_a.txt", [GT_BOX, rect(0, 50, 100, 60)], ["HELLO", "###"], [False, True])
    write_icdar_gt(folder / "gt_b.txt", [rect(0, 0, 50, 20)], ["WORLD"], [False])


def test_evaluate_dirs_reads_written_predictions_and_accepts_both_gt_layouts(tmp_path):
    _write_synthetic_gt(tmp_path / "root" / "gts")
    preds = tmp_path / "preds"
    write_predictions(preds / "res_a.txt", [GT_BOX, rect(0, 50, 100, 60), rect(300, 300, 310, 310)], [0.9, 0.8, 0.7])
    # No res_b.txt: image b has no detections.
    for gt_dir in (tmp_path / "root", tmp_path / "root" / "gts"):
        metrics = evaluate_dirs(gt_dir, preds)
        assert metrics.images == 2
        assert (metrics.matched, metrics.gt_care, metrics.det_care) == (1, 2, 2)
        assert metrics.per_image["a"].counts.n_dontcare_det == 1
        assert (metrics.precision, metrics.recall) == (0.5, 0.5)


def test_evaluate_dirs_rejects_prediction_for_unknown_image(tmp_path):
    _write_synthetic_gt(tmp_path / "gts")
    write_predictions(tmp_path / "preds" / "res_zzz.txt", [GT_BOX])
    with pytest.raises(InputError, match="res_zzz.txt"):
        evaluate_dirs(tmp_path / "gts", tmp_path / "preds")


@pytest.mark.parametrize("make", ["missing", "empty"])
def test_evaluate_dirs_missing_or_empty_gt_dir_is_a_one_line_input_error(tmp_path, make):
    gt_dir = tmp_path / "gt"
    if make == "empty":
        gt_dir.mkdir()
    (tmp_path / "preds").mkdir()
    with pytest.raises(InputError) as info:
        evaluate_dirs(gt_dir, tmp_path / "preds")
    message = str(info.value)
    assert str(gt_dir) in message and "\n" not in message


def test_evaluate_dirs_missing_prediction_dir_is_an_input_error(tmp_path):
    _write_synthetic_gt(tmp_path / "gts")
    with pytest.raises(InputError, match="prediction directory"):
        evaluate_dirs(tmp_path / "gts", tmp_path / "nope")


# --- the real ICDAR-2015 sample ------------------------------------------------------------------


@pytest.fixture(scope="module")
def sample():
    if not (SAMPLE_DIR / "gts").is_dir():
        pytest.skip(f"ICDAR-2015 sample not found at {SAMPLE_DIR} (set OCRKIT_SAMPLE_DIR)")
    return load_icdar_dir(SAMPLE_DIR).samples


def _gt_of(samples) -> dict:
    return {s.stem: (s.polygons, s.ignore) for s in samples}


def _care_polygons(s) -> list[np.ndarray]:
    return [p for p, flag in zip(s.polygons, s.ignore, strict=True) if not flag]


def test_sample_gt_as_predictions_scores_perfectly(sample):
    metrics = evaluate(_gt_of(sample), {s.stem: _care_polygons(s) for s in sample})
    assert (metrics.gt_care, metrics.det_care, metrics.matched) == (SAMPLE_CARE_BOXES,) * 3
    assert (metrics.precision, metrics.recall, metrics.hmean) == (1.0, 1.0, 1.0)
    assert metrics.invalid_gt == 0


def test_sample_dontcare_polygons_as_predictions_do_not_lower_precision(sample):
    metrics = evaluate(_gt_of(sample), {s.stem: list(s.polygons) for s in sample})
    assert metrics.det_dontcare == metrics.gt_dontcare > 0
    assert metrics.det_care == SAMPLE_CARE_BOXES
    assert (metrics.precision, metrics.recall, metrics.hmean) == (1.0, 1.0, 1.0)


def test_sample_every_second_care_box_gives_recall_11_of_21(sample):
    det, counter = {}, 0
    for s in sample:
        det[s.stem] = []
        for polygon in _care_polygons(s):
            if counter % 2 == 0:
                det[s.stem].append(polygon)
            counter += 1
    metrics = evaluate(_gt_of(sample), det)
    assert counter == SAMPLE_CARE_BOXES
    assert metrics.recall == 11 / 21 and metrics.precision == 1.0
    assert metrics.hmean == pytest.approx(2 * (11 / 21) / (1 + 11 / 21))


def test_sample_evaluate_dirs_with_written_prediction_files(sample, tmp_path):
    skipped = next(s for s in sample if _care_polygons(s))  # this image gets no res file
    for s in sample:
        if s is not skipped:
            polygons = list(s.polygons)
            write_predictions(tmp_path / f"res_{s.stem}.txt", polygons, [0.9] * len(polygons))
    metrics = evaluate_dirs(SAMPLE_DIR, tmp_path)
    expected = SAMPLE_CARE_BOXES - len(_care_polygons(skipped))
    assert isinstance(metrics, DetectionMetrics) and metrics.images == len(sample)
    assert metrics.matched == expected and metrics.det_care == expected
    assert metrics.recall == expected / SAMPLE_CARE_BOXES and metrics.precision == 1.0

"""Tests for the ICDAR-2015 detection metric (DB's iou.py protocol)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import care_polygons as _care_polygons
from conftest import rect, sample_dir
from ocrkit.core.data.formats import load_icdar_dir
from ocrkit.core.geometry.metric import (
    MatchedPair,
    evaluate,
    evaluate_image,
)

SAMPLE_DIR = sample_dir()
SAMPLE_CARE_BOXES = 21


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


# --- the real ICDAR-2015 sample ------------------------------------------------------------------


@pytest.fixture(scope="module")
def sample():
    if not (SAMPLE_DIR / "gts").is_dir():
        pytest.skip(f"ICDAR-2015 sample not found at {SAMPLE_DIR} (set OCRKIT_SAMPLE_DIR)")
    return load_icdar_dir(SAMPLE_DIR).samples


def _gt_of(samples) -> dict:
    return {s.stem: (s.polygons, s.ignore) for s in samples}


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

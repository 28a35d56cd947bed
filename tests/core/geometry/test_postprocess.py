"""Post-processing: boxes from a probability map, their scores and filters, mapped back to the image."""

import cv2
import numpy as np
import pytest

from ocrkit.core.config import PostprocessConfig
from ocrkit.core.geometry.postprocess import (
    boxes_from_probability,
    detect_text,
    mean_score_inside,
    ordered_min_area_box,
)
from ocrkit.core.geometry.transform import plan_resize

POST = PostprocessConfig()


def test_ordered_box_corners_and_short_side():
    box, short = ordered_min_area_box(np.array([[10, 10], [50, 10], [50, 20], [10, 20]], np.float32))
    np.testing.assert_allclose(box, [[10, 10], [50, 10], [50, 20], [10, 20]], atol=1e-4)
    assert short == pytest.approx(10)


def test_mean_score_inside():
    prob = np.zeros((20, 20), np.float32)
    prob[5:10, 5:15] = 0.8
    assert mean_score_inside(prob, np.array([[5, 5], [14, 5], [14, 9], [5, 9]], np.float32)) == pytest.approx(0.8)
    assert mean_score_inside(prob, np.array([[0, 0], [19, 0], [19, 19], [0, 19]], np.float32)) == pytest.approx(0.1)


def test_filters_low_score_small_and_caps_candidates():
    prob = np.zeros((100, 200), np.float32)
    prob[10:30, 10:80] = 0.9  # kept
    prob[50:70, 10:80] = 0.5  # above thresh, below box_thresh → dropped
    prob[80:82, 100:150] = 0.95  # 2 px tall → below min_size → dropped
    dets = boxes_from_probability(prob, POST)
    assert len(dets) == 1 and dets[0].score == pytest.approx(0.9)
    x0, y0 = dets[0].polygon.min(axis=0)
    x1, y1 = dets[0].polygon.max(axis=0)
    assert x0 < 10 and y0 < 10 and x1 > 79 and y1 > 29  # the unclip grew the box past the core
    many = np.zeros((64, 64), np.float32)
    for i in range(4):
        many[4 + 15 * i : 14 + 15 * i, 5:60] = 1.0
    assert len(boxes_from_probability(many, POST.model_copy(update={"max_candidates": 2}))) == 2


def test_poly_mode_follows_a_curved_region():
    prob = np.zeros((120, 200), np.float32)
    cv2.ellipse(prob, (100, 110), (80, 80), 0, 200, 340, 1.0, thickness=22)  # an arc of text
    (det,) = boxes_from_probability(prob, POST.model_copy(update={"mode": "poly", "unclip_ratio": 2.0}))
    assert len(det.polygon) > 4
    # quad mode drops the arc: its min-area rectangle is mostly empty, so the mean score is low
    assert boxes_from_probability(prob, POST) == []


def test_detections_are_mapped_back_to_original_coordinates():
    t = plan_resize((300, 200), (640, 640), keep_ratio=True)  # content 640×427, padded to 448
    prob = np.zeros(t.padded_size, np.float32)
    prob[100:140, 50:300] = 1.0
    prob[:, 430:] = 1.0  # padding columns: no image there, must not produce boxes
    (det,) = detect_text(prob, t, POST)
    (in_network,) = boxes_from_probability(prob[:640, :427], POST)
    expected = np.rint(in_network.polygon / [t.scale_x, t.scale_y])
    np.testing.assert_array_equal(det.polygon, expected)
    assert det.polygon.dtype == np.int32
    center = det.polygon.mean(axis=0)
    assert center == pytest.approx([175 / t.scale_x, 120 / t.scale_y], abs=1.0)

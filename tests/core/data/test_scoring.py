"""evaluate_dirs: scoring prediction files in a directory against a ground-truth directory."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import care_polygons as _care_polygons
from conftest import rect, sample_dir
from ocrkit.core.data.formats import load_icdar_dir, write_icdar_gt, write_predictions
from ocrkit.core.data.scoring import evaluate_dirs
from ocrkit.core.errors import InputError
from ocrkit.core.geometry.metric import DetectionMetrics

SAMPLE_DIR = sample_dir()
SAMPLE_CARE_BOXES = 21


GT_BOX = rect(0, 0, 100, 10)  # area 1000: a det rect(0, 0, w, 10) inside it has IoU w / 100


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


# --- the rules for the two folders -----------------------------------------------------------------


def test_misnamed_prediction_files_and_an_empty_prediction_folder_are_named(tmp_path):
    _write_synthetic_gt(tmp_path / "gts")
    preds = tmp_path / "preds"
    write_predictions(preds / "a.txt", [GT_BOX])  # res_ forgotten
    (preds / "metrics.json").write_text("{}")  # an eval run's own files are left alone
    (preds / "overlays").mkdir()
    with pytest.warns(UserWarning) as record:
        metrics = evaluate_dirs(tmp_path / "gts", preds)
    assert metrics.det_care == 0
    assert sorted(str(w.message) for w in record) == [
        f"{preds}: 1 .txt file(s) not read, not named res_<stem>.txt: a.txt",
        f"{preds}: no res_<stem>.txt files: every image is scored as without detections",
    ]


def test_skip_bad_leaves_out_the_images_whose_files_are_bad(tmp_path):
    _write_synthetic_gt(tmp_path / "gts")
    write_icdar_gt(tmp_path / "gts" / "gt_c.txt", [rect(0, 0, 50, 20)], ["C"], [False])
    (tmp_path / "gts" / "gt_c.txt").write_text("0,0,50,0,50,20,0,C\n")  # 7 coordinates
    preds = tmp_path / "preds"
    write_predictions(preds / "res_a.txt", [GT_BOX], [0.9])
    (preds / "res_b.txt").write_text("0,0,50,0,50,20,x\n")
    write_predictions(preds / "res_zzz.txt", [GT_BOX])
    with pytest.raises(InputError, match=r"res_b.txt:1: field 7"):
        evaluate_dirs(tmp_path / "gts", preds)
    with pytest.warns(UserWarning) as record:
        metrics = evaluate_dirs(tmp_path / "gts", preds, skip_bad=True)
    messages = [str(w.message) for w in record]
    assert [m.split(": ")[1].rsplit("/", 1)[-1] for m in messages[:3]] == ["res_b.txt:1", "gt_c.txt:1", "res_zzz.txt"]
    assert all(m.startswith("skipping bad sample: ") for m in messages[:3])
    assert messages[-1] == f"{preds}: skipped 3 bad sample(s)"
    assert set(metrics.per_image) == {"a"} and metrics.matched == 1

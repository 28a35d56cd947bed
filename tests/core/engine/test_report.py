"""The evaluation report (engine/report.py) on hand-made ground truth and detections: the parsed
page's numbers are the metric's, rows run worst hmean first, each outcome is drawn in its legend
colour, file names are escaped, nothing is fetched from a network; scored files find their images;
and, where a headless Chromium is installed, the page renders to a picture that is not blank."""

from __future__ import annotations

import base64
import re
import shutil
import subprocess
from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import rect
from ocrkit.core.data.formats import write_predictions
from ocrkit.core.data.scoring import evaluate_dirs
from ocrkit.core.engine.report import (
    COLUMNS,
    LEGEND_ORDER,
    OUTCOMES,
    ReportImage,
    build_report,
    classify,
    files_report,
    images_from_files,
    write_report,
)
from ocrkit.core.geometry.metric import combine, evaluate_image
from ocrkit.core.viz import REPORT_COLOURS, colour_hex

WEIRD_STEM = "a<b>&\"c' d"
BACKGROUND = (40, 40, 40)  # dark: apart from every outcome colour, the grey of don't-care included


def bowtie(x0: float, y0: float, x1: float, y1: float) -> np.ndarray:
    """A self-intersecting quad: the metric leaves it out as invalid."""
    return np.array([[x0, y0], [x1, y1], [x1, y0], [x0, y1]], np.float64)


# gt: 0 care (matched by det 0), 1 care (missed: det 3 overlaps it with IoU 1/3), 2 don't-care
# (det 2 lies inside it), 3 care but invalid; det 1 hits nothing, det 4 is invalid.
MIXED_GT = [rect(10, 10, 60, 40), rect(100, 10, 150, 40), rect(10, 70, 80, 110), bowtie(120, 70, 180, 110)]
MIXED_IGNORE = [False, False, True, False]
MIXED_DET = [rect(12, 12, 60, 40), rect(85, 50, 115, 65), rect(15, 75, 70, 105), rect(125, 10, 175, 40)]
MIXED_DET.append(bowtie(150, 100, 190, 115))
EXPECTED_OUTCOMES = {
    "gt_dontcare": [2],
    "gt_invalid": [3],
    "gt_matched": [0],
    "gt_missed": [1],
    "det_dontcare": [2],
    "det_invalid": [4],
    "det_matched": [0],
    "det_false": [1, 3],
}


def picture(path: Path, size=(120, 200)) -> Path:
    cv2.imwrite(str(path), np.full((*size, 3), BACKGROUND, np.uint8))
    return path


def report_image(stem, path, gt, ignore, det) -> ReportImage:
    return ReportImage(stem, path, gt, ignore, det, evaluate_image(gt, ignore, det))


@pytest.fixture
def images(tmp_path) -> list[ReportImage]:
    """mixed: H 0.4; WEIRD_STEM: perfect; zz: no text and no image file; b_miss: a miss and an
    image file that cannot be read."""
    broken = tmp_path / "b_miss.png"
    broken.write_bytes(b"not a picture")
    quad = rect(20, 20, 90, 50)
    return [
        report_image("mixed", picture(tmp_path / "mixed.png"), MIXED_GT, MIXED_IGNORE, MIXED_DET),
        report_image(WEIRD_STEM, picture(tmp_path / f"{WEIRD_STEM}.png"), [quad], [False], [quad]),
        report_image("zz", None, [], [], []),
        report_image("b_miss", broken, [quad], [False], []),
    ]


class Page(HTMLParser):
    """What a test reads from a report: every ``data-key`` cell by table (``rows``: one dict per
    ``<tr>``, its ``data-stem`` under "stem_attr"), the legend's swatches, images, links, ids."""

    def __init__(self, text: str):
        super().__init__(convert_charrefs=True)
        self.rows: dict[str | None, list[dict[str, str]]] = {}
        self.legend: dict[str, str] = {}
        self.images: list[dict[str, str]] = []
        self.links: list[str] = []
        self.ids: list[str] = []
        self.missing: list[str] = []
        self._table: str | None = None
        self._outcome: str | None = None
        self._in_missing = False
        self.feed(text)
        self.close()

    def handle_starttag(self, tag, attrs):
        a = {key: value or "" for key, value in attrs}
        if "id" in a:
            self.ids.append(a["id"])
        if tag == "table":
            self._table = a.get("id")
        elif tag == "tr":
            self.rows.setdefault(self._table, []).append({"stem_attr": a.get("data-stem", "")})
        elif tag == "td" and "data-key" in a:
            self.rows[self._table][-1][a["data-key"]] = a["data-value"]
        elif tag == "li" and "data-outcome" in a:
            self._outcome = a["data-outcome"]
        elif tag == "span" and self._outcome:
            self.legend[self._outcome] = a["style"]
        elif tag == "img":
            self.images.append(a)
        elif tag == "a":
            self.links.append(a["href"])
        elif tag == "p" and a.get("class") == "missing":
            self._in_missing = True

    def handle_endtag(self, tag):
        self._outcome = None if tag == "li" else self._outcome
        self._in_missing = False if tag == "p" else self._in_missing

    def handle_data(self, data):
        if self._in_missing:
            self.missing.append(data)

    def summary(self) -> dict[str, str]:
        return {key: value for row in self.rows["summary"] for key, value in row.items() if key != "stem_attr"}

    def table(self) -> list[dict[str, str]]:
        return [row for row in self.rows["images"] if len(row) > 1]  # the header row has no cells


def decoded(img: dict[str, str]) -> np.ndarray:
    prefix = "data:image/jpeg;base64,"
    assert img["src"].startswith(prefix)
    data = np.frombuffer(base64.b64decode(img["src"][len(prefix) :]), np.uint8)
    return cv2.cvtColor(cv2.imdecode(data, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def near(rgb: np.ndarray, colour, tolerance: float = 50) -> int:
    """Pixels within ``tolerance`` of ``colour`` (JPEG shifts a thin line's colour a little)."""
    return int((np.linalg.norm(rgb.astype(float) - colour, axis=-1) < tolerance).sum())


def test_each_polygon_gets_the_metric_outcome(images):
    mixed = images[0]
    assert classify(mixed) == EXPECTED_OUTCOMES
    counts = mixed.result.counts
    assert (counts.n_care_gt, counts.n_care_det, counts.n_matched) == (2, 3, 1)
    assert (counts.invalid_gt, counts.invalid_det, counts.n_dontcare_det) == (1, 1, 1)


def test_the_page_holds_the_metric_numbers_worst_first(images):
    metrics = combine({image.stem: image.result for image in images})
    settings = [("checkpoint", "runs/<x>&y.pt"), ("eval_size (H W)", "736 1280")]
    now = datetime(2025, 1, 2, 3, 4, tzinfo=UTC)
    text = build_report(images, metrics, settings, now=now)
    page = Page(text)

    summary = page.summary()
    for key, value in (("precision", metrics.precision), ("recall", metrics.recall), ("hmean", metrics.hmean)):
        assert float(summary[key]) == value
    assert int(summary["matched"]) == metrics.matched == 2
    assert int(summary["care_gt"]) == metrics.gt_care == 4 and int(summary["care_det"]) == metrics.det_care == 4
    assert int(summary["misses"]) == 2 and int(summary["false_positives"]) == 2
    assert (int(summary["invalid_gt"]), int(summary["invalid_det"]), int(summary["images"])) == (1, 1, 4)

    rows = page.table()
    assert [row["stem"] for row in rows] == ["b_miss", "mixed", WEIRD_STEM, "zz"]  # H 0, 0.4, then ties by stem
    assert [row["stem_attr"] for row in rows] == [row["stem"] for row in rows]
    by_stem = {image.stem: image for image in images}
    for row in rows:
        result = by_stem[row["stem"]].result
        counts = result.counts
        assert (float(row["precision"]), float(row["recall"]), float(row["hmean"])) == (
            result.precision,
            result.recall,
            result.hmean,
        )
        assert int(row["care_gt"]) == counts.n_care_gt and int(row["care_det"]) == counts.n_care_det
        assert int(row["matched"]) == counts.n_matched
        assert int(row["misses"]) == counts.n_care_gt - counts.n_matched
        assert int(row["false_positives"]) == counts.n_care_det - counts.n_matched
        assert int(row["dontcare_gt"]) == counts.n_dontcare_gt and int(row["dontcare_det"]) == counts.n_dontcare_det
    assert set(rows[0]) == {"stem_attr", "rank", "stem", *(key for key, _ in COLUMNS)}
    assert float(rows[1]["hmean"]) == pytest.approx(0.4)  # the cell shows 4 places, data-value all of them
    assert re.search(r'<td data-key="hmean" data-value="0\.(4|39999+\d*)">0\.4000</td>', text)

    assert "736 1280" in text and "runs/&lt;x&gt;&amp;y.pt" in text and "2025-01-02 03:04 UTC" in text


def test_the_page_is_escaped_self_contained_and_drawn_in_the_legend_colours(images):
    metrics = combine({image.stem: image.result for image in images})
    text = build_report(images, metrics)
    page = Page(text)

    assert WEIRD_STEM not in text and "a&lt;b&gt;&amp;&quot;c&#x27; d" in text  # every file name escaped
    for reference in re.findall(r'(?:src|href)="([^"]*)"', text):
        assert reference.startswith(("data:image/jpeg;base64,", "#")), reference
    assert "<link" not in text and "url(" not in text and "@import" not in text

    assert list(page.legend) == list(LEGEND_ORDER)
    for outcome, style in page.legend.items():
        assert colour_hex(REPORT_COLOURS[OUTCOMES[outcome][0]]) in style

    # every image has an overlay section; the table links to it; the unreadable image and the one
    # without a file are said so instead of drawn
    assert [f"#img-{rank}" for rank in range(1, 5)] == [link for link in page.links if link.startswith("#img-")]
    assert {f"img-{rank}" for rank in range(1, 5)} <= set(page.ids)
    assert [img["alt"] for img in page.images] == ["overlay of mixed", f"overlay of {WEIRD_STEM}"]
    assert any("b_miss.png" in line for line in page.missing)
    assert any("no image found" in line for line in page.missing)

    overlay = decoded(page.images[0])
    assert overlay.shape == (480, 800, 3)  # 200 px wide, shown 4x
    for outcome in EXPECTED_OUTCOMES:
        colour = REPORT_COLOURS[OUTCOMES[outcome][0]]
        assert near(overlay, colour) > 200, (outcome, colour)
    perfect = decoded(page.images[1])
    assert near(perfect, REPORT_COLOURS["det_matched"]) > 200 and near(perfect, REPORT_COLOURS["det_false"]) == 0


def test_overlays_for_the_worst_images_only(images, tmp_path):
    metrics = combine({image.stem: image.result for image in images})
    path = write_report(tmp_path / "out" / "report.html", images, metrics, overlays=2)
    page = Page(path.read_text(encoding="utf-8"))
    assert [link for link in page.links if link.startswith("#img-")] == ["#img-1", "#img-2"]  # b_miss, mixed
    assert [img["alt"] for img in page.images] == ["overlay of mixed"]  # b_miss's file is unreadable
    assert len(page.table()) == 4  # the table still lists every image
    assert "overlays: 2 of 4 images" in path.read_text(encoding="utf-8")
    empty = Page(build_report(images, metrics, overlays=0))
    assert not empty.images and not [link for link in empty.links if link.startswith("#img-")]


def write_scored_files(tiny_icdar: Path, preds: Path) -> None:
    """img_0 exact (perfect), img_1 one false positive, img_2 no prediction file."""
    from ocrkit.core.data.formats import read_icdar_gt

    polygons, ignore, _ = read_icdar_gt(tiny_icdar / "gts" / "gt_img_0.txt")
    write_predictions(preds / "res_img_0.txt", [p for p, i in zip(polygons, ignore, strict=True) if not i])
    write_predictions(preds / "res_img_1.txt", [rect(0, 0, 10, 10)])


def test_scored_files_find_their_images(tiny_icdar, tmp_path):
    preds = tmp_path / "preds"
    preds.mkdir()
    write_scored_files(tiny_icdar, preds)
    metrics = evaluate_dirs(tiny_icdar, preds)
    for gt_dir in (tiny_icdar, tiny_icdar / "gts"):  # an ICDAR root, or its gts/ folder
        images = images_from_files(gt_dir, preds, metrics)
        assert [image.image_path for image in images] == [tiny_icdar / "images" / f"img_{i}.png" for i in range(3)]
        assert [len(image.detections) for image in images] == [2, 1, 0]
        assert [image.result for image in images] == list(metrics.per_image.values())
        assert classify(images[0])["gt_matched"] == [0, 1] and classify(images[1])["det_false"] == [0]

    lone = tmp_path / "lone_gts"
    shutil.copytree(tiny_icdar / "gts", lone)  # ground truth without images
    page = Page(files_report(lone, preds, metrics, tmp_path / "out").read_text(encoding="utf-8"))
    assert not page.images and len(page.missing) == 3 and float(page.summary()["hmean"]) == metrics.hmean


def test_a_headless_browser_renders_the_page(images, tmp_path):
    browser = shutil.which("chromium")
    if browser is None:
        pytest.skip("no headless Chromium here (Debian package `chromium`): the rendering check needs one")
    metrics = combine({image.stem: image.result for image in images})
    report = write_report(tmp_path / "report.html", images, metrics)
    shot = tmp_path / "shot.png"
    command = [
        browser,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}",
        f"--screenshot={shot}",
        "--window-size=1200,900",
        report.resolve().as_uri(),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and shot.is_file(), done.stderr[-2000:]
    rgb = cv2.cvtColor(cv2.imread(str(shot)), cv2.COLOR_BGR2RGB)
    assert rgb.shape[:2] == (900, 1200)
    assert len(np.unique(rgb.reshape(-1, 3), axis=0)) > 50  # text, tables and swatches, not a blank page
    for outcome in LEGEND_ORDER:  # the legend's swatches are solid blocks of the overlay colours
        assert near(rgb, REPORT_COLOURS[OUTCOMES[outcome][0]], tolerance=3) > 50, outcome

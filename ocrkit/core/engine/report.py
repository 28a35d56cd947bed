"""The evaluation report (``ocrkit eval ... --report``): one self-contained HTML page a person can
look through, written after the evaluation from what it produced.

The page needs no network and no JavaScript: styles are inline, overlays are embedded as JPEG
``data:`` URIs (shrunk to ``max_width`` pixels so that a report of hundreds of images stays
openable), and the per-image table is already ordered worst hmean first (ties by stem). A few
lines of inline script add click-to-sort on the table's headers where scripts run; nothing else
depends on them.

It shows:

- the summary: global precision/recall/hmean and the summed counts, exactly the metric's
  (``geometry/metric.py``), and the settings the caller names (checkpoint, data, eval size,
  post-processing), the ocrkit version and the date;
- the per-image table: the image's own P/R/H (DB's per-image convention), its counts, and a link
  to its overlay;
- an overlay per image (all, or the ``overlays`` worst), coloured by the metric's matching:

  - **matched ground truth**: a care gt region paired with a detection (drawn thick, under it);
  - **miss**: a care gt region with no match;
  - **true positive**: a care detection paired with a gt region;
  - **false positive**: a care detection with no match;
  - **don't-care ground truth**: ``###`` or illegible regions; **don't-care detection**: one with
    more than half of its area inside such a region (neither a hit nor a false positive);
  - **invalid**: a polygon the metric leaves out (zero area, self-intersecting), gt or detection.

  So an image's misses are ``care gt - matched`` and its false positives ``care det - matched``.

Inputs: per image, the ground truth (polygons, don't-care flags), the detections in the order
they were scored, and the metric's ``ImageResult`` for them (``ReportImage``).
``images_from_run`` gathers them for a checkpoint's evaluation (the detections from the
``json/<stem>.json`` files ``evaluate_model`` wrote), ``images_from_files`` for scored prediction
files (``ocrkit eval --gt-dir/--pred-dir``; images are looked up in an ICDAR root's ``images/``).
No torch here: scoring files stays light.
"""

from __future__ import annotations

import base64
import html
import json
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from ocrkit import __version__
from ocrkit.core.atomic import write_text_atomic
from ocrkit.core.data.formats import IMAGE_SUFFIXES, Notices, read_gt_regions, read_prediction_lines
from ocrkit.core.data.image import load_image
from ocrkit.core.data.sample import Sample
from ocrkit.core.engine.rundir import create_run_dir
from ocrkit.core.errors import InputError
from ocrkit.core.geometry.metric import DetectionMetrics, ImageResult, evaluate_image
from ocrkit.core.progress import track
from ocrkit.core.viz import REPORT_COLOURS, colour_hex, draw_polygons, encode_jpeg, fit_for_display

REPORT_NAME = "report.html"
MAX_WIDTH = 800  # overlay width in pixels: readable boxes, tens of kB a photograph as JPEG

# Outcome → (colour key, line thickness at MAX_WIDTH, legend text), in drawing order: the
# don't-care and matched ground truth first, so that detections and mistakes are drawn on top.
# Matched gt is thick so that its detection, drawn thinner over it, leaves it visible as a rim.
OUTCOMES = {
    "gt_dontcare": ("gt_dontcare", 2, "don't-care ground truth (###, illegible)"),
    "gt_invalid": ("invalid", 2, "invalid polygon, left out by the metric (gt or detection)"),
    "gt_matched": ("gt_matched", 6, "ground truth, matched (thick, under its detection)"),
    "gt_missed": ("gt_missed", 3, "miss: care ground truth without a match"),
    "det_dontcare": ("det_dontcare", 2, "don't-care detection (mostly inside a don't-care region)"),
    "det_invalid": ("invalid", 2, ""),
    "det_matched": ("det_matched", 2, "true positive: detection matched to ground truth"),
    "det_false": ("det_false", 3, "false positive: care detection without a match"),
}
LEGEND_ORDER = ("gt_matched", "det_matched", "gt_missed", "det_false", "gt_dontcare", "det_dontcare", "gt_invalid")

# The per-image table: (key, header); every cell carries its exact value in data-value.
COLUMNS = (
    ("precision", "P"),
    ("recall", "R"),
    ("hmean", "H"),
    ("care_gt", "care gt"),
    ("care_det", "care det"),
    ("matched", "matched"),
    ("misses", "misses"),
    ("false_positives", "FPs"),
    ("dontcare_gt", "don't-care gt"),
    ("dontcare_det", "don't-care det"),
)


@dataclass(frozen=True)
class ReportImage:
    """One scored image: its ground truth, its detections in scoring order, and their result."""

    stem: str
    image_path: Path | None  # None: no image to draw on (scored files without images)
    gt_polygons: Sequence[np.ndarray]
    gt_ignore: Sequence[bool]
    detections: Sequence[np.ndarray]
    result: ImageResult


# ---------------------------------------------------------------- which polygon is which outcome


def _invalid(polygons: Sequence[np.ndarray], expected: int) -> set[int]:
    """Indices of the polygons the metric leaves out, found by the metric itself (each polygon
    scored alone), and only when the image's counts say there are some."""
    if not expected:
        return set()
    return {i for i, p in enumerate(polygons) if evaluate_image([p], [False], []).counts.invalid_gt}


def classify(image: ReportImage) -> dict[str, list[int]]:
    """Indices of the gt regions (``gt_*``) and detections (``det_*``) per outcome (``OUTCOMES``)."""
    result, counts = image.result, image.result.counts
    matched_gt = {p.gt for p in result.pairs}
    matched_det = {p.det for p in result.pairs}
    invalid_gt = _invalid(image.gt_polygons, counts.invalid_gt)
    invalid_det = _invalid(image.detections, counts.invalid_det)
    out: dict[str, list[int]] = {key: [] for key in OUTCOMES}
    for i, ignore in enumerate(image.gt_ignore):
        if i in invalid_gt:
            out["gt_invalid"].append(i)
        elif ignore:
            out["gt_dontcare"].append(i)
        else:
            out["gt_matched" if i in matched_gt else "gt_missed"].append(i)
    dontcare = set(result.dontcare_det)
    for i in range(len(image.detections)):
        if i in invalid_det:
            out["det_invalid"].append(i)
        elif i in dontcare:
            out["det_dontcare"].append(i)
        else:
            out["det_matched" if i in matched_det else "det_false"].append(i)
    return out


def _row_values(image: ReportImage, outcome: dict[str, list[int]]) -> dict[str, float | int]:
    result, counts = image.result, image.result.counts
    return {
        "precision": result.precision,
        "recall": result.recall,
        "hmean": result.hmean,
        "care_gt": counts.n_care_gt,
        "care_det": counts.n_care_det,
        "matched": counts.n_matched,
        "misses": len(outcome["gt_missed"]),
        "false_positives": len(outcome["det_false"]),
        "dontcare_gt": counts.n_dontcare_gt,
        "dontcare_det": counts.n_dontcare_det,
    }


def worst_first(images: Iterable[ReportImage]) -> list[ReportImage]:
    """Lowest per-image hmean first; equal hmeans by stem, so the order is reproducible."""
    return sorted(images, key=lambda image: (image.result.hmean, image.stem))


# ---------------------------------------------------------------- overlays


def draw_outcomes(rgb: np.ndarray, image: ReportImage, outcome: dict[str, list[int]], scale: float) -> np.ndarray:
    """``rgb`` (the image already scaled by ``scale``) with every polygon in its outcome's colour."""
    for key, (colour, thickness, _) in OUTCOMES.items():
        source = image.gt_polygons if key.startswith("gt_") else image.detections
        polygons = [np.asarray(source[i], np.float64) * scale for i in outcome[key]]
        rgb = draw_polygons(rgb, polygons, REPORT_COLOURS[colour], thickness)
    return rgb


def overlay_jpeg(rgb: np.ndarray, image: ReportImage, outcome: dict[str, list[int]], max_width: int) -> bytes:
    """The image fit for display (``fit_for_display``) with its outcomes drawn, as JPEG bytes."""
    shown, scale = fit_for_display(rgb, max_width)
    return encode_jpeg(draw_outcomes(shown, image, outcome, scale))


# ---------------------------------------------------------------- HTML


def _esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def _cell(key: str, value: float | int | str) -> str:
    shown = f"{value:.4f}" if isinstance(value, float) else str(value)  # exact value in data-value
    return f'<td data-key="{key}" data-value="{_esc(value)}">{_esc(shown)}</td>'


def _summary(metrics: DetectionMetrics) -> str:
    rows = (
        ("precision", "precision", metrics.precision),
        ("recall", "recall", metrics.recall),
        ("hmean", "hmean", metrics.hmean),
        ("matched", "matched", metrics.matched),
        ("care_gt", "care gt", metrics.gt_care),
        ("care_det", "care det", metrics.det_care),
        ("misses", "misses (care gt - matched)", metrics.gt_care - metrics.matched),
        ("false_positives", "false positives (care det - matched)", metrics.det_care - metrics.matched),
        ("dontcare_gt", "don't-care gt", metrics.gt_dontcare),
        ("dontcare_det", "don't-care det", metrics.det_dontcare),
        ("invalid_gt", "invalid gt (left out)", metrics.invalid_gt),
        ("invalid_det", "invalid det (left out)", metrics.invalid_det),
        ("images", "images", metrics.images),
    )
    body = "".join(f"<tr><th>{_esc(label)}</th>{_cell(key, value)}</tr>" for key, label, value in rows)
    return f'<table id="summary" class="kv">{body}</table>'


def _settings(settings: Sequence[tuple[str, str]]) -> str:
    body = "".join(f"<tr><th>{_esc(name)}</th><td>{_esc(value)}</td></tr>" for name, value in settings)
    return f'<table id="settings" class="kv">{body}</table>'


def _legend() -> str:
    items = []
    for key in LEGEND_ORDER:
        colour, _, text = OUTCOMES[key]
        swatch = f'<span class="swatch" style="background:{colour_hex(REPORT_COLOURS[colour])}"></span>'
        items.append(f'<li data-outcome="{key}">{swatch}{_esc(text)}</li>')
    return f'<ul id="legend">{"".join(items)}</ul>'


@dataclass(frozen=True)
class _Row:
    rank: int  # 1 = the worst image
    image: ReportImage
    outcome: dict[str, list[int]]
    values: dict[str, float | int]  # the table's cells by COLUMNS key
    has_overlay: bool

    @property
    def anchor(self) -> str:
        return f"img-{self.rank}"  # not the stem: any file name is safe as a URL fragment this way


def _rows(images: Iterable[ReportImage], overlays: int | None) -> list[_Row]:
    rows = []
    for rank, image in enumerate(worst_first(images), start=1):
        outcome = classify(image)
        shown = overlays is None or rank <= overlays
        rows.append(_Row(rank, image, outcome, _row_values(image, outcome), shown))
    return rows


def _table(rows: Sequence[_Row]) -> str:
    head = '<th data-key="rank">#</th><th data-key="stem">image</th>'
    head += "".join(f'<th data-key="{key}">{_esc(label)}</th>' for key, label in COLUMNS)
    body = []
    for row in rows:
        stem = _esc(row.image.stem)
        name = f'<a href="#{row.anchor}">{stem}</a>' if row.has_overlay else stem
        cells = _cell("rank", row.rank) + f'<td data-key="stem" data-value="{stem}">{name}</td>'
        cells += "".join(_cell(key, row.values[key]) for key, _ in COLUMNS)
        body.append(f'<tr data-stem="{stem}">{cells}</tr>')
    return f'<table id="images"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'


def _picture(row: _Row, max_width: int) -> str:
    if row.image.image_path is None:
        return '<p class="missing">no image found for this stem: no overlay</p>'
    try:
        jpeg = overlay_jpeg(load_image(row.image.image_path), row.image, row.outcome, max_width)
    except InputError as err:  # a report shows what it can; the scores do not need the image
        return f'<p class="missing">{_esc(err)}</p>'
    uri = "data:image/jpeg;base64," + base64.b64encode(jpeg).decode("ascii")
    return f'<img src="{uri}" alt="overlay of {_esc(row.image.stem)}">'


def _figure(row: _Row, max_width: int) -> str:
    values = row.values
    scores = f"P {values['precision']:.4f} · R {values['recall']:.4f} · H {values['hmean']:.4f}"
    counts = ", ".join(f"{label} {values[key]}" for key, label in COLUMNS[3:])
    return (
        f'<section class="image" id="{row.anchor}"><h3>{row.rank}. {_esc(row.image.stem)}</h3>'
        f'<p>{_esc(scores)} — {_esc(counts)} · <a href="#images">back to the table</a></p>'
        f"{_picture(row, max_width)}</section>"
    )


_STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222;background:#fff}
h1{font-size:1.5em}h2{font-size:1.2em;margin-top:1.5em}h3{font-size:1em;margin:0 0 .2em}
table{border-collapse:collapse}th,td{padding:2px 8px;border-bottom:1px solid #ddd}
#images td{text-align:right}#images td[data-key=stem]{text-align:left}
#images thead th{position:sticky;top:0;background:#f3f3f3}
.kv th{text-align:left;font-weight:600}#summary td{text-align:right}
#top{display:flex;gap:3em;flex-wrap:wrap;align-items:flex-start}
#legend{list-style:none;padding:0}#legend li{margin:3px 0}
.swatch{display:inline-block;width:2.2em;height:.9em;margin-right:.6em;vertical-align:middle}
.image{margin:1.5em 0;padding-top:.5em;border-top:1px solid #ccc}.image img{max-width:100%;display:block}
.missing{color:#a00}
"""

# Click a header to sort by it (again to reverse). Progressive enhancement only: without scripts
# the table stays in its static worst-first order.
_SCRIPT = """
document.querySelectorAll('#images th[data-key]').forEach(function (th) {
  th.style.cursor = 'pointer';
  th.addEventListener('click', function () {
    var key = th.dataset.key, body = document.querySelector('#images tbody');
    var up = th.dataset.dir !== 'up';
    th.dataset.dir = up ? 'up' : 'down';
    function value(row) { return row.querySelector('td[data-key="' + key + '"]').dataset.value; }
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = value(a), y = value(b), c = key === 'stem' ? (x < y ? -1 : x > y ? 1 : 0) : x - y;
      return up ? c : -c;
    });
    rows.forEach(function (row) { body.appendChild(row); });
  });
});
"""


def build_report(
    images: Sequence[ReportImage],
    metrics: DetectionMetrics,
    settings: Sequence[tuple[str, str]] = (),
    overlays: int | None = None,
    max_width: int = MAX_WIDTH,
    progress: bool = False,
    now: datetime | None = None,
) -> str:
    """The page as a string. ``settings``: (name, value) pairs to show beside the summary;
    ``overlays``: how many of the worst images get an overlay (None: all)."""
    rows = _rows(images, overlays)
    drawn = [row for row in rows if row.has_overlay]
    figures = [_figure(row, max_width) for row in track(drawn, "report", total=len(drawn), enabled=progress)]
    date = (now or datetime.now(UTC)).strftime("%Y-%m-%d %H:%M %Z").strip()
    title = f"ocrkit evaluation: H {metrics.hmean:.4f}"
    note = f"overlays: {len(drawn)} of {len(rows)} images, the worst first"
    body = (
        f"<h1>{_esc(title)}</h1>"
        f'<div id="top"><div><h2>Summary</h2>{_summary(metrics)}</div>'
        f"<div><h2>Settings</h2>{_settings([*settings, ('ocrkit', __version__), ('date', date)])}</div>"
        f"<div><h2>Legend</h2>{_legend()}</div></div>"
        f"<h2>Per image, worst hmean first</h2><p>{_esc(note)}</p>{_table(rows)}"
        f"<h2>Overlays</h2>{''.join(figures)}"
    )
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{_esc(title)}</title>'
        f"<style>{_STYLE}</style></head><body>{body}<script>{_SCRIPT}</script></body></html>\n"
    )


def write_report(
    path: Path,
    images: Sequence[ReportImage],
    metrics: DetectionMetrics,
    settings: Sequence[tuple[str, str]] = (),
    overlays: int | None = None,
    progress: bool = False,
) -> Path:
    """``build_report`` written atomically to ``path``."""
    write_text_atomic(path, build_report(images, metrics, settings, overlays, progress=progress))
    return path


# ---------------------------------------------------------------- gathering the inputs


def _run_record(out_dir: Path, stem: str) -> dict:
    path = out_dir / "json" / f"{stem}.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise InputError(path, f"cannot read this evaluation's per-image JSON for the report ({err})") from None


def images_from_run(out_dir: Path, samples: Sequence[Sample], metrics: DetectionMetrics) -> list[ReportImage]:
    """A checkpoint evaluation's images: ground truth from ``samples``, detections from the
    ``json/<stem>.json`` files ``evaluate_model`` wrote to ``out_dir`` (checked against the metric)."""
    images = []
    for sample in samples:
        result = metrics.per_image[sample.stem]
        record = _run_record(Path(out_dir), sample.stem)
        if record.get("counts") != asdict(result.counts):
            where = Path(out_dir) / "json" / f"{sample.stem}.json"
            raise InputError(where, "its counts differ from this evaluation's: not this run's output")
        detections = [np.asarray(d["points"], np.float64) for d in record["detections"]]
        images.append(ReportImage(sample.stem, sample.image_path, sample.polygons, sample.ignore, detections, result))
    return images


def _images_by_stem(gt_dir: Path) -> dict[str, Path]:
    """Images of an ICDAR root (``gt_dir/images``, or ``images/`` beside a ``gts`` folder)."""
    found: dict[str, Path] = {}
    for folder in dict.fromkeys((gt_dir / "images", gt_dir.parent / "images")):
        if folder.is_dir():
            for path in sorted(folder.iterdir()):
                if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES:
                    found.setdefault(path.stem, path)
    return found


def images_from_files(gt_dir: Path, pred_dir: Path, metrics: DetectionMetrics) -> list[ReportImage]:
    """Scored files' images: each stem the metric scored, its ``gt_<stem>.txt`` (in ``gt_dir``,
    else ``gt_dir/gts``, as ``evaluate_dirs`` looks) and ``res_<stem>.txt`` (absent: none), read
    again in the same order; its image when an ICDAR root's ``images/`` holds one."""
    gt_dir, pred_dir = Path(gt_dir), Path(pred_dir)
    pictures = _images_by_stem(gt_dir)
    images = []
    for stem, result in metrics.per_image.items():
        gt_path = gt_dir / f"gt_{stem}.txt"
        regions = read_gt_regions(gt_path if gt_path.is_file() else gt_dir / "gts" / gt_path.name, Notices())
        res_path = pred_dir / f"res_{stem}.txt"
        detections = read_prediction_lines(res_path, Notices())[0] if res_path.is_file() else []
        polygons, ignore = [r.polygon for r in regions], [r.ignore for r in regions]
        images.append(ReportImage(stem, pictures.get(stem), polygons, ignore, detections, result))
    return images


def files_report(
    gt_dir: Path,
    pred_dir: Path,
    metrics: DetectionMetrics,
    out_dir: Path | None,
    overlays: int | None = None,
    log_dir: str | Path = "runs",
    name: str = "exp",
) -> Path:
    """The report of ``ocrkit eval --gt-dir --pred-dir --report``, written to ``out_dir`` or, as a
    checkpoint's evaluation, to a new ``<log_dir>/eval/<name>``."""
    images = images_from_files(gt_dir, pred_dir, metrics)
    target = Path(out_dir) if out_dir else create_run_dir(log_dir, "eval", name)
    drawn = sum(image.image_path is not None for image in images)
    settings = [
        ("ground truth", str(gt_dir)),
        ("predictions", str(pred_dir)),
        ("images", f"{drawn} of {len(images)} found in an images/ folder beside the ground truth"),
    ]
    return write_report(target / REPORT_NAME, images, metrics, settings, overlays)

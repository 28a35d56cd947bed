"""Readers and writers for annotation and prediction files.

ICDAR-2015 ground truth: ``images/`` + ``gts/gt_<stem>.txt``, one region a line
``x1,y1,...,xn,yn,transcription`` (UTF-8, BOM optional, ``###`` = don't-care; the transcription
may contain commas). JSON: ``{"images": {"<file>": {"words": {"<id>": {"points": [[x, y], ...],
"transcription": "...", "illegibility": false}}}}}``. Predictions: ``res_<stem>.txt``, one
polygon a line ``x1,y1,...,xn,yn[,score]``.
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ocrkit.core.atomic import write_text_atomic
from ocrkit.core.data.sample import Sample
from ocrkit.core.errors import InputError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
DONT_CARE = "###"


@dataclass
class LoadedData:
    """Samples read from a dataset, and the bad ones skipped under ``skip_bad``."""

    samples: list[Sample]
    skipped: list[str] = field(default_factory=list)


def _is_number(text: str) -> bool:
    try:
        return math.isfinite(float(text))
    except ValueError:
        return False


def _points(values: Sequence[float]) -> np.ndarray:
    return np.asarray(values, dtype=np.float32).reshape(-1, 2)


def parse_gt_line(line: str, source: object, line_no: int) -> tuple[np.ndarray, str]:
    """Split a ground-truth line into its polygon and transcription.

    The coordinates are the longest even-length run of leading numbers that still leaves a
    transcription field, so numeric and comma-containing transcriptions ("2015", "1,5") parse.
    A line of exactly eight numbers is a quad without its transcription, an error.
    """
    fields = line.split(",")
    numeric = 0
    while numeric < len(fields) and _is_number(fields[numeric].strip()):
        numeric += 1
    if numeric == len(fields) == 8:
        raise InputError(source, "missing the transcription field (the text, or ### for don't-care)", line_no)
    n_coords = min(numeric, len(fields) - 1)
    n_coords -= n_coords % 2
    if n_coords < 6:
        raise InputError(
            source,
            f"expected x1,y1,...,xn,yn,transcription with at least 3 points, got {line.strip()[:80]!r}",
            line_no,
        )
    coords = [float(f) for f in fields[:n_coords]]
    text = ",".join(fields[n_coords:]).strip()
    return _points(coords), text


def read_icdar_gt(path: str | Path) -> tuple[list[np.ndarray], list[bool], list[str]]:
    """Read one ``gt_<stem>.txt`` file: polygons, ignore flags, transcriptions."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise InputError(path, "ground-truth file not found") from None
    except UnicodeDecodeError as exc:
        raise InputError(path, f"not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    polygons, ignore, texts = [], [], []
    for line_no, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        polygon, transcription = parse_gt_line(line, path, line_no)
        polygons.append(polygon)
        ignore.append(transcription == DONT_CARE)
        texts.append(transcription)
    return polygons, ignore, texts


def _format_number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:.2f}"


def format_polygon(polygon: np.ndarray) -> str:
    return ",".join(_format_number(v) for v in np.asarray(polygon, dtype=np.float64).reshape(-1))


def write_icdar_gt(
    path: str | Path, polygons: Iterable[np.ndarray], texts: Iterable[str], ignore: Iterable[bool]
) -> None:
    """Write ground truth in ICDAR layout; don't-care regions get the ``###`` transcription."""
    lines = [
        f"{format_polygon(p)},{DONT_CARE if flag else t}" for p, t, flag in zip(polygons, texts, ignore, strict=True)
    ]
    write_text_atomic(path, "".join(line + "\n" for line in lines))


def write_predictions(path: str | Path, polygons: Iterable[np.ndarray], scores: Iterable[float] | None = None) -> None:
    """Write a ``res_<stem>.txt`` file: one polygon a line, optionally with its score."""
    polygons = list(polygons)
    if scores is None:
        lines = [format_polygon(p) for p in polygons]
    else:
        lines = [f"{format_polygon(p)},{s:.4f}" for p, s in zip(polygons, scores, strict=True)]
    write_text_atomic(path, "".join(line + "\n" for line in lines))


def read_predictions(path: str | Path) -> tuple[list[np.ndarray], list[float | None]]:
    """Read a ``res_<stem>.txt`` file; an odd count of numbers means the last one is a score."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(path, f"not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    polygons, scores = [], []
    for line_no, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        fields = [f.strip() for f in line.split(",")]
        if not all(_is_number(f) for f in fields):
            raise InputError(path, f"expected numbers x1,y1,...,xn,yn[,score], got {line.strip()[:80]!r}", line_no)
        values = [float(f) for f in fields]
        score = values.pop() if len(values) % 2 else None
        if len(values) < 6:
            raise InputError(path, f"a polygon needs at least 3 points, got {len(values) // 2}", line_no)
        polygons.append(_points(values))
        scores.append(score)
    return polygons, scores


def _image_files(images_dir: Path) -> list[Path]:
    return sorted(p for p in images_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def _collect(error: InputError, skip_bad: bool, skipped: list[str]) -> None:
    if not skip_bad:
        raise error
    warnings.warn(f"skipping bad sample: {error}", stacklevel=3)
    skipped.append(str(error))


def load_icdar_dir(root: str | Path, skip_bad: bool = False) -> LoadedData:
    """Load ``root/images/*`` with ``root/gts/gt_<stem>.txt``."""
    root = Path(root)
    images_dir, gts_dir = root / "images", root / "gts"
    for needed in (images_dir, gts_dir):
        if not needed.is_dir():
            raise InputError(needed, "directory not found (ICDAR layout needs images/ and gts/)")
    samples: list[Sample] = []
    skipped: list[str] = []
    for image_path in _image_files(images_dir):
        gt_path = gts_dir / f"gt_{image_path.stem}.txt"
        try:
            if not gt_path.is_file():
                raise InputError(gt_path, f"ground truth for {image_path.name} not found")
            polygons, ignore, texts = read_icdar_gt(gt_path)
        except InputError as err:
            _collect(err, skip_bad, skipped)
            continue
        samples.append(Sample(image_path, polygons, ignore, texts, gt_path))
    return LoadedData(samples, skipped)


def _json_word(word: object, key: str, source: Path) -> tuple[np.ndarray, bool, str]:
    if not isinstance(word, dict):
        raise InputError(source, f"{key}: expected an object")
    points = word.get("points")
    if points is None:
        raise InputError(source, f"{key}.points: missing (points are required)")
    try:
        polygon = np.asarray(points, dtype=np.float32)
    except (TypeError, ValueError):
        raise InputError(source, f"{key}.points: expected [[x, y], ...] numbers") from None
    if polygon.ndim != 2 or polygon.shape[1] != 2 or len(polygon) < 3 or not np.isfinite(polygon).all():
        raise InputError(source, f"{key}.points: expected at least 3 finite [x, y] pairs")
    text = str(word.get("transcription", ""))
    illegible = bool(word.get("illegibility", False))
    return polygon, illegible or text == DONT_CARE, text


def _json_image_path(name: str, base: Path) -> Path:
    direct = base / name
    return direct if direct.exists() or not (base / "images" / name).exists() else base / "images" / name


def load_json_dataset(path: str | Path, skip_bad: bool = False) -> LoadedData:
    """Load the JSON layout above; image names resolve next to the file (or under images/)."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8-sig"))
    except FileNotFoundError:
        raise InputError(path, "annotation file not found") from None
    except json.JSONDecodeError as exc:
        raise InputError(path, f"not valid JSON: {exc.msg}", exc.lineno) from None
    images = doc.get("images") if isinstance(doc, dict) else None
    if not isinstance(images, dict):
        raise InputError(path, "images: expected an object mapping file names to entries")
    samples: list[Sample] = []
    skipped: list[str] = []
    for name, entry in images.items():
        try:
            words = entry.get("words", {}) if isinstance(entry, dict) else None
            if not isinstance(words, dict):
                raise InputError(path, f"images.{name}.words: expected an object")
            parsed = [_json_word(w, f"images.{name}.words.{wid}", path) for wid, w in words.items()]
            image_path = _json_image_path(name, path.parent)
            if not image_path.is_file():
                raise InputError(path, f"images.{name}: image file {image_path} not found")
        except InputError as err:
            _collect(err, skip_bad, skipped)
            continue
        samples.append(
            Sample(image_path, [p for p, _, _ in parsed], [i for _, i, _ in parsed], [t for _, _, t in parsed], path)
        )
    return LoadedData(samples, skipped)


def load_dataset(path: str | Path, skip_bad: bool = False) -> LoadedData:
    """Load an ICDAR directory or a JSON annotation file, whichever ``path`` is."""
    path = Path(path)
    if path.is_dir():
        loaded = load_icdar_dir(path, skip_bad)
    elif path.is_file() and path.suffix.lower() == ".json":
        loaded = load_json_dataset(path, skip_bad)
    elif path.exists():
        raise InputError(path, "expected an ICDAR directory (images/, gts/) or a .json file")
    else:
        raise InputError(path, "data path not found")
    if skip_bad and loaded.skipped:
        warnings.warn(f"{path}: skipped {len(loaded.skipped)} bad sample(s)", stacklevel=2)
    return loaded

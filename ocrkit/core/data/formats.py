"""Readers and writers for annotation and prediction files, and the rules they enforce.

Every malformed input is an ``InputError`` naming the file and the line (text files) or the key
path (JSON), in one line. Under ``skip_bad`` a bad *sample* (one image with its annotations) is
skipped with a warning instead, and the count is reported at the end; errors that leave no sample
to skip (a JSON syntax error, a missing ``images/`` folder) stop even then. Departures that are
accepted are never silent: each kind is reported as one warning naming where it occurs.

**Text files** (ground truth, predictions): UTF-8 with or without a BOM, or UTF-16 with a BOM;
anything else (invalid UTF-8, NUL bytes: UTF-16 without a BOM) is an error naming the line. Lines
end with LF or CRLF; blank lines are skipped; an empty file is an image without text.

**Ground-truth line** ``x1,y1,...,xn,yn,transcription`` (ICDAR-2015 has n = 4; any n >= 4 is
accepted). Fields are split at commas; the leading fields that read as numbers (``float`` syntax,
spaces allowed; ``nan`` and ``inf`` count, so that they are reported rather than read as text):

- followed by a field that is not a number: those numbers are the coordinates, and the rest of the
  line, commas included, is the transcription (``...,Hello, world``);
- every field a number: the transcription is numeric, the last field when there is an odd count
  (``...,2015``), the last two when even (``...,1,5`` is the text ``1,5``); exactly 8 numbers are
  coordinates without a transcription, an error.

The coordinates must be even in number (an odd count is an error, never a shorter polygon with a
number folded into the text: so a transcription cannot start with a number and a comma unless the
whole line is numeric), at least 8 (4 points), finite and within +-``MAX_COORDINATE``. The
transcription may be empty; ``###`` marks a don't-care region.

**JSON**: ``{"images": {"<file>": {"words": {"<id>": {"points": [[x, y], ...], "transcription":
"...", "illegibility": false}}}}}``. Required: ``images`` (object), each entry's ``words`` (object;
``{}`` = no text), each word's ``points`` (a list of at least 4 ``[x, y]`` number pairs, same
limits as above) and ``transcription`` (string); ``illegibility`` is optional (``true``/``false``,
default false; illegible words are don't-care). A key given twice or of the wrong type is an error
naming its key path; an unknown key is ignored with a warning. ``<file>`` is looked up next to the
JSON file, then under ``images/``; a JSON file may describe a subset of the images there.

**ICDAR-2015 folder**: ``images/<stem>.<jpg|jpeg|png|bmp|tif|tiff|webp>`` with
``gts/gt_<stem>.txt``. An image without its ground-truth file, a ground-truth file without its
image, and two images with one stem (``a.jpg`` and ``a.png``: their outputs would collide) are
errors, one bad sample per stem. Other files in the two folders are not read, with a warning
(hidden files, such as ``.DS_Store``, and sub-folders silently).

**Polygons against their image** (when the image is known): a point may lie outside the image (the
ICDAR-2015 ground truth has points a few pixels outside where text meets the border) and is kept
as given, but not farther out than the image's own width or height, and a polygon whose bounding
box misses the image altogether is an error. **Zero-area and
self-intersecting polygons** are kept as given with a warning: the ICDAR-2015 metric leaves them
out as invalid, and the label maps draw them as they are.

**Images**: see ``data/image.py`` (checked before any work starts: empty, non-image, truncated and
oversized files are errors).

**Predictions** ``res_<stem>.txt``: ``x1,y1,...,xn,yn[,score]``, every field a number: an odd count
means the last one is the score. At least 4 points, the same limits; zero-area and
self-intersecting detections are kept with a warning.
"""

from __future__ import annotations

import codecs
import json
import math
import warnings
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import shapely

from ocrkit.core.atomic import write_text_atomic
from ocrkit.core.data.sample import Sample
from ocrkit.core.errors import InputError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
DONT_CARE = "###"
MIN_POINTS = 4
MAX_COORDINATE = 1e6  # beyond this, float32 keeps less than a tenth of a pixel
JSON_WORD_KEYS = ("points", "transcription", "illegibility")

_GT_METRIC = "kept as given (the ICDAR-2015 metric leaves it out as invalid ground truth)"
_DET_METRIC = "kept as given (the ICDAR-2015 metric leaves it out as an invalid detection)"


@dataclass
class LoadedData:
    """Samples read from a dataset, the bad ones skipped under ``skip_bad`` (their error
    messages), and the warnings about what was accepted as given."""

    samples: list[Sample]
    skipped: list[str] = field(default_factory=list)
    notices: list[str] = field(default_factory=list)


# ---------------------------------------------------------------- notices: departures accepted as given


class Notices:
    """What was accepted as given but departs from the format, gathered per kind: each kind is
    reported as one warning naming its first place and how many more there are."""

    def __init__(self) -> None:
        self._places: dict[str, list[str]] = {}

    def add(self, what: str, source: object, where: int | str | None = None) -> None:
        self._places.setdefault(what, []).append(_place(source, where))

    def merge(self, other: Notices) -> None:
        for what, places in other._places.items():
            self._places.setdefault(what, []).extend(places)

    def messages(self) -> list[str]:
        out = []
        for what, places in self._places.items():
            more = len(places) - 1
            if not more:
                out.append(f"{places[0]}: {what}")
                continue
            shown = ", ".join(places[1:4]) + (", ..." if more > 3 else "")
            out.append(f"{places[0]}: {what} (and {more} more: {shown})")
        return out

    def warn(self, stacklevel: int = 3) -> list[str]:
        messages = self.messages()
        for message in messages:
            warnings.warn(message, stacklevel=stacklevel)
        return messages


def _place(source: object, where: int | str | None) -> str:
    """``file:line`` for text files, ``file: key.path`` for JSON, ``file`` alone otherwise."""
    if where is None:
        return f"{source}"
    return f"{source}: {where}" if isinstance(where, str) else f"{source}:{where}"


def _error(source: object, where: int | str | None, message: str) -> InputError:
    """An InputError at a line (text files) or a key path (JSON: written before the message)."""
    if isinstance(where, str):
        return InputError(source, f"{where}: {message}")
    return InputError(source, message, where)


def skip_or_raise(error: InputError, skip_bad: bool, skipped: list[str]) -> None:
    """Raise ``error``, or under ``skip_bad`` warn that its sample is skipped and record it."""
    if not skip_bad:
        raise error
    warnings.warn(f"skipping bad sample: {error}", stacklevel=3)
    skipped.append(str(error))


# ---------------------------------------------------------------- text files and numbers


def read_text_file(path: str | Path, what: str = "file") -> str:
    """A text file's content: UTF-8 (BOM optional) or UTF-16 with a BOM; InputError (naming the
    line) for anything else, including NUL bytes (UTF-16 without a BOM, or a binary file)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise InputError(path, f"{what} not found") from None
    except IsADirectoryError:
        raise InputError(path, f"{what} expected, found a directory") from None
    except OSError as exc:
        raise InputError(path, f"cannot read {what} ({exc.strerror or exc.__class__.__name__})") from None
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        try:
            return data.decode("utf-16")
        except UnicodeDecodeError as exc:
            raise InputError(path, f"not valid UTF-16 text ({exc.reason} at byte {exc.start})") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        byte = data[exc.start]
        raise InputError(
            path, f"not UTF-8 text (byte 0x{byte:02x}: {exc.reason}); ocrkit reads UTF-8 or UTF-16 with a BOM", line
        ) from None
    if "\x00" in text:
        line = text.count("\n", 0, text.index("\x00")) + 1
        raise InputError(path, "NUL byte in text (UTF-16 without a BOM? ocrkit reads UTF-8 or UTF-16 with a BOM)", line)
    return text


def _text_lines(text: str) -> Iterator[tuple[int, str]]:
    """(line number, line) for the non-blank lines; only LF and CRLF end a line (a transcription
    may hold any other Unicode character)."""
    for line_no, line in enumerate(text.split("\n"), start=1):
        line = line.removesuffix("\r")
        if line.strip():
            yield line_no, line


def _as_number(text: str) -> float | None:
    """The field as a float (nan and inf included), or None when it is not a number."""
    try:
        return float(text)
    except ValueError:
        return None


def _short(text: str, limit: int = 24) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "...")


def _coordinates(values: Sequence[float], source: object, where: int | None, prefix: str = "") -> np.ndarray:
    """Checked coordinates as (n, 2) float32: an even count of at least 8, finite, within range.
    ``where``: the line; ``prefix``: the JSON key path and ": "."""
    if len(values) % 2:
        what = f"odd number of coordinates ({len(values)})"
        raise InputError(source, f"{prefix}{what}: a polygon is x1,y1,...,xn,yn", where)
    if len(values) < 2 * MIN_POINTS:
        raise InputError(
            source,
            f"{prefix}a polygon needs at least {MIN_POINTS} points ({2 * MIN_POINTS} coordinates), "
            f"got {len(values) // 2}",
            where,
        )
    for i, value in enumerate(values, start=1):
        if not math.isfinite(value):
            raise InputError(source, f"{prefix}coordinate {i} is {value}, not a finite number", where)
        if abs(value) > MAX_COORDINATE:
            raise InputError(source, f"{prefix}coordinate {i} is {value:g}, beyond +-{MAX_COORDINATE:g}", where)
    return np.asarray(values, dtype=np.float32).reshape(-1, 2)


def _shape_notice(polygon: np.ndarray, notices: Notices, consequence: str, source: object, where: int | str) -> None:
    """Warn (through ``notices``) about a zero-area or self-intersecting polygon; it is kept."""
    geometry = shapely.Polygon(np.asarray(polygon, np.float64))
    if geometry.is_valid:
        return
    if geometry.convex_hull.area <= 1e-9:
        notices.add(f"zero-area polygon (its points are collinear or repeated), {consequence}", source, where)
    else:
        notices.add(f"self-intersecting polygon (its edges cross), {consequence}", source, where)


def check_in_image(polygon: np.ndarray, size: tuple[int, int], source: object, where: int | str | None) -> None:
    """The rule for points outside the image (module docstring): InputError when a point lies
    farther outside than the image's own width or height, or the polygon misses the image."""
    h, w = size
    xs, ys = polygon[:, 0], polygon[:, 1]
    if xs.min() < -w or xs.max() > 2 * w or ys.min() < -h or ys.max() > 2 * h:
        raise _error(
            source,
            where,
            f"polygon spans x {xs.min():g}..{xs.max():g}, y {ys.min():g}..{ys.max():g}: farther outside "
            f"the {w}x{h} image than its own size",
        )
    if xs.max() < 0 or xs.min() > w or ys.max() < 0 or ys.min() > h:
        raise _error(source, where, f"polygon lies entirely outside the {w}x{h} image")


# ---------------------------------------------------------------- ICDAR ground truth


@dataclass(frozen=True)
class Region:
    """One ground-truth region and where it was read."""

    polygon: np.ndarray
    text: str
    where: int | str  # line number (text files) or key path (JSON)

    @property
    def ignore(self) -> bool:
        return self.text == DONT_CARE


def parse_gt_line(line: str, source: object, line_no: int) -> tuple[np.ndarray, str]:
    """Split a ground-truth line into its polygon and transcription (rules in the module docstring)."""
    fields = line.split(",")
    numbers: list[float] = []
    for text in fields:
        value = _as_number(text.strip())
        if value is None:
            break
        numbers.append(value)
    if len(numbers) < len(fields):
        coords, transcription = numbers, ",".join(fields[len(numbers) :])
        if len(coords) < 2 * MIN_POINTS:
            raise InputError(
                source,
                f"expected x1,y1,...,xn,yn,transcription with at least {2 * MIN_POINTS} coordinates; "
                f"field {len(coords) + 1} ({_short(fields[len(coords)].strip())}) is not a number",
                line_no,
            )
        if len(coords) % 2:
            raise InputError(
                source,
                f"odd number of coordinates ({len(coords)}) before the transcription "
                f"{_short(transcription.strip())}: a polygon is x1,y1,...,xn,yn",
                line_no,
            )
    else:
        if len(numbers) == 2 * MIN_POINTS:
            raise InputError(source, "missing the transcription field (the text, or ### for don't-care)", line_no)
        if len(numbers) < 2 * MIN_POINTS:
            raise InputError(
                source,
                f"expected x1,y1,...,xn,yn,transcription with at least {2 * MIN_POINTS} coordinates; "
                f"the line has {len(numbers)} numbers and nothing else",
                line_no,
            )
        cut = len(numbers) - (2 if len(numbers) % 2 == 0 else 1)
        coords, transcription = numbers[:cut], ",".join(fields[cut:])
    return _coordinates(coords, source, line_no), transcription.strip()


def read_gt_regions(path: Path, notices: Notices) -> list[Region]:
    """The regions of one ground-truth file, with the departures kept as given noted in ``notices``."""
    regions = []
    for line_no, line in _text_lines(read_text_file(path, "ground-truth file")):
        polygon, text = parse_gt_line(line, path, line_no)
        _shape_notice(polygon, notices, _GT_METRIC, path, line_no)
        regions.append(Region(polygon, text, line_no))
    return regions


def read_icdar_gt(path: str | Path) -> tuple[list[np.ndarray], list[bool], list[str]]:
    """Read one ``gt_<stem>.txt`` file: polygons, ignore flags, transcriptions (warning about
    zero-area and self-intersecting polygons, which are kept)."""
    notices = Notices()
    regions = read_gt_regions(Path(path), notices)
    notices.warn()
    return [r.polygon for r in regions], [r.ignore for r in regions], [r.text for r in regions]


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


# ---------------------------------------------------------------- predictions


def write_predictions(path: str | Path, polygons: Iterable[np.ndarray], scores: Iterable[float] | None = None) -> None:
    """Write a ``res_<stem>.txt`` file: one polygon a line, optionally with its score."""
    polygons = list(polygons)
    if scores is None:
        lines = [format_polygon(p) for p in polygons]
    else:
        lines = [f"{format_polygon(p)},{s:.4f}" for p, s in zip(polygons, scores, strict=True)]
    write_text_atomic(path, "".join(line + "\n" for line in lines))


def read_prediction_lines(path: Path, notices: Notices) -> tuple[list[np.ndarray], list[float | None]]:
    """Polygons and scores of one prediction file, departures kept as given noted in ``notices``."""
    polygons, scores = [], []
    for line_no, line in _text_lines(read_text_file(path, "prediction file")):
        values = []
        for i, text in enumerate(line.split(","), start=1):
            value = _as_number(text.strip())
            if value is None:
                what = f"field {i} ({_short(text.strip())}) is not a number"
                raise InputError(path, f"{what}: expected x1,y1,...,xn,yn[,score]", line_no)
            values.append(value)
        score = values.pop() if len(values) % 2 else None
        if score is not None and not math.isfinite(score):
            raise InputError(path, f"score is {score}, not a finite number", line_no)
        polygon = _coordinates(values, path, line_no)
        _shape_notice(polygon, notices, _DET_METRIC, path, line_no)
        polygons.append(polygon)
        scores.append(score)
    return polygons, scores


def read_predictions(path: str | Path) -> tuple[list[np.ndarray], list[float | None]]:
    """Read a ``res_<stem>.txt`` file; an odd count of numbers means the last one is a score."""
    notices = Notices()
    result = read_prediction_lines(Path(path), notices)
    notices.warn()
    return result


# ---------------------------------------------------------------- folders


def is_hidden(path: Path) -> bool:
    return path.name.startswith(".")


def _not_read(folder: Path, names: list[str], expected: str, notices: Notices) -> None:
    if names:
        listed = ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
        notices.add(f"{len(names)} file(s) not read, not {expected}: {listed}", folder)


def image_files(folder: Path, notices: Notices) -> list[Path]:
    """The image files of ``folder`` by suffix (sorted); other files are noted as not read
    (hidden files and sub-folders are left alone)."""
    found, other = [], []
    for path in sorted(folder.iterdir()):
        if is_hidden(path) or path.is_dir():
            continue
        if path.suffix.lower() in IMAGE_SUFFIXES:
            found.append(path)
        else:
            other.append(path.name)
    _not_read(folder, other, f"image files ({', '.join(IMAGE_SUFFIXES)})", notices)
    return found


def _stem_groups(paths: Iterable[Path]) -> dict[str, list[Path]]:
    groups: dict[str, list[Path]] = {}
    for path in paths:
        groups.setdefault(path.stem, []).append(path)
    return groups


def same_stem_error(paths: Sequence[Path]) -> InputError:
    others = ", ".join(p.name for p in paths[1:])
    return InputError(
        paths[0],
        f"{others} has the same stem {paths[0].stem!r}: one stem, one image (their ground truth and "
        "res_<stem>.txt outputs would collide)",
    )


Pending = tuple[Path, Path, list[Region], Notices]  # image, annotation file, regions, their notices


def _resolve(ordered: list[InputError | Pending], notices: Notices, skip_bad: bool) -> LoadedData:
    """Check the images of the pending samples (in threads) and their polygons against the image
    size, then raise the first error in order, or under ``skip_bad`` skip every bad sample. The
    notices of good samples join ``notices``."""
    from ocrkit.core.data.image import check_images  # Pillow: only where images are read

    pending = [entry for entry in ordered if not isinstance(entry, InputError)]
    sizes = iter(check_images([entry[0] for entry in pending]))
    samples: list[Sample] = []
    skipped: list[str] = []
    for entry in ordered:
        try:
            if isinstance(entry, InputError):
                raise entry
            image_path, source, regions, sample_notices = entry
            size = next(sizes)
            if isinstance(size, InputError):
                raise size
            for region in regions:
                check_in_image(region.polygon, size, source, region.where)
        except InputError as err:
            skip_or_raise(err, skip_bad, skipped)
            continue
        notices.merge(sample_notices)
        polygons, ignore, texts = [r.polygon for r in regions], [r.ignore for r in regions], [r.text for r in regions]
        samples.append(Sample(image_path, polygons, ignore, texts, source))
    return LoadedData(samples, skipped, notices.messages())


def load_icdar_dir(root: str | Path, skip_bad: bool = False) -> LoadedData:
    """Load ``root/images/*`` with ``root/gts/gt_<stem>.txt`` (rules in the module docstring)."""
    root = Path(root)
    images_dir, gts_dir = root / "images", root / "gts"
    for needed in (images_dir, gts_dir):
        if not needed.is_dir():
            raise InputError(needed, "directory not found (ICDAR layout needs images/ and gts/)")
    notices = Notices()
    images = _stem_groups(image_files(images_dir, notices))
    gts: dict[str, Path] = {}
    other: list[str] = []
    for path in sorted(gts_dir.iterdir()):
        if is_hidden(path) or path.is_dir():
            continue
        if path.name.startswith("gt_") and path.suffix == ".txt":
            gts[path.stem[len("gt_") :]] = path
        else:
            other.append(path.name)
    _not_read(gts_dir, other, "ground-truth files gt_<stem>.txt", notices)

    # One entry per stem, in stem order: an error, or a sample waiting for its image check.
    ordered: list[InputError | Pending] = []
    for stem in sorted(set(images) | set(gts)):
        try:
            found, gt_path = images.get(stem, []), gts.get(stem)
            if len(found) > 1:
                raise same_stem_error(found)
            if not found:
                assert gt_path is not None
                raise InputError(gt_path, f"no image for this ground truth: no {stem}.<image suffix> in {images_dir}")
            if gt_path is None:
                raise InputError(gts_dir / f"gt_{stem}.txt", f"ground truth for {found[0].name} not found")
            sample_notices = Notices()
            ordered.append((found[0], gt_path, read_gt_regions(gt_path, sample_notices), sample_notices))
        except InputError as err:
            ordered.append(err)
    return _resolve(ordered, notices, skip_bad)


# ---------------------------------------------------------------- JSON


class _Object(dict):
    """A JSON object that remembers the keys it was given more than once."""

    duplicates: list[str]


def _json_object(pairs: list[tuple[str, Any]]) -> _Object:
    obj = _Object()
    obj.duplicates = []
    for key, value in pairs:
        if key in obj:
            obj.duplicates.append(key)
        obj[key] = value
    return obj


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return f"a list of {len(value)}"
    return "an object"


def _require_object(value: object, key: str, source: Path, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise InputError(source, f"{key}: expected {what}, got {_json_type(value)}")
    duplicates = getattr(value, "duplicates", [])
    if duplicates:
        raise InputError(source, f"{key}.{duplicates[0]}: key given twice")
    return value


def _unknown_keys(value: dict[str, Any], known: Sequence[str], key: str, source: Path, notices: Notices) -> None:
    for name in value:
        if name not in known:
            notices.add("unknown key, ignored", source, f"{key}.{name}")


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _json_points(points: object, key: str, source: Path) -> np.ndarray:
    if not isinstance(points, list):
        raise InputError(source, f"{key}: expected a list of x, y pairs, got {_json_type(points)}")
    values: list[float] = []
    for i, point in enumerate(points):
        if not (isinstance(point, list) and len(point) == 2 and all(_is_number(v) for v in point)):
            raise InputError(source, f"{key}.{i}: expected an x, y pair of numbers, got {_json_type(point)}")
        try:
            values.extend(float(v) for v in point)
        except OverflowError:  # an integer past float range
            raise InputError(source, f"{key}.{i}: coordinate beyond +-{MAX_COORDINATE:g}") from None
    return _coordinates(values, source, None, prefix=f"{key}: ")


def _json_word(word: object, key: str, source: Path, notices: Notices) -> Region:
    word = _require_object(word, key, source, "an object with points and transcription")
    _unknown_keys(word, JSON_WORD_KEYS, key, source, notices)
    for required in ("points", "transcription"):
        if required not in word:
            raise InputError(source, f"{key}.{required}: missing (a word needs points and transcription)")
    polygon = _json_points(word["points"], f"{key}.points", source)
    text = word["transcription"]
    if not isinstance(text, str):
        raise InputError(source, f"{key}.transcription: expected a string, got {_json_type(text)}")
    illegible = word.get("illegibility", False)
    if not isinstance(illegible, bool):
        raise InputError(source, f"{key}.illegibility: expected true or false, got {_json_type(illegible)}")
    _shape_notice(polygon, notices, _GT_METRIC, source, f"{key}.points")
    return Region(polygon, DONT_CARE if illegible else text, f"{key}.points")


def _json_image_path(name: str, base: Path) -> Path:
    direct = base / name
    return direct if direct.exists() or not (base / "images" / name).exists() else base / "images" / name


def load_json_dataset(path: str | Path, skip_bad: bool = False) -> LoadedData:
    """Load the JSON layout (rules in the module docstring)."""
    path = Path(path)
    text = read_text_file(path, "annotation file")
    if not text.strip():
        raise InputError(path, "empty file: expected a JSON object with the key images")
    try:
        doc = json.loads(text, object_pairs_hook=_json_object)
    except json.JSONDecodeError as exc:
        raise InputError(path, f"not valid JSON: {exc.msg} (column {exc.colno})", exc.lineno) from None
    except RecursionError:
        raise InputError(path, "not valid JSON: nested too deeply") from None
    if not isinstance(doc, dict):
        raise InputError(path, f"expected an object with the key images, got {_json_type(doc)}")
    doc = _require_object(doc, "(top level)", path, "an object")
    notices = Notices()
    _unknown_keys(doc, ("images",), "(top level)", path, notices)
    if "images" not in doc:
        raise InputError(path, "images: missing (an object mapping image file names to their words)")
    images = _require_object(doc["images"], "images", path, "an object mapping image file names to entries")

    ordered: list[InputError | Pending] = []
    for name, entry in images.items():
        key = f"images.{name}"
        try:
            sample_notices = Notices()
            entry = _require_object(entry, key, path, "an object with the key words")
            _unknown_keys(entry, ("words",), key, path, sample_notices)
            if "words" not in entry:
                raise InputError(path, f"{key}.words: missing (write an empty object for an image without text)")
            words = _require_object(entry["words"], f"{key}.words", path, "an object mapping word ids to words")
            regions = [_json_word(w, f"{key}.words.{wid}", path, sample_notices) for wid, w in words.items()]
            image_path = _json_image_path(name, path.parent)
            if not image_path.exists():
                raise InputError(path, f"{key}: image file not found (looked in {path.parent} and its images/)")
            ordered.append((image_path, path, regions, sample_notices))
        except InputError as err:
            ordered.append(err)
    return _resolve(_one_image_per_stem(ordered), notices, skip_bad)


def _one_image_per_stem(ordered: list[InputError | Pending]) -> list[InputError | Pending]:
    """The entries with an error in place of the first of each group of images sharing a stem
    (and the rest of the group dropped): outputs such as res_<stem>.txt are named by the stem."""
    groups = _stem_groups(entry[0] for entry in ordered if not isinstance(entry, InputError))
    reported: set[str] = set()
    checked: list[InputError | Pending] = []
    for entry in ordered:
        if isinstance(entry, InputError) or len(groups[entry[0].stem]) == 1:
            checked.append(entry)
        elif entry[0].stem not in reported:
            reported.add(entry[0].stem)
            checked.append(same_stem_error(groups[entry[0].stem]))
    return checked


def load_image_paths(inputs: Sequence[str | Path], skip_bad: bool = False) -> list[Path]:
    """The images ``ocrkit predict`` reads: files as given and the image files of folders (by
    suffix; other files noted), each checked (data/image.py) and one per stem (the outputs are
    named by it). Errors, ``skip_bad`` and warnings as in ``load_dataset``."""
    from ocrkit.core.data.image import check_images  # Pillow: only where images are read

    notices = Notices()
    paths: list[Path] = []
    for item in map(Path, inputs):
        paths += image_files(item, notices) if item.is_dir() else [item]
    groups = _stem_groups(paths)
    ordered: list[InputError | Path] = []
    for path in paths:
        group = groups[path.stem]
        if len(group) == 1:
            ordered.append(path)
        elif path == group[0]:
            ordered.append(same_stem_error(group))
    candidates = [entry for entry in ordered if isinstance(entry, Path)]
    checked = iter(check_images(candidates))
    good: list[Path] = []
    skipped: list[str] = []
    for entry in ordered:
        try:
            if isinstance(entry, InputError):
                raise entry
            result = next(checked)
            if isinstance(result, InputError):
                raise result
        except InputError as err:
            skip_or_raise(err, skip_bad, skipped)
            continue
        good.append(entry)
    notices.warn(stacklevel=2)
    if skip_bad and skipped:
        warnings.warn(f"skipped {len(skipped)} bad image(s)", stacklevel=2)
    return good


def load_dataset(path: str | Path, skip_bad: bool = False) -> LoadedData:
    """Load an ICDAR directory or a JSON annotation file, whichever ``path`` is; warn about what
    was accepted as given and, under ``skip_bad``, about each bad sample and their count."""
    path = Path(path)
    if path.is_dir():
        loaded = load_icdar_dir(path, skip_bad)
    elif path.is_file() and path.suffix.lower() == ".json":
        loaded = load_json_dataset(path, skip_bad)
    elif path.exists():
        raise InputError(path, "expected an ICDAR directory (images/, gts/) or a .json file")
    else:
        raise InputError(path, "data path not found")
    for message in loaded.notices:
        warnings.warn(message, stacklevel=2)
    if skip_bad and loaded.skipped:
        warnings.warn(f"{path}: skipped {len(loaded.skipped)} bad sample(s)", stacklevel=2)
    return loaded

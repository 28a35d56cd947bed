"""A malformed-input corpus (a test helper, not a test): small datasets with exactly one defect
each, and what every ocrkit reader must say about it.

``build_corpus(seed)`` returns the cases, the same bytes for the same seed. ``write_case(case,
folder)`` writes one. A case folder holds, by ``layout``:

- ``icdar``: ``images/`` and ``gts/`` with two good samples (``good_0``, ``good_1``) and a third
  sample (``bad``, unless the defect is about names) that carries the defect, and ``preds/`` with a
  good ``res_<stem>.txt`` for every ground-truth file;
- ``json``: ``ann.json`` describing the same three samples, their images under ``images/``;
- ``preds``: a good ICDAR folder whose ``preds/`` carries the defect.

Images are 64x64 (a grey page with dark boxes where the words are), so every command runs in a
fraction of a second. Each case records, per reader, an ``Expect``: the outcome (``error``: a
non-zero exit with one line naming the file and the line or key; ``warn``: accepted, with a
warning naming them; ``ok``: accepted silently), the file, the line or JSON key path, a fragment of
the message, whether ``--skip-bad`` can skip it, and how many samples remain. The readers are
``data`` (``load_dataset``, ``train``, ``eval --checkpoint``, ``maps precompute``, ``data check``),
``images`` (``predict`` on ``images/``) and ``scores`` (``eval --gt-dir gts --pred-dir preds``).
The rules the expectations follow are those of ``ocrkit/core/data/formats.py`` and ``image.py``.
"""

from __future__ import annotations

import codecs
import json
import struct
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import cv2
import numpy as np

SIZE = 64  # every image is SIZE x SIZE
GOOD = ("good_0", "good_1")


@dataclass(frozen=True)
class Expect:
    """What one reader must do with a case."""

    outcome: str  # "error" | "warn" | "ok"
    file: str | None = None  # the path, relative to the case folder, that the message names
    where: int | str | None = None  # the line (text files) or the JSON key path
    says: str = ""  # a fragment of the message
    also: tuple[str, ...] = ()  # more fragments (another file of the clash)
    skippable: bool = True  # --skip-bad skips the sample and the run goes on
    bad: int = 1  # samples skipped under --skip-bad
    left: int = 2  # samples the reader uses (under --skip-bad for an error)

    def place(self, root: Path) -> str:
        """What the message must contain to name the file and the line or key."""
        assert self.file is not None
        path = root / self.file
        if self.where is None:
            return f"{path}: "
        return f"{path}: {self.where}" if isinstance(self.where, str) else f"{path}:{self.where}: "


OK3 = Expect("ok", left=3)


@dataclass(frozen=True)
class Case:
    name: str  # unique; also the case's folder name
    kind: str  # its row in the outcome table
    layout: str  # "icdar" | "json" | "preds"
    files: dict[str, bytes] = field(repr=False)
    data: Expect | None  # load_dataset, train, eval --checkpoint, maps precompute, data check
    images: Expect | None  # predict images/
    scores: Expect | None  # eval --gt-dir gts --pred-dir preds

    def data_path(self, root: Path) -> Path:
        return root / "ann.json" if self.layout == "json" else root


def write_case(case: Case, root: Path) -> Path:
    """Write ``case`` into ``root`` (made); returns ``root``."""
    for name in ("images", "gts", "preds"):
        (root / name).mkdir(parents=True, exist_ok=True)
    for relative, data in case.files.items():
        path = root / relative
        if data is DIRECTORY:
            path.mkdir(parents=True, exist_ok=True)
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return root


DIRECTORY = b"<a directory>"  # a files entry that is a folder, not a file


# ---------------------------------------------------------------- good material


def rect(x0: float, y0: float, x1: float, y1: float) -> list[float]:
    return [x0, y0, x1, y0, x1, y1, x0, y1]


def csv(values) -> str:
    return ",".join(f"{v:g}" if isinstance(v, float) else str(v) for v in values)


WORDS = {  # per stem: three words inside the image (the third a don't-care region)
    "good_0": [rect(6, 6, 40, 18), rect(8, 30, 56, 44), rect(10, 50, 30, 60)],
    "good_1": [rect(20, 4, 60, 16), rect(4, 24, 36, 40), rect(40, 44, 60, 58)],
    "bad": [rect(4, 8, 44, 20), rect(12, 28, 58, 42), rect(6, 48, 24, 60)],
}
TEXTS = ("hello", "world", "###")


def image_bytes(stem: str, ext: str = ".png", size: tuple[int, int] = (SIZE, SIZE)) -> bytes:
    """A grey page with a dark box per word of ``stem``."""
    image = np.full((*size, 3), 200, np.uint8)
    for box in WORDS.get(stem, WORDS["bad"])[:2]:
        x0, y0, x1, _, _, y1, _, _ = (int(v) for v in box)
        cv2.rectangle(image, (x0, y0), (x1, y1), (30, 30, 30), -1)
    ok, encoded = cv2.imencode(ext if ext.lower() not in (".tif", ".tiff") else ".tiff", image)
    assert ok
    return encoded.tobytes()


def gt_lines(stem: str) -> list[str]:
    return [f"{csv(box)},{text}" for box, text in zip(WORDS.get(stem, WORDS["bad"]), TEXTS, strict=True)]


def text(lines: list[str]) -> bytes:
    return ("".join(line + "\n" for line in lines)).encode("utf-8")


def res_lines(stem: str) -> list[str]:
    return [f"{csv(box)},0.9" for box in WORDS.get(stem, WORDS["bad"])[:2]]


def icdar_files(stems=(*GOOD, "bad"), image_ext: str = ".png") -> dict[str, bytes]:
    files: dict[str, bytes] = {}
    for stem in stems:
        files[f"images/{stem}{image_ext}"] = image_bytes(stem, image_ext)
        files[f"gts/gt_{stem}.txt"] = text(gt_lines(stem))
        files[f"preds/res_{stem}.txt"] = text(res_lines(stem))
    return files


def json_doc(stems=(*GOOD, "bad")) -> dict:
    return {
        "images": {
            f"{stem}.png": {
                "words": {
                    str(i): {"points": np.asarray(box).reshape(-1, 2).tolist(), "transcription": t}
                    for i, (box, t) in enumerate(zip(WORDS[stem], TEXTS, strict=True))
                }
            }
            for stem in stems
        }
    }


def json_files(doc: object | None = None, raw: bytes | None = None) -> dict[str, bytes]:
    files = {f"images/{stem}.png": image_bytes(stem) for stem in (*GOOD, "bad")}
    files["ann.json"] = (
        raw if raw is not None else json.dumps(doc if doc is not None else json_doc(), indent=1).encode()
    )
    return files


def png_with_size(width: int, height: int) -> bytes:
    """A valid PNG whose header claims ``width`` x ``height`` (CRC recomputed)."""
    png = image_bytes("bad")
    header = bytearray(png[8:33])
    struct.pack_into(">II", header, 8, width, height)
    struct.pack_into(">I", header, 21, zlib.crc32(bytes(header[4:21])))
    return png[:8] + bytes(header) + png[33:]


# ---------------------------------------------------------------- expectations shorthand

GT = "gts/gt_bad.txt"
RES = "preds/res_bad.txt"
ANN = "ann.json"
BAD_KEY = "images.bad.png"


def gt_error(line: int, says: str = "", files_too: bool = True) -> dict[str, Expect | None]:
    """A defect in gt_bad.txt's line: an error wherever ground truth is read, predict unaffected."""
    error = Expect("error", GT, line, says)
    return {"data": error, "images": OK3, "scores": error if files_too else OK3}


def gt_warn(line: int, says: str) -> dict[str, Expect | None]:
    warn = Expect("warn", GT, line, says, left=3)
    return {"data": warn, "images": OK3, "scores": warn}


def image_error(file: str, says: str = "") -> dict[str, Expect | None]:
    error = Expect("error", file, None, says)
    return {"data": error, "images": error, "scores": OK3}


def json_error(where: str | int | None, says: str = "", skippable: bool = True, file: str = ANN) -> dict:
    return {"data": Expect("error", file, where, says, skippable=skippable), "images": OK3, "scores": None}


def pred_error(line: int | None, says: str = "", file: str = RES, left: int = 2) -> dict:
    return {"data": None, "images": None, "scores": Expect("error", file, line, says, left=left)}


# ---------------------------------------------------------------- the corpus


class _Cases:
    """Collects cases, numbering them per kind."""

    def __init__(self) -> None:
        self.cases: list[Case] = []
        self._counts: dict[str, int] = {}

    def add(self, kind: str, layout: str, files: dict[str, bytes], expect: dict[str, Expect | None]) -> None:
        n = self._counts.get(kind, 0)
        self._counts[kind] = n + 1
        slug = "".join(c if c.isalnum() else "-" for c in kind).strip("-")
        while "--" in slug:
            slug = slug.replace("--", "-")
        self.cases.append(Case(f"{slug}-{n:03d}", kind, layout, files, **expect))


def _with_bad_line(line: str, k: int) -> bytes:
    lines = gt_lines("bad")
    lines[k - 1] = line
    return text(lines)


def _gt_case(cases: _Cases, kind: str, content: bytes, expect: dict) -> None:
    cases.add(kind, "icdar", {**icdar_files(), GT: content}, expect)


def _gt_syntax(cases: _Cases, rng: np.random.Generator) -> None:
    def line_no() -> int:
        return int(rng.integers(1, 4))

    def coords() -> list[str]:
        x0, y0 = rng.integers(2, 20, 2)
        return [str(v) for v in rect(int(x0), int(y0), int(x0) + 30, int(y0) + 14)]

    # Truncated lines: cut anywhere before the 8th comma; what is left is a line of fewer than
    # eight numbers, or of eight numbers and no transcription.
    for _ in range(36):
        full = ",".join(coords()) + ",hello"
        eighth_comma = [i for i, c in enumerate(full) if c == ","][7]
        k = line_no()
        _gt_case(
            cases, "gt: truncated line", _with_bad_line(full[: int(rng.integers(1, eighth_comma + 1))], k), gt_error(k)
        )

    # Odd counts of numbers before a transcription: never a shorter polygon.
    for n in (5, 7, 9, 11, 13, 15):
        for _ in range(6):
            values = [str(int(v)) for v in rng.integers(0, SIZE, n)]
            k = line_no()
            says = f"odd number of coordinates ({n})" if n > 8 else "at least 8 coordinates"
            _gt_case(
                cases, "gt: odd coordinate count", _with_bad_line(",".join(values) + ",word", k), gt_error(k, says)
            )

    # Too few points: a triangle, a segment, a point, nothing (with a transcription), and
    # all-numeric short lines.
    for n in (0, 2, 4, 6):
        for _ in range(5):
            values = [str(int(v)) for v in rng.integers(0, SIZE, n)]
            k = line_no()
            line = ",".join([*values, "word"])
            _gt_case(cases, "gt: too few points", _with_bad_line(line, k), gt_error(k, "at least 8 coordinates"))
    for n in (3, 5, 6, 7):
        values = [str(int(v)) for v in rng.integers(0, SIZE, n)]
        k = line_no()
        _gt_case(cases, "gt: too few points", _with_bad_line(",".join(values), k), gt_error(k, f"has {n} numbers"))

    # Exactly eight numbers: the transcription is missing.
    for _ in range(8):
        k = line_no()
        _gt_case(
            cases,
            "gt: missing transcription",
            _with_bad_line(",".join(coords()), k),
            gt_error(k, "missing the transcription"),
        )

    # A coordinate that is not a number.
    tokens = ["abc", "1.2.3", "12px", "", "--5", "0x10", "five", "1 2"]
    for token in tokens:
        for _ in range(5):
            values = coords()
            i = int(rng.integers(0, 8))
            values[i] = token
            k = line_no()
            says = f"field {i + 1} ({token.strip()!r}) is not a number"
            _gt_case(cases, "gt: non-numeric value", _with_bad_line(",".join(values) + ",word", k), gt_error(k, says))

    # NaN and infinities: numbers, but not finite.
    for token in ("nan", "NaN", "inf", "-inf", "Infinity", "+inf"):
        for _ in range(5):
            values = coords()
            i = int(rng.integers(0, 8))
            values[i] = token
            k = line_no()
            says = f"coordinate {i + 1} is {float(token)}"
            _gt_case(cases, "gt: NaN or infinity", _with_bad_line(",".join(values) + ",word", k), gt_error(k, says))

    # Beyond +-1e6: refused everywhere, with or without the image.
    for value in ("1e7", "5000000", "-2e6", "1e12", "1e300", "1000001", "-1e9"):
        for _ in range(4):
            values = coords()
            i = int(rng.integers(0, 8))
            values[i] = value
            k = line_no()
            says = f"coordinate {i + 1} is {float(value):g}, beyond +-1e+06"
            _gt_case(cases, "gt: huge coordinate", _with_bad_line(",".join(values) + ",word", k), gt_error(k, says))

    # Inside +-1e6 but farther outside the image than its size: refused where the image is known.
    # One side of a rectangle is moved out, so that it stays a rectangle (one defect only).
    for value in (130, 500, 9999, 250000, -65, -200, -999):
        for _ in range(3):
            x0, y0 = (int(v) for v in rng.integers(2, 20, 2))
            x1, y1 = x0 + 30, y0 + 14
            if rng.integers(0, 2):
                x0, x1 = (x0, value) if value > 0 else (value, x1)
            else:
                y0, y1 = (y0, value) if value > 0 else (value, y1)
            k = line_no()
            expect = gt_error(k, "farther outside the 64x64 image", files_too=False)
            _gt_case(cases, "gt: far outside the image", _with_bad_line(f"{csv(rect(x0, y0, x1, y1))},word", k), expect)

    # A polygon entirely outside the image (within its size): refused where the image is known.
    for _ in range(16):
        side = int(rng.integers(0, 4))
        x0, y0 = (int(v) for v in rng.integers(5, 40, 2))
        box = {
            0: rect(-60, y0, -6, y0 + 10),
            1: rect(70, y0, 120, y0 + 10),
            2: rect(x0, -40, x0 + 20, -2),
            3: rect(x0, 66, x0 + 20, 100),
        }[side]
        k = line_no()
        expect = gt_error(k, "entirely outside the 64x64 image", files_too=False)
        _gt_case(cases, "gt: polygon outside the image", _with_bad_line(f"{csv(box)},word", k), expect)

    # A few pixels outside: kept as given, silently (the ICDAR-2015 ground truth has these).
    for _ in range(14):
        x0, y0 = (int(v) for v in rng.integers(-10, 0, 2))
        box = rect(x0, y0, x0 + 30, y0 + 20)
        k = line_no()
        expect = {"data": OK3, "images": OK3, "scores": OK3}
        _gt_case(cases, "gt: slightly negative coordinates", _with_bad_line(f"{csv(box)},edge", k), expect)


def _gt_geometry_and_text(cases: _Cases, rng: np.random.Generator) -> None:
    def line_no() -> int:
        return int(rng.integers(1, 4))

    # Self-intersecting polygons: kept as given, one warning naming the line.
    for _ in range(24):
        x0, y0 = (int(v) for v in rng.integers(2, 20, 2))
        w, h = (int(v) for v in rng.integers(12, 40, 2))
        shape = int(rng.integers(0, 3))
        if shape == 0:  # a bow-tie: two corners swapped
            pts = [x0, y0, x0 + w, y0 + h, x0 + w, y0, x0, y0 + h]
        elif shape == 1:
            pts = [x0, y0, x0 + w, y0, x0, y0 + h, x0 + w, y0 + h]
        else:  # a pentagon whose last edge crosses the first
            pts = [x0, y0 + h // 2, x0 + w, y0, x0 + w, y0 + h, x0 + w // 2, y0 - 2, x0 + w // 3, y0 + h]
        k = line_no()
        _gt_case(
            cases,
            "gt: self-intersecting polygon",
            _with_bad_line(f"{csv(pts)},cross", k),
            gt_warn(k, "self-intersecting polygon"),
        )

    # Zero-area polygons: collinear or repeated points; kept as given, one warning.
    for _ in range(24):
        x0, y0 = (int(v) for v in rng.integers(2, 30, 2))
        shape = int(rng.integers(0, 4))
        if shape == 0:
            pts = [x0, y0, x0 + 10, y0, x0 + 20, y0, x0 + 30, y0]  # a horizontal line
        elif shape == 1:
            pts = [x0, y0, x0, y0 + 10, x0, y0 + 20, x0, y0 + 5]  # a vertical line
        elif shape == 2:
            pts = [x0, y0, x0 + 5, y0 + 5, x0 + 10, y0 + 10, x0 + 20, y0 + 20]  # a diagonal
        else:
            pts = [x0, y0] * 4  # one point four times
        k = line_no()
        _gt_case(cases, "gt: zero-area polygon", _with_bad_line(f"{csv(pts)},flat", k), gt_warn(k, "zero-area polygon"))

    ok = {"data": OK3, "images": OK3, "scores": OK3}
    # Transcriptions that are numbers or hold commas: accepted as they are.
    box = csv(WORDS["bad"][0])
    for transcription in ("2015", "1,5", "Hello, world", "3.14", "###", "", " spaced ", "a,b,c,d", "1e5", "NaN"):
        _gt_case(
            cases,
            "gt: numeric or comma transcription",
            _with_bad_line(f"{box},{transcription}", int(rng.integers(1, 4))),
            ok,
        )

    # An empty ground-truth file: an image without text.
    for content in (b"", b"\n", b"\n\n\n", b"   \n\t\n", b"\r\n\r\n", "\ufeff".encode()):
        _gt_case(cases, "gt: empty file", content, ok)

    # Encodings: UTF-16 with a BOM and UTF-8 with a BOM or CRLF are accepted.
    lines = gt_lines("bad")
    lines[0] = lines[0].replace("hello", "café")
    body = "".join(line + "\n" for line in lines)
    for data in (
        body.encode("utf-16"),
        codecs.BOM_UTF16_LE + body.encode("utf-16-le"),
        codecs.BOM_UTF16_BE + body.encode("utf-16-be"),
        codecs.BOM_UTF16_LE + body.replace("\n", "\r\n").encode("utf-16-le"),
        codecs.BOM_UTF8 + body.encode(),
        body.replace("\n", "\r\n").encode(),
    ):
        _gt_case(cases, "gt: UTF-16 with BOM or UTF-8 with BOM/CRLF", data, ok)

    # Invalid UTF-8 in a transcription: an error naming the line.
    for bad_bytes in (b"\xff", b"\xfe\xff", b"\xc3\x28", b"\x80", b"\xc0\xaf", b"caf\xe9", b"\xed\xa0\x80"):
        for _ in range(4):
            k = line_no()
            raw = [line.encode() for line in gt_lines("bad")]
            raw[k - 1] = raw[k - 1].replace(b"hello", bad_bytes).replace(b"world", bad_bytes).replace(b"###", bad_bytes)
            _gt_case(cases, "gt: invalid UTF-8", b"".join(r + b"\n" for r in raw), gt_error(k, "not UTF-8 text"))

    # UTF-16 without a BOM: NUL bytes, an error naming the first line that holds one.
    ascii_body = "".join(line + "\n" for line in gt_lines("bad"))
    for codec in ("utf-16-le", "utf-16-be"):
        for crlf in (False, True):
            data = ascii_body.replace("\n", "\r\n") if crlf else ascii_body
            _gt_case(cases, "gt: UTF-16 without BOM", data.encode(codec), gt_error(1, "NUL byte"))


def _pairs(cases: _Cases, rng: np.random.Generator) -> None:
    base = icdar_files(GOOD)
    # A ground-truth file without its image.
    for stem in ("bad", "img_9", "scan 1", "x.y", "IMG_0001", "b", "émoji", "long_name_with_digits_123"):
        files = {**base, f"gts/gt_{stem}.txt": text(gt_lines("bad")), f"preds/res_{stem}.txt": text(res_lines("bad"))}
        expect = {
            "data": Expect("error", f"gts/gt_{stem}.txt", None, "no image for this ground truth"),
            "images": Expect("ok", left=2),
            "scores": OK3,
        }
        cases.add("pair: ground truth without image", "icdar", files, expect)
    # An image without its ground-truth file.
    for stem, ext in (
        ("bad", ".png"),
        ("img_9", ".jpg"),
        ("scan 1", ".png"),
        ("x.y", ".png"),
        ("c", ".bmp"),
        ("d", ".jpeg"),
        ("e", ".webp"),
        ("F", ".PNG"),
    ):
        files = {**base, f"images/{stem}{ext}": image_bytes("bad", ext if ext != ".PNG" else ".png")}
        expect = {
            "data": Expect("error", f"gts/gt_{stem}.txt", None, f"ground truth for {stem}{ext} not found"),
            "images": OK3,
            "scores": Expect("ok", left=2),
        }
        cases.add("pair: image without ground truth", "icdar", files, expect)
    # The gt_ prefix forgotten: the image has no ground truth, and the file is named as not read.
    for name in ("bad.txt", "GT_bad.txt", "gt-bad.txt", "gtbad.txt"):
        files = {**base, "images/bad.png": image_bytes("bad"), f"gts/{name}": text(gt_lines("bad"))}
        expect = {
            "data": Expect("error", GT, None, "ground truth for bad.png not found"),
            "images": OK3,
            "scores": Expect("warn", "gts", None, f"1 .txt file(s) not read, not named gt_<stem>.txt: {name}", left=2),
        }
        cases.add("pair: gt_ prefix missing", "icdar", files, expect)
    # Names that differ in case: two bad samples (an image without gt, a gt without image).
    for image_stem, gt_stem in (("bad", "BAD"), ("Bad", "bad"), ("img_1", "IMG_1"), ("a", "A")):
        files = {
            **base,
            f"images/{image_stem}.png": image_bytes("bad"),
            f"gts/gt_{gt_stem}.txt": text(gt_lines("bad")),
            f"preds/res_{gt_stem}.txt": text(res_lines("bad")),
        }
        first = min(image_stem, gt_stem)  # stems are read in sorted order: the first one is named
        file = f"gts/gt_{first}.txt"
        says = "no image for this ground truth" if first == gt_stem else f"ground truth for {first}.png not found"
        expect = {"data": Expect("error", file, None, says, bad=2), "images": OK3, "scores": OK3}
        cases.add("pair: names differ in case", "icdar", files, expect)
    # Two images with one stem.
    for exts in (
        (".jpg", ".png"),
        (".png", ".bmp"),
        (".jpeg", ".jpg"),
        (".JPG", ".jpg"),
        (".png", ".tif"),
        (".png", ".webp"),
        (".jpg", ".png", ".bmp"),
        (".PNG", ".png"),
    ):
        files = {**icdar_files(GOOD), GT: text(gt_lines("bad")), RES: text(res_lines("bad"))}
        for ext in exts:
            files[f"images/bad{ext}"] = image_bytes("bad", ext.lower())
        names = sorted(f"bad{ext}" for ext in exts)
        error = Expect("error", f"images/{names[0]}", None, "has the same stem 'bad'", also=tuple(names[1:]))
        cases.add("pair: two images with one stem", "icdar", files, {"data": error, "images": error, "scores": OK3})
    # Stray files in images/ and gts/: not read, with a warning; hidden files and folders silently.
    for name in ("images/notes.txt", "images/README", "images/bad.gif", "images/thumbs.db"):
        files = {**icdar_files(), name: b"not an image"}
        warn = Expect(
            "warn",
            "images",
            None,
            f"1 file(s) not read, not image files (.jpg, .jpeg, .png, .bmp, .tif, .tiff, .webp): {name.split('/')[1]}",
            left=3,
        )
        cases.add("layout: stray files", "icdar", files, {"data": warn, "images": warn, "scores": OK3})
    for name in ("gts/README.md", "gts/labels.json"):
        files = {**icdar_files(), name: b"{}"}
        warn = Expect(
            "warn",
            "gts",
            None,
            f"1 file(s) not read, not ground-truth files gt_<stem>.txt: {name.split('/')[1]}",
            left=3,
        )
        cases.add("layout: stray files", "icdar", files, {"data": warn, "images": OK3, "scores": OK3})
    for name in ("gts/notes.txt", "gts/bad.txt"):
        files = {**icdar_files(), name: b"some notes\n"}
        data_warn = Expect(
            "warn",
            "gts",
            None,
            f"1 file(s) not read, not ground-truth files gt_<stem>.txt: {name.split('/')[1]}",
            left=3,
        )
        scores_warn = Expect(
            "warn", "gts", None, f"1 .txt file(s) not read, not named gt_<stem>.txt: {name.split('/')[1]}", left=3
        )
        cases.add("layout: stray files", "icdar", files, {"data": data_warn, "images": OK3, "scores": scores_warn})
    for name, data in (
        ("images/.DS_Store", b"\0\0\0\1Bud1"),
        ("images/._bad.png", b"\0\5\26\7"),
        ("gts/.gt_bad.txt.swp", b"b0VIM"),
        ("images/sub", DIRECTORY),
        ("gts/old", DIRECTORY),
    ):
        cases.add(
            "layout: hidden files and folders",
            "icdar",
            {**icdar_files(), name: data},
            {"data": OK3, "images": OK3, "scores": OK3},
        )


def _images(cases: _Cases, rng: np.random.Generator) -> None:
    def case(kind: str, ext: str, data: bytes, says: str = "") -> None:
        files = {**icdar_files(GOOD), GT: text(gt_lines("bad")), RES: text(res_lines("bad")), f"images/bad{ext}": data}
        cases.add(kind, "icdar", files, image_error(f"images/bad{ext}", says))

    for ext in (".png", ".jpg", ".bmp", ".webp", ".tif", ".jpeg"):
        case("image: zero bytes", ext, b"", "empty file (0 bytes)")
    for ext in (".png", ".jpg"):
        full = image_bytes("bad", ext)
        for fraction in np.linspace(0.1, 0.95, 12):
            case("image: truncated", ext, full[: int(len(full) * fraction)])
    for ext in (".png", ".jpg", ".bmp", ".webp"):
        full = image_bytes("bad", ext)
        cut = int(rng.integers(len(full) // 3, len(full) - 4))
        case("image: truncated", ext, full[:cut])
    posers = [
        b"hello, I am a text file\n",
        b"<!DOCTYPE html><html><body>404 Not Found</body></html>",
        b'{"images": {}}',
        text(gt_lines("bad")),
        b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n",
        b"PK\x03\x04\x14\x00\x00\x00\x08\x00",
        b"GIF87a",  # a GIF header and nothing else
        b"\x89PNG\r\n\x1a\n",  # a PNG signature and nothing else
        b"\xff\xd8\xff",  # a JPEG start and nothing else
    ]
    for i, data in enumerate(posers):
        case("image: not an image", (".png", ".jpg")[i % 2], data)
    for i in range(8):
        noise = np.random.default_rng([int(rng.integers(0, 2**31)), i]).integers(0, 256, 400, dtype=np.uint8)
        case("image: not an image", (".png", ".jpg", ".bmp", ".webp")[i % 4], b"\x00" + noise.tobytes())
    for width, height in ((20_001, 1), (1, 20_001), (25_000, 2)):  # real files
        ok, encoded = cv2.imencode(".png", np.zeros((height, width, 3), np.uint8))
        case("image: absurd dimensions", ".png", encoded.tobytes(), f"image is {width}x{height} pixels")
    for width, height in (
        (30_000, 30_000),
        (100_000, 100_000),
        (10_000, 9_000),
        (65_535, 65_535),
        (20_001, 20_001),
        (9_500, 9_500),
        (1, 2**31 - 1),
    ):
        case("image: absurd dimensions", ".png", png_with_size(width, height))
    ok, encoded = cv2.imencode(".png", np.full((SIZE, SIZE), 40000, np.uint16))
    case("image: 16-bit grey", ".png", encoded.tobytes(), "I;16 pixels")
    ok, encoded = cv2.imencode(".tiff", np.full((SIZE, SIZE), 40000, np.uint16))
    case("image: 16-bit grey", ".tif", encoded.tobytes(), "pixels (more than 8 bits a channel)")
    # A PNG named .jpg (and the like) is read as what it is: accepted.
    for ext, fmt in ((".jpg", ".png"), (".png", ".jpg"), (".bmp", ".png"), (".webp", ".jpg")):
        files = {
            **icdar_files(GOOD),
            GT: text(gt_lines("bad")),
            RES: text(res_lines("bad")),
            f"images/bad{ext}": image_bytes("bad", fmt),
        }
        cases.add("image: suffix names another format", "icdar", files, {"data": OK3, "images": OK3, "scores": OK3})
    # Grey, palette, RGBA and CMYK images are 8-bit: accepted.
    for mode_image in (
        cv2.imencode(".png", np.full((SIZE, SIZE), 120, np.uint8))[1].tobytes(),
        cv2.imencode(".png", np.full((SIZE, SIZE, 4), 120, np.uint8))[1].tobytes(),
        cv2.imencode(".jpg", np.full((SIZE, SIZE), 90, np.uint8))[1].tobytes(),
    ):
        files = {
            **icdar_files(GOOD),
            GT: text(gt_lines("bad")),
            RES: text(res_lines("bad")),
            "images/bad.png": mode_image,
        }
        cases.add("image: grey or RGBA", "icdar", files, {"data": OK3, "images": OK3, "scores": OK3})


def _json(cases: _Cases, rng: np.random.Generator) -> None:
    def case(kind: str, doc: object, expect: dict, raw: bytes | None = None, extra: dict | None = None) -> None:
        cases.add(kind, "json", {**json_files(doc, raw), **(extra or {})}, expect)

    def with_bad(**entry_changes) -> dict:
        doc = json_doc()
        doc["images"]["bad.png"] = {**doc["images"]["bad.png"], **entry_changes}
        return doc

    def with_word(word_id: str = "1", drop: tuple[str, ...] = (), **changes) -> dict:
        doc = json_doc()
        word = {k: v for k, v in doc["images"]["bad.png"]["words"][word_id].items() if k not in drop}
        doc["images"]["bad.png"]["words"][word_id] = {**word, **changes}
        return doc

    # Syntax: a document cut short, and what JSON does not allow.
    text_doc = json.dumps(json_doc(), indent=1)
    for _ in range(20):
        cut = text_doc[: int(rng.integers(0, len(text_doc) - 1))]
        try:
            json.loads(cut)
            raise AssertionError("a proper prefix of a JSON object parsed")
        except json.JSONDecodeError as exc:
            line = exc.lineno
        case("json: syntax error", None, json_error(line, "not valid JSON", skippable=False), raw=cut.encode())
    for broken in (
        text_doc.replace('"hello"', "'hello'", 1),
        text_doc[:-1].rstrip() + ",\n}",  # a trailing comma
        text_doc.replace("{", "{ // a comment\n", 1),
        text_doc + "\n}",
        text_doc.replace('"transcription"', "transcription", 1),
        text_doc.replace(":", " ", 1),
    ):
        try:
            json.loads(broken)
            raise AssertionError("still valid")
        except json.JSONDecodeError as exc:
            line = exc.lineno
        case("json: syntax error", None, json_error(line, "not valid JSON", skippable=False), raw=broken.encode())
    for raw in (b"", b"   \n", b"\n\n"):
        case("json: empty file", None, json_error(None, "empty file", skippable=False), raw=raw)

    # The top level.
    for doc, says in (
        ([], "expected an object with the key images, got a list"),
        ("images", "expected an object with the key images, got a string"),
        (5, "got a number"),
        (None, "got null"),
        ({}, "images: missing"),
        ({"imagez": json_doc()["images"]}, "images: missing"),
        ({"images": []}, "images: expected an object"),
        ({"images": None}, "images: expected an object"),
        ({"images": "bad.png"}, "images: expected an object"),
    ):
        case("json: top level wrong", None, json_error(None, says, skippable=False), raw=json.dumps(doc).encode())

    # An image's entry.
    for entry, key, says in (
        ([], BAD_KEY, "expected an object with the key words, got a list"),
        ("words", BAD_KEY, "expected an object with the key words, got a string"),
        (None, BAD_KEY, "got null"),
        (7, BAD_KEY, "got a number"),
        ({}, f"{BAD_KEY}.words", "missing"),
        ({"word": {}}, f"{BAD_KEY}.words", "missing"),
        ({"words": []}, f"{BAD_KEY}.words", "expected an object mapping word ids to words, got a list"),
        ({"words": None}, f"{BAD_KEY}.words", "got null"),
        ({"words": "hello"}, f"{BAD_KEY}.words", "got a string"),
        ({"words": 3}, f"{BAD_KEY}.words", "got a number"),
    ):
        doc = json_doc()
        doc["images"]["bad.png"] = entry
        case("json: entry wrong", doc, json_error(key, says))

    # A word.
    for word, says in (([], "got a list"), ("hello", "got a string"), (None, "got null"), (1, "got a number")):
        doc = json_doc()
        doc["images"]["bad.png"]["words"]["1"] = word
        case("json: word wrong", doc, json_error(f"{BAD_KEY}.words.1", says))
    for word_id in ("0", "2"):
        case(
            "json: key missing",
            with_word(word_id, drop=("points",)),
            json_error(f"{BAD_KEY}.words.{word_id}.points", "missing"),
        )
        case(
            "json: key missing",
            with_word(word_id, drop=("transcription",)),
            json_error(f"{BAD_KEY}.words.{word_id}.transcription", "missing"),
        )

    # Points.
    four = [[4, 8], [44, 8], [44, 20], [4, 20]]
    points_key = f"{BAD_KEY}.words.1.points"
    for points, key, says in (
        ("4,8,44,8", points_key, "expected a list of x, y pairs, got a string"),
        (5, points_key, "got a number"),
        (None, points_key, "got null"),
        ({"x": 1}, points_key, "got an object"),
        ([4, 8, 44, 8, 44, 20, 4, 20], f"{points_key}.0", "expected an x, y pair of numbers, got a number"),
        ([[4, 8], [44]], f"{points_key}.1", "got a list of 1"),
        ([[4, 8, 1], [44, 8, 1]], f"{points_key}.0", "got a list of 3"),
        ([["4", "8"], ["44", "8"]], f"{points_key}.0", "expected an x, y pair"),
        ([[True, False]] * 4, f"{points_key}.0", "expected an x, y pair"),
        ([[None, 1]] * 4, f"{points_key}.0", "expected an x, y pair"),
        ([[[4, 8]], [[44, 8]]], f"{points_key}.0", "expected an x, y pair"),
        ([], points_key, "at least 4 points"),
        (four[:3], points_key, "at least 4 points"),
        ([*four[:3], [2e6, 20]], points_key, "coordinate 7 is 2e+06, beyond"),
        ([*four[:3], [-5e7, 20]], points_key, "beyond"),
        ([*four[:3], [10**400, 20]], f"{points_key}.3", "coordinate beyond"),
        ([*four[:3], [500, 20]], points_key, "farther outside the 64x64 image"),
        ([[-40, 8], [-10, 8], [-10, 20], [-40, 20]], points_key, "entirely outside the 64x64 image"),
    ):
        case("json: points wrong", with_word(points=points), json_error(key, says))
    for token, says in (("NaN", "is nan"), ("Infinity", "is inf"), ("-Infinity", "is -inf"), ("1e400", "is inf")):
        raw = json.dumps(with_word(points=[[4, 8], [44, 8], [44, 20], [4, 12345]]), indent=1).replace("12345", token)
        case("json: points wrong", None, json_error(points_key, says), raw=raw.encode())

    # Other keys of a word.
    for value, says in (
        (5, "got a number"),
        (None, "got null"),
        ([], "got a list"),
        ({}, "got an object"),
        (True, "got true"),
    ):
        case(
            "json: transcription wrong type",
            with_word(transcription=value),
            json_error(f"{BAD_KEY}.words.1.transcription", says),
        )
    for value, says in (
        ("false", "got a string"),
        ("true", "got a string"),
        (0, "got a number"),
        (1, "got a number"),
        (None, "got null"),
        ("yes", "got a string"),
    ):
        case(
            "json: illegibility wrong type",
            with_word(illegibility=value),
            json_error(f"{BAD_KEY}.words.1.illegibility", says),
        )

    # Unknown keys: ignored with a warning naming the key path.
    warn = {"images": OK3, "scores": None}
    doc = json_doc()
    doc["version"] = 2
    case(
        "json: unknown key",
        doc,
        {**warn, "data": Expect("warn", ANN, "(top level).version", "unknown key, ignored", left=3)},
    )
    for key in ("size", "height", "tags"):
        case(
            "json: unknown key",
            with_bad(**{key: 1}),
            {**warn, "data": Expect("warn", ANN, f"{BAD_KEY}.{key}", "unknown key", left=3)},
        )
    for key in ("language", "score", "illegible", "transcripton"):
        expect = Expect("warn", ANN, f"{BAD_KEY}.words.1.{key}", "unknown key, ignored", left=3)
        case("json: unknown key", with_word(**{key: "x"}), {**warn, "data": expect})

    # Keys given twice.
    dup_entry = text_doc.replace('"bad.png": {', '"bad.png": {"words": {}},\n  "bad.png": {', 1)
    case("json: key given twice", None, json_error(BAD_KEY, "key given twice", skippable=False), raw=dup_entry.encode())
    dup_word = text_doc.replace('"1": {', '"1": {"points": [], "transcription": ""},\n    "1": {', 1)
    # the word "1" of good_0 comes first in the document: that entry is the bad sample
    case(
        "json: key given twice", None, json_error("images.good_0.png.words.1", "key given twice"), raw=dup_word.encode()
    )
    dup_points = text_doc.replace('"points": [', '"points": [], "points": [', 1)
    case(
        "json: key given twice",
        None,
        json_error("images.good_0.png.words.0.points", "key given twice"),
        raw=dup_points.encode(),
    )
    dup_images = '{"images": {}, ' + text_doc[1:]
    case(
        "json: key given twice",
        None,
        json_error("(top level).images", "key given twice", skippable=False),
        raw=dup_images.encode(),
    )

    # Images that are missing, share a stem or are bad.
    for name in ("missing.png", "bad.PNG", "sub/bad.png", "images/missing.png"):
        doc = json_doc()
        doc["images"][name] = doc["images"].pop("bad.png")
        case("json: image not found", doc, json_error(f"images.{name}", "image file not found"))
    for other in (".jpg", ".bmp", ".jpeg"):
        doc = json_doc()
        doc["images"][f"bad{other}"] = {"words": {}}
        extra = {f"images/bad{other}": image_bytes("bad", other)}
        error = Expect("error", "images/bad.png", None, "has the same stem 'bad'", also=(f"bad{other}",))
        first, *others = sorted(["bad.png", f"bad{other}"])  # predict lists images/ in sorted order
        listed = Expect("error", f"images/{first}", None, "has the same stem 'bad'", also=tuple(others))
        case("json: two images with one stem", doc, {"data": error, "images": listed, "scores": None}, extra=extra)
    for data, says in ((b"", "empty file"), (b"not an image", "not an image file"), (image_bytes("bad")[:200], "")):
        error = Expect("error", "images/bad.png", None, says)
        case(
            "json: bad image file",
            None,
            {"data": error, "images": error, "scores": None},
            raw=text_doc.encode(),
            extra={"images/bad.png": data},
        )

    # Encodings.
    for data in (
        text_doc.encode("utf-16"),
        codecs.BOM_UTF16_BE + text_doc.encode("utf-16-be"),
        codecs.BOM_UTF8 + text_doc.encode(),
    ):
        case("json: UTF-16 with BOM or UTF-8 with BOM", None, {"data": OK3, "images": OK3, "scores": None}, raw=data)
    lines = text_doc.split("\n")
    hello_lines = [i + 1 for i, line in enumerate(lines) if '"hello"' in line]
    for bad_bytes in (b"\xff", b"\xc3\x28", b"caf\xe9", b"\x80"):
        k = hello_lines[int(rng.integers(0, len(hello_lines)))]
        raw_lines = [line.encode() for line in lines]
        raw_lines[k - 1] = raw_lines[k - 1].replace(b"hello", bad_bytes)
        case("json: invalid UTF-8", None, json_error(k, "not UTF-8 text", skippable=False), raw=b"\n".join(raw_lines))
    for codec in ("utf-16-le", "utf-16-be"):
        case("json: UTF-16 without BOM", None, json_error(1, "NUL byte", skippable=False), raw=text_doc.encode(codec))

    # Geometry kept with a warning.
    warn_key = f"{BAD_KEY}.words.1.points"
    for points in (
        [[4, 8], [44, 20], [44, 8], [4, 20]],
        [[4, 8], [44, 8], [4, 20], [44, 20]],
        [[10, 30], [50, 10], [50, 40], [30, 5], [20, 40]],
    ):
        case(
            "json: self-intersecting polygon",
            with_word(points=points),
            {"data": Expect("warn", ANN, warn_key, "self-intersecting", left=3), "images": OK3, "scores": None},
        )
    for points in ([[4, 8], [14, 8], [24, 8], [34, 8]], [[5, 5]] * 4, [[1, 1], [2, 2], [3, 3], [4, 4]]):
        case(
            "json: zero-area polygon",
            with_word(points=points),
            {"data": Expect("warn", ANN, warn_key, "zero-area", left=3), "images": OK3, "scores": None},
        )
    # Accepted: illegible words, an image without words, numbers as floats, a subset of images/.
    for doc in (
        with_word(illegibility=True),
        with_bad(words={}),
        with_word(points=[[4.5, 8.25], [44.0, 8.0], [44.0, 20.5], [4.0, 20.0]]),
    ):
        case("json: accepted variants", doc, {"data": OK3, "images": OK3, "scores": None})
    subset = json_doc(GOOD)
    case("json: accepted variants", subset, {"data": Expect("ok", left=2), "images": OK3, "scores": None})
    doc = json_doc()
    doc["images"]["images/bad.png"] = doc["images"].pop("bad.png")  # a path below the JSON's folder
    case("json: accepted variants", doc, {"data": OK3, "images": OK3, "scores": None})


def _predictions(cases: _Cases, rng: np.random.Generator) -> None:
    base = icdar_files()

    def line_no() -> int:
        return int(rng.integers(1, 3))

    def with_bad_line(line: str, k: int) -> bytes:
        lines = res_lines("bad")
        lines[k - 1] = line
        return text(lines)

    def case(kind: str, files: dict[str, bytes], scores: Expect) -> None:
        cases.add(kind, "preds", {**base, **files}, {"data": None, "images": None, "scores": scores})

    quad = [str(int(v)) for v in WORDS["bad"][0]]
    for token in ("x", "abc", "", "0.9.1", "score", "12px", "--1", "1 2", "null", "#"):
        values = [*quad, "0.9"]
        i = int(rng.integers(0, 9))
        values[i] = token
        k = line_no()
        case(
            "pred: non-numeric value",
            {RES: with_bad_line(",".join(values), k)},
            Expect("error", RES, k, f"field {i + 1} ({token.strip()!r}) is not a number"),
        )
    for n in (2, 3, 4, 5, 6, 7):
        values = [str(int(v)) for v in rng.integers(0, SIZE, n)]
        k = line_no()
        case(
            "pred: too few points",
            {RES: with_bad_line(",".join(values), k)},
            Expect("error", RES, k, "at least 4 points"),
        )
    for token in ("nan", "inf", "-inf", "NaN", "Infinity"):
        values = [*quad, "0.9"]
        i = int(rng.integers(0, 8))
        values[i] = token
        k = line_no()
        case(
            "pred: NaN or infinity",
            {RES: with_bad_line(",".join(values), k)},
            Expect("error", RES, k, f"coordinate {i + 1} is {float(token)}"),
        )
        k = line_no()
        case(
            "pred: NaN or infinity",
            {RES: with_bad_line(",".join([*quad, token]), k)},
            Expect("error", RES, k, f"score is {float(token)}"),
        )
    for value in ("2e6", "-1e7", "1e300", "1000001"):
        values = [*quad, "0.9"]
        i = int(rng.integers(0, 8))
        values[i] = value
        k = line_no()
        case(
            "pred: huge coordinate",
            {RES: with_bad_line(",".join(values), k)},
            Expect("error", RES, k, "beyond +-1e+06"),
        )
    for _ in range(12):
        full = ",".join([*quad, "0.9"])
        seventh_comma = [i for i, c in enumerate(full) if c == ","][6]
        k = line_no()
        case(
            "pred: truncated line",
            {RES: with_bad_line(full[: int(rng.integers(1, seventh_comma + 1))], k)},
            Expect("error", RES, k),
        )
    body = "".join(line + "\n" for line in res_lines("bad"))
    for bad_bytes in (b"\xff", b"\xc3\x28", b"\xe9", b"\x80\x80"):
        data = (body.replace("0.9", "0.9X", 1)).encode().replace(b"X", bad_bytes)
        case("pred: invalid UTF-8", {RES: data}, Expect("error", RES, 1, "not UTF-8 text"))
    for data in (
        body.encode("utf-16"),
        codecs.BOM_UTF16_BE + body.encode("utf-16-be"),
        codecs.BOM_UTF8 + body.replace("\n", "\r\n").encode(),
    ):
        case("pred: UTF-16 with BOM or UTF-8 with BOM/CRLF", {RES: data}, Expect("ok", left=3))
    for codec in ("utf-16-le", "utf-16-be"):
        case("pred: UTF-16 without BOM", {RES: body.encode(codec)}, Expect("error", RES, 1, "NUL byte"))
    for stem in ("ghost", "bad2", "good_00", "BAD"):
        case(
            "pred: prediction without ground truth",
            {f"preds/res_{stem}.txt": text(res_lines("bad"))},
            Expect("error", f"preds/res_{stem}.txt", None, f"no ground truth gt_{stem}.txt", left=3),
        )
    for name in ("bad.txt", "gt_bad.txt", "res-bad.txt", "RES_bad.txt"):
        files = {name_: data for name_, data in base.items() if name_ != RES}
        files[f"preds/{name}"] = text(res_lines("bad"))
        cases.add(
            "pred: misnamed prediction file",
            "preds",
            files,
            {
                "data": None,
                "images": None,
                "scores": Expect(
                    "warn", "preds", None, f"1 .txt file(s) not read, not named res_<stem>.txt: {name}", left=3
                ),
            },
        )
    for extra in ({}, {"preds/metrics.json": b"{}"}):
        files = {name_: data for name_, data in base.items() if not name_.startswith("preds/")}
        cases.add(
            "pred: no prediction files",
            "preds",
            {**files, **extra},
            {"data": None, "images": None, "scores": Expect("warn", "preds", None, "no res_<stem>.txt files", left=3)},
        )
    for data in (b"", b"\n", b"\r\n\r\n"):
        case("pred: empty file", {RES: data}, Expect("ok", left=3))
    for pts, says in (
        ([4, 8, 44, 20, 44, 8, 4, 20], "self-intersecting"),
        ([4, 8, 44, 8, 4, 20, 44, 20], "self-intersecting"),
        ([4, 8, 14, 8, 24, 8, 34, 8], "zero-area"),
        ([5, 5, 5, 5, 5, 5, 5, 5], "zero-area"),
    ):
        for score in ("", ",0.5"):
            k = line_no()
            case(
                f"pred: {says} polygon",
                {RES: with_bad_line(csv(pts) + score, k)},
                Expect("warn", RES, k, f"{says} polygon", left=3),
            )


GENERATORS: tuple[Callable[[_Cases, np.random.Generator], None], ...] = (
    _gt_syntax,
    _gt_geometry_and_text,
    _pairs,
    _images,
    _json,
    _predictions,
)


def build_corpus(seed: int = 0) -> list[Case]:
    """Every case, deterministic from ``seed`` (each generator draws from its own stream, so a new
    generator changes no other one's cases)."""
    cases = _Cases()
    for index, generate in enumerate(GENERATORS):
        generate(cases, np.random.default_rng([seed, index]))
    names = [c.name for c in cases.cases]
    assert len(names) == len(set(names)), "case names must be unique"
    return cases.cases


def signature(case: Case) -> tuple:
    """How a case behaves at the commands: its layout and, per reader, the outcome, whether
    --skip-bad applies and how many samples it skips. Cases of one signature differ only in the
    message, which the library readers check for every case."""
    expects = (case.data, case.images, case.scores)
    return (case.layout, *[(e.outcome, e.skippable, e.bad) if e else None for e in expects])


def sample_cases(cases: list[Case], n: int, seed: int = 0) -> list[Case]:
    """``n`` cases, deterministic: the first case of each signature, then the first of each kind
    not yet chosen (kinds in a seeded order), then a seeded draw."""
    rng = np.random.default_rng(seed)
    chosen: list[Case] = []
    for case in cases:
        if len(chosen) < n and signature(case) not in {signature(c) for c in chosen}:
            chosen.append(case)
    all_kinds = list(kinds(cases))
    for index in rng.permutation(len(all_kinds)):
        kind = all_kinds[index]
        if len(chosen) < n and kind not in {c.kind for c in chosen}:
            chosen.append(next(c for c in cases if c.kind == kind))
    rest = [c for c in cases if c not in chosen]
    chosen += [rest[i] for i in rng.permutation(len(rest))[: max(0, n - len(chosen))]]
    return chosen


def kinds(cases: list[Case]) -> Iterator[str]:
    seen: set[str] = set()
    for case in cases:
        if case.kind not in seen:
            seen.add(case.kind)
            yield case.kind


__all__ = ["Case", "Expect", "build_corpus", "kinds", "replace", "sample_cases", "write_case"]

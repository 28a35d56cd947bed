"""Annotation formats: ICDAR text files (BOM, CRLF, malformed lines) and JSON, round trips, paths."""

import codecs
import json
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ocrkit.core.data.formats import (
    IMAGE_SUFFIXES,
    load_dataset,
    load_icdar_dir,
    parse_gt_line,
    read_icdar_gt,
    read_predictions,
    write_icdar_gt,
    write_predictions,
)
from ocrkit.core.errors import InputError


def test_real_sample_reads_with_bom(icdar_sample):
    loaded = load_icdar_dir(icdar_sample)
    assert len(loaded.samples) == 10
    assert sum(len(s.polygons) for s in loaded.samples) == 82
    assert sum(not flag for s in loaded.samples for flag in s.ignore) == 21
    first = read_icdar_gt(icdar_sample / "gts" / "gt_img_1.txt")
    np.testing.assert_array_equal(first[0][0], [[377, 117], [463, 117], [465, 130], [378, 130]])
    assert first[2][0] == "Genaxis Theatre"  # the BOM did not leak into anything
    assert first[1] == [False, False, True, False, False, True, True]


def test_bom_crlf_commas_and_numeric_transcriptions(tmp_path):
    gt = tmp_path / "gt_x.txt"
    gt.write_bytes(
        "\ufeff1,2,30,2,30,20,1,20,Hello, world\r\n"
        "1,2,30,2,30,20,1,20,2015\r\n"
        "1,2,30,2,30,20,1,20,1,5\r\n"
        "\r\n"
        "0,0,10,0,20,5,10,10,0,10,###\r\n".encode("utf-8")
    )
    polygons, ignore, texts = read_icdar_gt(gt)
    assert texts == ["Hello, world", "2015", "1,5", "###"]
    assert [p.shape for p in polygons] == [(4, 2), (4, 2), (4, 2), (5, 2)]  # n-point polygon too
    assert ignore == [False, False, False, True]
    assert polygons[0].dtype == np.float32


@pytest.mark.parametrize(
    "line", ["1,2,3,4,hello", "a,b,c,d,e,f,g,h,word", "1,2,3,4,5,6,7,8", "", "1,2,3,4,5,nan,7,8,w"]
)
def test_malformed_lines_name_file_and_line(line):
    with pytest.raises(InputError) as err:
        parse_gt_line(line, "gt_a.txt", 3)
    assert str(err.value).startswith("gt_a.txt:3: ")


def test_malformed_file_reports_its_line(tmp_path):
    gt = tmp_path / "gt_b.txt"
    gt.write_text("1,1,9,1,9,9,1,9,ok\n1,1,oops\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"gt_b.txt:2: "):
        read_icdar_gt(gt)
    (tmp_path / "gt_c.txt").write_bytes(b"1,1,9,1,9,9,1,9,\xff\xfe\n")
    with pytest.raises(InputError, match="not UTF-8"):
        read_icdar_gt(tmp_path / "gt_c.txt")


def test_skip_bad_warns_and_counts(tiny_icdar):
    (tiny_icdar / "gts" / "gt_img_1.txt").write_text("garbage line\n", encoding="utf-8")
    Image.new("RGB", (32, 32)).save(tiny_icdar / "images" / "orphan.png")
    with pytest.raises(InputError, match="gt_img_1.txt:1"):
        load_icdar_dir(tiny_icdar)
    with pytest.warns(UserWarning) as record:
        loaded = load_dataset(tiny_icdar, skip_bad=True)
    messages = [str(w.message) for w in record]
    assert sum(m.startswith("skipping bad sample") for m in messages) == 2  # one warning per bad sample
    assert "skipped 2 bad sample(s)" in messages[-1]  # and the count at the end
    assert [s.stem for s in loaded.samples] == ["img_0", "img_2"]
    assert len(loaded.skipped) == 2 and any("gt_orphan.txt" in s for s in loaded.skipped)


def test_round_trip_gt_and_predictions(tmp_path):
    polys = [
        np.array([[1, 2], [30, 2], [30.5, 20], [1, 20]], np.float32),
        np.array([[0, 0], [5, 0], [5, 5], [0, 5]], np.float32),
    ]
    write_icdar_gt(tmp_path / "gt_r.txt", polys, ["a,b", "zzz"], [False, True])
    back, ignore, texts = read_icdar_gt(tmp_path / "gt_r.txt")
    assert texts == ["a,b", "###"] and ignore == [False, True]
    for a, b in zip(polys, back, strict=True):
        np.testing.assert_allclose(a, b)
    write_predictions(tmp_path / "res_r.txt", polys, [0.9, 0.75])
    preds, scores = read_predictions(tmp_path / "res_r.txt")
    assert scores == [0.9, 0.75] and len(preds) == 2
    write_predictions(tmp_path / "res_s.txt", polys)
    assert read_predictions(tmp_path / "res_s.txt")[1] == [None, None]
    (tmp_path / "res_bad.txt").write_text("1,2,3,4,x\n")
    with pytest.raises(InputError, match="res_bad.txt:1"):
        read_predictions(tmp_path / "res_bad.txt")


def _json_doc(tmp_path: Path, words: dict) -> Path:
    Image.new("RGB", (64, 48)).save(tmp_path / "a.jpg")
    path = tmp_path / "ann.json"
    path.write_text(json.dumps({"images": {"a.jpg": {"words": words}}}), encoding="utf-8")
    return path


def test_json_format(tmp_path):
    path = _json_doc(
        tmp_path,
        {
            "0": {"points": [[1, 1], [20, 1], [20, 10], [1, 10]], "transcription": "hi", "illegibility": False},
            "1": {
                "points": [[30, 1], [40, 1], [40, 10], [35, 12], [30, 10]],
                "transcription": "x",
                "illegibility": True,
            },
            "2": {"points": [[1, 20], [9, 20], [9, 30], [1, 30]], "transcription": "###"},
        },
    )
    (sample,) = load_dataset(path).samples
    assert sample.image_path == tmp_path / "a.jpg"
    assert sample.ignore == [False, True, True]
    assert [len(p) for p in sample.polygons] == [4, 5, 4]


@pytest.mark.parametrize(
    "word, key",
    [
        ({"transcription": "no points"}, "images.a.jpg.words.w.points: missing"),
        ({"points": [[1, 2]], "transcription": "x"}, "images.a.jpg.words.w.points: a polygon needs at least 4"),
    ],
)
def test_json_errors_name_the_key(tmp_path, word, key):
    with pytest.raises(InputError, match=key.replace(".", r"\.")):
        load_dataset(_json_doc(tmp_path, {"w": word}))


def test_json_syntax_error_has_line(tmp_path):
    (tmp_path / "broken.json").write_text('{"images": {\n  "a.jpg": ,\n}}')
    with pytest.raises(InputError, match=r"broken.json:2: not valid JSON"):
        load_dataset(tmp_path / "broken.json")


def test_missing_paths(tmp_path):
    with pytest.raises(InputError, match="data path not found"):
        load_dataset(tmp_path / "nope")
    with pytest.raises(InputError, match="images"):
        load_dataset(tmp_path)


# ---------------------------------------------------------------- the rules (module docstring of formats.py)

QUAD = "10,10,50,10,50,30,10,30"


@pytest.mark.parametrize(
    "line, polygon_points, text",
    [
        (f"{QUAD},Hello, world", 4, "Hello, world"),  # a comma in the transcription
        (f"{QUAD},2015", 4, "2015"),  # a numeric transcription: the last field of an all-numeric line
        (f"{QUAD},1,5", 4, "1,5"),  # an even all-numeric line: the last two fields
        (f"{QUAD},NaN", 4, "NaN"),  # the last field of an all-numeric line is text, whatever it reads as
        (f"{QUAD},", 4, ""),  # the transcription field is there, empty
        (f"{QUAD},60,20,###", 5, "###"),  # an n-point polygon
        (f" {QUAD.replace(',', ' , ')} , spaced ", 4, "spaced"),
    ],
)
def test_gt_lines_that_parse(line, polygon_points, text):
    polygon, transcription = parse_gt_line(line, "gt_a.txt", 1)
    assert polygon.shape == (polygon_points, 2) and transcription == text


@pytest.mark.parametrize(
    "line, fragment",
    [
        (f"{QUAD},9,word", "odd number of coordinates (9)"),  # never a quad with the text "9,word"
        ("10,10,50,10,50,30,10,word", "field 8 ('word') is not a number"),  # 7 numbers: not a 3-point polygon
        ("10,10,50,10,50,30,word", "at least 8 coordinates"),  # a triangle: 4 points at least
        ("10,10,50,10,50,30,10,30", "missing the transcription"),
        ("10,10,50,10,50,30,10", "the line has 7 numbers"),
        ("10,10,50,x,50,30,10,30,w", "field 4 ('x') is not a number"),
        ("10,10,50,10,50,nan,10,30,w", "coordinate 6 is nan"),
        ("10,10,50,10,50,-inf,10,30,w", "coordinate 6 is -inf"),
        ("10,10,5e6,10,50,30,10,30,w", "coordinate 3 is 5e+06, beyond +-1e+06"),
        ("10,10,50,10,50,30,10,30,11,12,13,w", "odd number of coordinates (11)"),
    ],
)
def test_gt_lines_that_are_errors_name_file_line_and_what(line, fragment):
    with pytest.raises(InputError) as err:
        parse_gt_line(line, "gt_a.txt", 7)
    assert str(err.value).startswith("gt_a.txt:7: ") and fragment in str(err.value)


@pytest.mark.parametrize(
    "data",
    [
        "\ufeff10,10,50,10,50,30,10,30,é\r\n".encode(),
        "10,10,50,10,50,30,10,30,é\n".encode("utf-16"),  # with its BOM
        codecs.BOM_UTF16_BE + "10,10,50,10,50,30,10,30,é\n".encode("utf-16-be"),
    ],
)
def test_gt_encodings_accepted(tmp_path, data):
    (tmp_path / "gt_a.txt").write_bytes(data)
    assert read_icdar_gt(tmp_path / "gt_a.txt")[2] == ["é"]


@pytest.mark.parametrize(
    "data, line, fragment",
    [
        (f"{QUAD},ok\n{QUAD},caf\xe9\n".encode("latin-1"), 2, "not UTF-8 text (byte 0xe9"),
        (f"{QUAD},ok\n\n{QUAD},\xff\n".encode("latin-1"), 3, "not UTF-8 text (byte 0xff"),
        (f"{QUAD},ok\n".encode("utf-16-le"), 1, "NUL byte"),  # UTF-16 without a BOM
    ],
)
def test_gt_encoding_errors_name_the_line(tmp_path, data, line, fragment):
    (tmp_path / "gt_a.txt").write_bytes(data)
    with pytest.raises(InputError) as err:
        read_icdar_gt(tmp_path / "gt_a.txt")
    assert str(err.value).startswith(f"{tmp_path / 'gt_a.txt'}:{line}: ") and fragment in str(err.value)


def test_empty_gt_is_an_image_without_text_and_only_lf_ends_a_line(tmp_path):
    (tmp_path / "gt_a.txt").write_bytes(b"")
    assert read_icdar_gt(tmp_path / "gt_a.txt") == ([], [], [])
    (tmp_path / "gt_a.txt").write_text(" \n\n\t\n", encoding="utf-8")
    assert read_icdar_gt(tmp_path / "gt_a.txt") == ([], [], [])
    (tmp_path / "gt_a.txt").write_text(f"{QUAD},one\u2028two\x0cthree\n", encoding="utf-8")
    assert read_icdar_gt(tmp_path / "gt_a.txt")[2] == ["one\u2028two\x0cthree"]


def test_zero_area_and_self_intersecting_polygons_are_kept_with_one_warning_per_kind(tmp_path):
    gt = tmp_path / "gt_a.txt"
    gt.write_text(
        f"{QUAD},fine\n"
        "10,10,50,30,50,10,10,30,bowtie\n"
        "10,10,20,20,30,30,40,40,line\n"
        "5,5,5,5,5,5,5,5,point\n"
        "10,10,50,30,50,10,10,30,bowtie2\n",
        encoding="utf-8",
    )
    with pytest.warns(UserWarning) as record:
        polygons, _, texts = read_icdar_gt(gt)
    assert texts == ["fine", "bowtie", "line", "point", "bowtie2"] and len(polygons) == 5  # nothing dropped
    messages = sorted(str(w.message) for w in record)
    assert len(messages) == 2
    assert messages[0].startswith(f"{gt}:2: self-intersecting polygon") and f"(and 1 more: {gt}:5)" in messages[0]
    assert messages[1].startswith(f"{gt}:3: zero-area polygon") and f"(and 1 more: {gt}:4)" in messages[1]
    assert all("metric leaves it out" in m for m in messages)


def _icdar(root: Path, gts: dict[str, str], images: dict[str, tuple[int, int]]) -> Path:
    (root / "images").mkdir(parents=True)
    (root / "gts").mkdir()
    for name, (h, w) in images.items():
        Image.new("RGB", (w, h), (90, 90, 90)).save(root / "images" / name)
    for stem, text in gts.items():
        (root / "gts" / f"gt_{stem}.txt").write_text(text, encoding="utf-8")
    return root


def test_gt_and_image_must_pair_in_both_directions(tmp_path):
    root = _icdar(tmp_path / "d", {"a": f"{QUAD},x\n", "lost": f"{QUAD},x\n"}, {"a.png": (64, 64)})
    with pytest.raises(InputError, match=r"gts/gt_lost.txt: no image for this ground truth"):
        load_dataset(root)
    (root / "gts" / "gt_lost.txt").unlink()
    Image.new("RGB", (8, 8)).save(root / "images" / "b.jpg")
    with pytest.raises(InputError, match=r"gts/gt_b.txt: ground truth for b.jpg not found"):
        load_dataset(root)


def test_two_images_with_one_stem_are_an_error_and_one_bad_sample(tmp_path):
    root = _icdar(
        tmp_path / "d", {"a": f"{QUAD},x\n", "b": ""}, {"a.jpg": (64, 64), "a.png": (64, 64), "b.png": (9, 9)}
    )
    with pytest.raises(InputError) as err:
        load_dataset(root)
    assert "images/a.jpg: a.png has the same stem 'a'" in str(err.value)
    with pytest.warns(UserWarning) as record:
        loaded = load_dataset(root, skip_bad=True)
    assert [s.stem for s in loaded.samples] == ["b"] and len(loaded.skipped) == 1
    assert str(record[-1].message).endswith("skipped 1 bad sample(s)")


def test_other_files_are_named_hidden_ones_are_not(tmp_path):
    root = _icdar(tmp_path / "d", {"a": f"{QUAD},x\n"}, {"a.png": (64, 64)})
    (root / "images" / "notes.txt").write_text("hi")
    (root / "images" / ".DS_Store").write_bytes(b"\0")
    (root / "gts" / "a.txt").write_text(f"{QUAD},x\n")
    with pytest.warns(UserWarning) as record:
        loaded = load_dataset(root)
    assert len(loaded.samples) == 1
    messages = [str(w.message) for w in record]
    assert messages == [
        f"{root / 'images'}: 1 file(s) not read, not image files ({', '.join(IMAGE_SUFFIXES)}): notes.txt",
        f"{root / 'gts'}: 1 file(s) not read, not ground-truth files gt_<stem>.txt: a.txt",
    ]


@pytest.mark.parametrize(
    "line, fragment",
    [
        ("-3,-2,50,-2,50,30,-3,30,x", None),  # a few pixels outside: kept as given, no warning
        ("-10,10,-2,10,-2,30,-10,30,x", "polygon lies entirely outside the 64x48 image"),
        ("10,10,500,10,500,30,10,30,x", "farther outside the 64x48 image than its own size"),
        ("10,-60,50,-60,50,30,10,30,x", "farther outside"),
    ],
)
def test_points_outside_the_image(tmp_path, line, fragment):
    root = _icdar(tmp_path / "d", {"a": f"{QUAD},ok\n{line}\n"}, {"a.png": (48, 64)})
    if fragment is None:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            (sample,) = load_dataset(root).samples
        assert sample.polygons[1].min() == -3  # unchanged
        return
    with pytest.raises(InputError) as err:
        load_dataset(root)
    assert str(err.value).startswith(f"{root / 'gts' / 'gt_a.txt'}:2: ") and fragment in str(err.value)


@pytest.mark.parametrize(
    "write, fragment",
    [
        (lambda p: p.write_bytes(b""), "empty file (0 bytes)"),
        (lambda p: p.write_text("1,2,3,4,5,6,7,8,x\n"), "not an image file"),
        (lambda p: p.write_bytes(_png_bytes()[:-30]), "truncated or corrupt image data"),
    ],
)
def test_bad_images_are_named_when_the_dataset_loads(tmp_path, write, fragment):
    root = _icdar(tmp_path / "d", {"a": f"{QUAD},x\n", "b": f"{QUAD},y\n"}, {"a.png": (64, 64)})
    write(root / "images" / "b.png")
    with pytest.raises(InputError) as err:
        load_dataset(root)
    assert str(err.value).startswith(f"{root / 'images' / 'b.png'}: ") and fragment in str(err.value)
    with pytest.warns(UserWarning):
        assert [s.stem for s in load_dataset(root, skip_bad=True).samples] == ["a"]


def _png_bytes() -> bytes:
    import io

    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


# ---------------------------------------------------------------- JSON rules


def _json_file(tmp_path: Path, doc: object, raw: str | None = None) -> Path:
    Image.new("RGB", (64, 48)).save(tmp_path / "a.jpg")
    path = tmp_path / "ann.json"
    path.write_text(raw if raw is not None else json.dumps(doc), encoding="utf-8")
    return path


GOOD_WORD = {"points": [[1, 1], [20, 1], [20, 10], [1, 10]], "transcription": "hi"}


def _word(**changes):
    return {"images": {"a.jpg": {"words": {"0": {**GOOD_WORD, **changes}}}}}


@pytest.mark.parametrize(
    "doc, fragment",
    [
        ([], "expected an object with the key images, got a list of 0"),
        ({}, "images: missing"),
        ({"images": []}, "images: expected an object"),
        ({"images": {"a.jpg": []}}, "images.a.jpg: expected an object with the key words, got a list of 0"),
        ({"images": {"a.jpg": {}}}, "images.a.jpg.words: missing"),
        ({"images": {"a.jpg": {"words": "x"}}}, "images.a.jpg.words: expected an object mapping word ids to words"),
        ({"images": {"a.jpg": {"words": {"0": 5}}}}, "images.a.jpg.words.0: expected an object"),
        ({"images": {"a.jpg": {"words": {"0": {"transcription": "x"}}}}}, "images.a.jpg.words.0.points: missing"),
        ({"images": {"a.jpg": {"words": {"0": {"points": GOOD_WORD["points"]}}}}}, "words.0.transcription: missing"),
        (_word(points="1,2"), "images.a.jpg.words.0.points: expected a list of x, y pairs, got a string"),
        (_word(points=[[1, 2], [3]]), "images.a.jpg.words.0.points.1: expected an x, y pair of numbers"),
        (_word(points=[[1, 2], ["3", 4]]), "images.a.jpg.words.0.points.1: expected an x, y pair"),
        (_word(points=[[True, 2]]), "images.a.jpg.words.0.points.0: expected an x, y pair"),
        (_word(points=[[1, 2]] * 3), "images.a.jpg.words.0.points: a polygon needs at least 4 points"),
        (_word(points=[[1, 2]] * 3 + [[1e7, 1]]), "images.a.jpg.words.0.points: coordinate 7 is 1e+07, beyond"),
        (_word(points=[[1, 2]] * 3 + [[10**400, 1]]), "images.a.jpg.words.0.points.3: coordinate beyond"),
        (_word(transcription=7), "images.a.jpg.words.0.transcription: expected a string, got a number"),
        (_word(illegibility="false"), "images.a.jpg.words.0.illegibility: expected true or false, got a string"),
        ({"images": {"b.jpg": {"words": {}}}}, "images.b.jpg: image file not found"),
    ],
)
def test_json_errors_name_the_key_path(tmp_path, doc, fragment):
    with pytest.raises(InputError) as err:
        load_dataset(_json_file(tmp_path, doc))
    assert str(err.value).startswith(f"{tmp_path / 'ann.json'}: ") and fragment in str(err.value)


def test_json_nan_duplicate_keys_and_encoding(tmp_path):
    points = "[[1, 1], [20, 1], [20, NaN], [1, 10]]"
    raw = '{"images": {"a.jpg": {"words": {"0": {"points": ' + points + ', "transcription": "x"}}}}}'
    with pytest.raises(InputError, match=r"images\.a\.jpg\.words\.0\.points: coordinate 6 is nan"):
        load_dataset(_json_file(tmp_path, None, raw))
    raw = '{"images": {"a.jpg": {"words": {}}, "a.jpg": {"words": {}}}}'
    with pytest.raises(InputError, match=r"images\.a\.jpg: key given twice"):
        load_dataset(_json_file(tmp_path, None, raw))
    path = _json_file(tmp_path, {"images": {"a.jpg": {"words": {"0": GOOD_WORD}}}})
    path.write_bytes(path.read_text().encode("utf-16"))  # UTF-16 with its BOM: accepted
    assert len(load_dataset(path).samples) == 1
    path.write_bytes(b'{"images": {"a.jpg": {"words": {}}}}\n\xff')
    with pytest.raises(InputError, match=r"ann.json:2: not UTF-8 text"):
        load_dataset(path)


def test_json_unknown_keys_are_ignored_with_a_warning(tmp_path):
    doc = {"version": 2, "images": {"a.jpg": {"words": {"0": {**GOOD_WORD, "language": "Latin"}}, "size": [48, 64]}}}
    with pytest.warns(UserWarning) as record:
        (sample,) = load_dataset(_json_file(tmp_path, doc)).samples
    assert sample.texts == ["hi"]
    messages = [str(w.message) for w in record]
    assert messages == [
        f"{tmp_path / 'ann.json'}: (top level).version: unknown key, ignored (and 2 more: "
        f"{tmp_path / 'ann.json'}: images.a.jpg.size, {tmp_path / 'ann.json'}: images.a.jpg.words.0.language)"
    ]


def test_json_two_images_with_one_stem(tmp_path):
    Image.new("RGB", (64, 48)).save(tmp_path / "a.png")
    doc = {"images": {"a.jpg": {"words": {}}, "a.png": {"words": {}}}}
    with pytest.raises(InputError, match=r"a.jpg: a.png has the same stem 'a'"):
        load_dataset(_json_file(tmp_path, doc))


# ---------------------------------------------------------------- prediction rules


@pytest.mark.parametrize(
    "line, fragment",
    [
        ("10,10,50,10,50,30,x", "field 7 ('x') is not a number"),
        ("10,10,50,10,50,30,0.9", "at least 4 points"),  # a triangle and its score
        ("10,10,50,10,50,30,10,30,nan", "score is nan"),
        ("10,10,50,10,50,inf,10,30", "coordinate 6 is inf"),
        ("10,10,50,10,50,3e6,10,30,0.5", "beyond +-1e+06"),
    ],
)
def test_prediction_errors(tmp_path, line, fragment):
    (tmp_path / "res_a.txt").write_text(f"{QUAD},0.5\n{line}\n")
    with pytest.raises(InputError) as err:
        read_predictions(tmp_path / "res_a.txt")
    assert str(err.value).startswith(f"{tmp_path / 'res_a.txt'}:2: ") and fragment in str(err.value)


def test_empty_prediction_file_and_degenerate_detections(tmp_path):
    (tmp_path / "res_a.txt").write_bytes(b"")
    assert read_predictions(tmp_path / "res_a.txt") == ([], [])
    (tmp_path / "res_a.txt").write_text("10,10,20,20,30,30,40,40,0.7\n")
    with pytest.warns(UserWarning, match=r"res_a.txt:1: zero-area polygon .* invalid detection"):
        assert read_predictions(tmp_path / "res_a.txt")[1] == [0.7]

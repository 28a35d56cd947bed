"""Annotation formats: ICDAR text files (BOM, CRLF, malformed lines) and JSON, round trips, paths."""

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ocrkit.core.data.formats import (
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
        np.array([[0, 0], [5, 0], [5, 5]], np.float32),
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
            "1": {"points": [[30, 1], [40, 1], [40, 10]], "transcription": "x", "illegibility": True},
            "2": {"points": [[1, 20], [9, 20], [9, 30], [1, 30]], "transcription": "###"},
        },
    )
    (sample,) = load_dataset(path).samples
    assert sample.image_path == tmp_path / "a.jpg"
    assert sample.ignore == [False, True, True]
    assert [len(p) for p in sample.polygons] == [4, 3, 4]


@pytest.mark.parametrize(
    "word, key",
    [
        ({"transcription": "no points"}, "images.a.jpg.words.w.points: missing"),
        ({"points": [[1, 2]]}, "images.a.jpg.words.w.points"),
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

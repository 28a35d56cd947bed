"""The synthetic dataset: ICDAR layout, determinism, exact quads, sizes and input checks."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import ImageFont

from ocrkit.core.data.formats import load_icdar_dir
from ocrkit.core.data.synth import (
    MIN_CARE_HEIGHT,
    generate_synthetic,
    place_words,
    quad_height,
    render_sample,
)
from ocrkit.core.errors import OcrkitError

SMALL = (128, 160)


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _signed_area(quad: np.ndarray) -> float:
    """Shoelace sum; positive means clockwise on screen (y points down)."""
    x, y = quad[:, 0], quad[:, 1]
    return float(np.sum(x * np.roll(y, -1) - np.roll(x, -1) * y) / 2)


def _quad_mask(shape: tuple[int, int], quads: list[np.ndarray], dilate: int) -> np.ndarray:
    mask = np.zeros(shape, np.uint8)
    for quad in quads:  # one at a time: fillPoly with several leaves overlaps unfilled (even-odd)
        cv2.fillPoly(mask, [np.round(quad).astype(np.int32)], 1)
    if dilate:
        mask = cv2.dilate(mask, np.ones((2 * dilate + 1, 2 * dilate + 1), np.uint8))
    return mask.astype(bool)


def _side_band(shape: tuple[int, int], quad: np.ndarray, side: int, reach: int) -> np.ndarray:
    """Pixels within ``reach`` px of the quad's side ``side`` (0 = top, clockwise)."""
    line = np.round(quad[[side, (side + 1) % 4]]).astype(np.int32)
    band = cv2.polylines(np.zeros(shape, np.uint8), [line], False, 1)
    return cv2.dilate(band, np.ones((2 * reach + 1, 2 * reach + 1), np.uint8)).astype(bool)


@pytest.fixture(scope="module")
def small_set(tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("synth")
    return out, generate_synthetic(out, 6, 3, size=SMALL, seed=1, progress=False)


def test_icdar_layout_reads_back_with_matching_counts(small_set) -> None:
    out, summary = small_set
    assert summary.train.images_dir == out / "train" / "images" and summary.val.gts_dir == out / "val" / "gts"
    assert sorted(p.name for p in summary.train.images_dir.iterdir()) == [f"synth_00000{i}.jpg" for i in range(1, 7)]
    assert sorted(p.name for p in summary.val.gts_dir.iterdir()) == [f"gt_synth_00000{i}.txt" for i in range(1, 4)]
    for split in (summary.train, summary.val):
        samples = load_icdar_dir(split.root).samples
        assert len(samples) == split.images
        assert sum(not flag for s in samples for flag in s.ignore) == split.care_words
        assert sum(flag for s in samples for flag in s.ignore) == split.dont_care_words
        for sample in samples:
            assert all(p.shape == (4, 2) for p in sample.polygons)
            assert all(
                t == "###" if ign else (t.isalnum() and 2 <= len(t) <= 12)
                for t, ign in zip(sample.texts, sample.ignore, strict=True)
            )
    assert summary.train.dont_care_words + summary.val.dont_care_words > 0
    assert summary.train.care_words > 6
    assert summary.images == 9


def test_polygons_inside_image_clockwise_and_reading_rightwards(small_set) -> None:
    out, _ = small_set
    h, w = SMALL
    quads = [
        (p, ign)
        for split in ("train", "val")
        for s in load_icdar_dir(out / split).samples
        for p, ign in zip(s.polygons, s.ignore, strict=True)
    ]
    assert quads
    for quad, _ in quads:
        assert (quad >= 0).all() and (quad[:, 0] <= w - 1).all() and (quad[:, 1] <= h - 1).all()
        assert _signed_area(quad) > 0
        top = quad[1] - quad[0]  # first point is the word's top-left: its top edge runs rightwards
        assert top[0] > -0.2 * np.linalg.norm(top)


def test_same_seed_gives_identical_bytes(tmp_path: Path) -> None:
    generate_synthetic(tmp_path / "a", 3, 2, size=SMALL, seed=7, progress=False)
    generate_synthetic(tmp_path / "b", 3, 2, size=SMALL, seed=7, progress=False)
    a, b = _files(tmp_path / "a"), _files(tmp_path / "b")
    assert len(a) == 10 and a == b


def test_different_seed_split_or_index_gives_different_data(tmp_path: Path) -> None:
    generate_synthetic(tmp_path / "a", 2, 2, size=SMALL, seed=7, progress=False)
    generate_synthetic(tmp_path / "b", 2, 2, size=SMALL, seed=8, progress=False)
    a, b = _files(tmp_path / "a"), _files(tmp_path / "b")
    for name in a:
        assert a[name] != b[name], name
    assert a["train/images/synth_000001.jpg"] != a["val/images/synth_000001.jpg"]
    assert a["train/images/synth_000001.jpg"] != a["train/images/synth_000002.jpg"]


def test_an_image_does_not_depend_on_how_many_came_before(tmp_path: Path) -> None:
    generate_synthetic(tmp_path / "few", 1, 0, size=SMALL, seed=3, progress=False)
    generate_synthetic(tmp_path / "many", 3, 1, size=SMALL, seed=3, progress=False)
    few, many = _files(tmp_path / "few"), _files(tmp_path / "many")
    assert few and all(many[name] == data for name, data in few.items())


def test_rerun_with_fewer_images_removes_stale_ones(tmp_path: Path) -> None:
    generate_synthetic(tmp_path, 3, 1, size=SMALL, progress=False)
    generate_synthetic(tmp_path, 1, 0, size=SMALL, progress=False)
    assert [p.name for p in (tmp_path / "train" / "images").iterdir()] == ["synth_000001.jpg"]
    assert [p.name for p in (tmp_path / "train" / "gts").iterdir()] == ["gt_synth_000001.txt"]
    assert list((tmp_path / "val" / "images").iterdir()) == []


@pytest.mark.parametrize("grey", [30, 128, 225])
def test_ground_truth_quads_are_exact_on_a_solid_background(grey: int) -> None:
    h, w = 240, 320
    checked = 0
    for seed in range(4):
        image = np.full((h, w, 3), grey, np.uint8)
        words = place_words(image, np.random.default_rng([seed, grey]), [None], 12)
        ink = np.abs(image.astype(np.int16) - grey).max(axis=2) > 24
        care = [wd.polygon for wd in words if not wd.ignore]
        blurred = [wd.polygon for wd in words if wd.ignore]
        # sharp ink stays within 1 px of its quad; blurred (don't-care) ink spreads a little
        allowed = _quad_mask((h, w), care, 1) | _quad_mask((h, w), blurred, 8)
        assert not (ink & ~allowed).any(), f"ink outside the quads (seed {seed})"
        for quad in care:
            inside = _quad_mask((h, w), [quad], 0)
            assert ink[inside].mean() > 0.1, "a care quad holds too little ink"
            reach = round(2 + 0.1 * quad_height(quad))  # the margin plus faint anti-aliased edges
            for side in range(4):  # ink comes close to every side: the quad is tight
                assert ink[_side_band((h, w), quad, side, reach)].any(), "no ink next to a side of a care quad"
            checked += 1
        for word in words:
            assert _signed_area(word.polygon) > 0
            assert (word.polygon >= 0).all() and (word.polygon[:, 0] <= w - 1).all()
            assert (word.polygon[:, 1] <= h - 1).all()
    assert checked >= 12


def test_word_statistics_look_like_icdar() -> None:
    counts, care, dont_care = [], 0, 0
    for index in range(40):
        _, words = render_sample(np.random.default_rng([5, 0, index]), SMALL)
        counts.append(len(words))
        for word in words:
            tiny = quad_height(word.polygon) < MIN_CARE_HEIGHT
            assert word.ignore or not tiny, "tiny text must be don't-care"
            dont_care += word.ignore
            care += not word.ignore
    assert 0.05 <= dont_care / (care + dont_care) <= 0.3
    assert sum(3 <= c <= 15 for c in counts) >= 0.7 * len(counts)
    assert max(counts) <= 15


@pytest.mark.parametrize("size", [(96, 200), (200, 96), (64, 64)])
def test_requested_height_and_width_are_respected(tmp_path: Path, size: tuple[int, int]) -> None:
    generate_synthetic(tmp_path, 2, 1, size=size, seed=2, progress=False)
    images = sorted(tmp_path.rglob("*.jpg"))
    assert len(images) == 3
    for path in images:
        assert cv2.imread(str(path)).shape == (*size, 3)
    for sample in load_icdar_dir(tmp_path / "train").samples:
        for quad in sample.polygons:
            assert (quad[:, 0] <= size[1] - 1).all() and (quad[:, 1] <= size[0] - 1).all()


def test_font_files_are_used(tmp_path: Path) -> None:
    builtin = ImageFont.load_default(size=20)
    font_bytes = getattr(builtin, "font_bytes", None)
    if not font_bytes:
        pytest.skip("this Pillow does not expose the built-in font's bytes")
    font = tmp_path / "builtin.ttf"
    font.write_bytes(font_bytes)
    generate_synthetic(tmp_path / "file", 2, 0, size=SMALL, seed=4, fonts=[font], progress=False)
    generate_synthetic(tmp_path / "default", 2, 0, size=SMALL, seed=4, progress=False)
    # the same font from a file renders the same pixels as the built-in one
    assert _files(tmp_path / "file") == _files(tmp_path / "default")
    dejavu = Path("/usr/share/fonts/truetype/dejavu/DejaVuSerif.ttf")
    if dejavu.is_file():
        generate_synthetic(tmp_path / "serif", 2, 0, size=SMALL, seed=4, fonts=[dejavu], progress=False)
        serif = _files(tmp_path / "serif")
        assert serif["train/images/synth_000001.jpg"] != _files(tmp_path / "default")["train/images/synth_000001.jpg"]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"n_train": -1},
        {"n_val": 1.5},
        {"n_train": True},
        {"size": (32, 640)},
        {"size": (640, 63)},
        {"size": (640,)},
        {"size": (640.0, 640)},
        {"seed": -3},
        {"fonts": []},
        {"fonts": ["/nonexistent/font.ttf"]},
        {"fonts": "/some/font.ttf"},
    ],
)
def test_bad_arguments_raise_one_line_ocrkit_error(tmp_path: Path, kwargs: dict) -> None:
    args = {"n_train": 1, "n_val": 1, "size": SMALL, "progress": False} | kwargs
    with pytest.raises(OcrkitError) as info:
        generate_synthetic(tmp_path / "out", **args)
    assert "\n" not in str(info.value) and str(info.value)
    assert not (tmp_path / "out").exists()


def test_a_file_that_is_not_a_font_is_rejected(tmp_path: Path) -> None:
    bogus = tmp_path / "bogus.ttf"
    bogus.write_text("not a font")
    with pytest.raises(OcrkitError, match="not a readable"):
        generate_synthetic(tmp_path / "out", 1, 0, size=SMALL, fonts=[bogus], progress=False)

"""Training augmentation: polygons move with the pixels, seeding, crops that keep care text, the
fit-and-pad resize."""

from __future__ import annotations

import random

import cv2
import numpy as np
import pytest
import torch

from conftest import STRONG_AUGMENT, data_cfg, random_quad
from ocrkit.core.config import AugmentConfig, DataConfig
from ocrkit.core.data.augment import build_augmenter, choose_crop
from ocrkit.core.data.jitter import jitter_batch
from ocrkit.core.geometry.maps import polygon_area

RED = (255, 0, 0)


GREY = 128


STRONG = STRONG_AUGMENT


def red_scene(seed: int, h: int = 128, w: int = 160, n: int = 3) -> tuple[np.ndarray, list[np.ndarray]]:
    """A grey image with ``n`` red quads fully inside it (integer vertices, so the fill is exact)."""
    rng = np.random.default_rng(seed)
    image = np.full((h, w, 3), GREY, np.uint8)
    quads = []
    while len(quads) < n:
        quad = np.rint(random_quad(rng, h, w, min_side=16, max_side=60))
        if quad.min() >= 2 and quad[:, 0].max() <= w - 3 and quad[:, 1].max() <= h - 3:
            quads.append(quad.astype(np.float32))
    for quad in quads:  # one call per quad: a single fillPoly call would XOR the overlaps
        cv2.fillPoly(image, [quad.astype(np.int32)], RED)
    return image, quads


def red_mask(image: np.ndarray) -> np.ndarray:
    """Pixels still clearly red after photometric jitter (grey and black padding are not)."""
    rgb = image.astype(np.int16)
    return rgb[..., 0] - np.maximum(rgb[..., 1], rgb[..., 2]) > 60


def polygon_mask(polygons: list[np.ndarray], shape: tuple[int, int]) -> np.ndarray:
    mask = np.zeros(shape, np.uint8)
    for polygon in polygons:
        cv2.fillPoly(mask, [np.rint(polygon).astype(np.int32)], 1)
    return mask.astype(bool)


@pytest.fixture(params=["fused", "albumentations"])
def pipeline(request) -> str:
    """Every behaviour below holds for both pipelines (data.augment.pipeline)."""
    return request.param


def augment(cfg: DataConfig, image, polygons, ignore, seed):
    """The training input as the model sees it, in uint8 HWC: for the fused pipeline with its
    photometric jitter applied as on the device (data/jitter.py), rounded back to uint8."""
    out = build_augmenter(cfg).augment(image, polygons, ignore, seed)
    pixels = out.image
    if out.jitter is not None:
        batch = torch.from_numpy(np.ascontiguousarray(pixels.transpose(2, 0, 1)))[None].float()
        factors, order = torch.from_numpy(out.jitter.factors)[None], torch.from_numpy(out.jitter.order)[None]
        jittered = jitter_batch(batch, factors, order, torch.tensor([out.content_size]))
        pixels = jittered[0].round().byte().permute(1, 2, 0).numpy()
    return np.ascontiguousarray(pixels), out.polygons, out.ignore


def outputs_equal(a, b) -> bool:
    return (
        np.array_equal(a[0], b[0])
        and len(a[1]) == len(b[1])
        and all(np.array_equal(p, q) for p, q in zip(a[1], b[1], strict=True))
        and a[2] == b[2]
    )


def test_polygons_move_with_the_pixels(pipeline):
    cfg = data_cfg(pipeline=pipeline)
    kernel = np.ones((5, 5), np.uint8)  # dilation by 2 px
    total_red = 0
    for seed in range(24):
        image, quads = red_scene(seed)
        out, polygons, ignore = augment(cfg, image, quads, [False] * len(quads), seed)
        assert out.shape == (96, 96, 3) and out.dtype == np.uint8
        red = red_mask(out)
        inside = cv2.dilate(polygon_mask(polygons, red.shape).astype(np.uint8), kernel).astype(bool)
        total_red += red.sum()
        if red.sum():
            assert (red & inside).sum() >= 0.9 * red.sum(), f"seed {seed}: red pixels outside polygons"
        for polygon in polygons:
            core = cv2.erode(polygon_mask([polygon], red.shape).astype(np.uint8), np.ones((3, 3), np.uint8))
            if core.sum() >= 10:
                assert red[core.astype(bool)].mean() >= 0.85, f"seed {seed}: polygon interior not red"
    assert total_red > 24 * 200  # the scenes really were visible after augmentation


def test_flip_keeps_the_polygon_winding_and_mirrors_text(pipeline):
    cfg = data_cfg(rotate=0.0, scale=(1.0, 1.0), flip=1.0, pipeline=pipeline)
    image, quads = red_scene(3, n=1)
    out, polygons, _ = augment(cfg, image, quads, [False], 0)
    assert np.sign(polygon_area(polygons[0])) == np.sign(polygon_area(quads[0]))
    assert polygons[0][:, 0].mean() > 96 - 1 - quads[0][:, 0].mean() * 96 / 160 - 2  # mirrored
    assert red_mask(out)[polygon_mask(polygons, out.shape[:2])].mean() > 0.8


def test_same_seed_same_output_and_no_global_random_state(pipeline):
    cfg = data_cfg(pipeline=pipeline)
    image, quads = red_scene(1)
    ignore = [False, True, False]
    np.random.seed(1), random.seed(1), torch.manual_seed(1)
    first = augment(cfg, image, quads, ignore, 1234)
    state = (np.random.get_state()[1].copy(), random.getstate(), torch.get_rng_state().clone())
    np.random.seed(99), random.seed(99), torch.manual_seed(99)
    second = augment(cfg, image, quads, ignore, 1234)
    assert outputs_equal(first, second)
    np.random.seed(1), random.seed(1), torch.manual_seed(1)
    augment(cfg, image, quads, ignore, 5)
    after = (np.random.get_state()[1], random.getstate(), torch.get_rng_state())
    assert np.array_equal(state[0], after[0]) and state[1] == after[1] and torch.equal(state[2], after[2])
    others = [augment(cfg, image, quads, ignore, seed) for seed in (1235, 1236, 1237)]
    assert not any(outputs_equal(first, other) for other in others)


def test_transforms_draw_independent_parameters(pipeline):
    """albumentations 2.0.8's set_random_seed starts every transform from the same seed, which
    made "flip" and "brightness" strongly correlated (r = -0.86); one shared stream must not."""
    cfg = data_cfg(scale=(1.0, 1.0), rotate=0.0, contrast=0.0, saturation=0.0, hue=0.0, pipeline=pipeline)
    image = np.full((96, 96, 3), 60, np.uint8)
    image[:, 48:] = 180
    everything = [np.array([[0, 0], [95, 0], [95, 95], [0, 95]], np.float32)]  # forces the full crop
    flips, brightness = [], []
    for seed in range(300):
        out = augment(cfg, image, everything, [False], seed)[0].astype(np.float64)
        flips.append(out[:, :48].mean() > out[:, 48:].mean())
        brightness.append(out.mean() / image.mean())
    assert 0.4 < np.mean(flips) < 0.6 and np.ptp(brightness) > 0.3
    assert abs(np.corrcoef(flips, brightness)[0, 1]) < 0.2


def test_disabled_augmentation_only_fits_and_pads(pipeline):
    cfg = DataConfig(train_size=(96, 96), augment=AugmentConfig(enabled=False, pipeline=pipeline))
    image, quads = red_scene(2, h=128, w=160)
    out, polygons, ignore = augment(cfg, image, quads, [False, True, False], 7)
    scale = np.array([96 / 160, 77 / 128], np.float32)  # the long side fits; 77 rows, padded to 96
    np.testing.assert_allclose(polygons[0], quads[0] * scale, rtol=1e-6)
    assert ignore == [False, True, False]
    assert np.array_equal(out[:77], cv2.resize(image, (96, 77), interpolation=cv2.INTER_AREA))
    assert not out[77:].any()
    assert outputs_equal((out, polygons, ignore), augment(cfg, image, quads, [False, True, False], 8))


def test_images_without_text_and_annotations_beyond_the_image(pipeline):
    image = np.full((128, 160, 3), GREY, np.uint8)
    for enabled in (True, False):
        cfg = data_cfg(enabled=enabled, pipeline=pipeline)
        out, polygons, ignore = augment(cfg, image, [], [], 3)
        assert out.shape == (96, 96, 3) and polygons == [] and ignore == []
    beyond = np.array([[170, 10], [200, 10], [200, 30], [170, 30]], np.float32)  # right of the image
    inside = np.array([[10, 10], [60, 10], [60, 40], [10, 40]], np.float32)
    out, polygons, ignore = augment(
        data_cfg(enabled=False, pipeline=pipeline), image, [beyond, inside], [True, False], 3
    )
    assert ignore == [False] and np.allclose(polygons[0], inside * 0.6, atol=0.1)


def test_crop_keeps_a_small_word_in_a_big_image(pipeline):
    cfg = data_cfg(rotate=10.0, pipeline=pipeline)
    zoomed = 0
    for seed in range(30):
        rng = np.random.default_rng(seed)
        image = np.full((400, 480, 3), GREY, np.uint8)
        x, y = rng.integers(10, 430), rng.integers(10, 380)
        word = np.array([[x, y], [x + 36, y], [x + 36, y + 12], [x, y + 12]], np.float32)
        cv2.fillPoly(image, [word.astype(np.int32)], RED)
        out, polygons, _ = augment(cfg, image, [word], [False], seed)
        assert len(polygons) == 1, f"seed {seed}: word lost"
        assert polygons[0].min() >= -1 and polygons[0].max() <= 96, f"seed {seed}: word cut"
        assert red_mask(out).sum() > 0
        # the whole (≥ 480 px wide) canvas fitted into 96 px would make the word ≤ 7.5 px wide:
        # the random scale cancels out, since the crop is resized to fit train_size
        zoomed += np.ptp(polygons[0][:, 0]) > 8
    assert zoomed >= 25  # real crops happen, not only the whole-image fallback


def test_crop_window_never_cuts_care_text():
    cfg = AugmentConfig(crop_tries=10, min_crop_ratio=0.1)
    for seed in range(40):
        rng = np.random.default_rng(seed)
        polygons = [random_quad(rng, 300, 400, 10, 60) for _ in range(int(rng.integers(1, 6)))]
        ignore = [bool(f) for f in rng.random(len(polygons)) < 0.2]
        x0, y0, x1, y1 = choose_crop(rng, (300, 400), polygons, ignore, cfg)
        assert 0 <= x0 < x1 <= 400 and 0 <= y0 < y1 <= 300
        if (x0, y0, x1, y1) == (0, 0, 400, 300):
            continue
        assert x1 - x0 >= 40 and y1 - y0 >= 30
        care = [p for p, f in zip(polygons, ignore, strict=True) if not f]
        inside = 0
        for p in care:
            (lx, ly), (hx, hy) = p.min(0), p.max(0)
            fully_in = lx >= x0 and hx <= x1 - 1 and ly >= y0 and hy <= y1 - 1
            fully_out = hx < x0 or lx > x1 - 1 or hy < y0 or ly > y1 - 1
            edge_cut = lx < 0 or ly < 0 or hx > 399 or hy > 299  # already cut by the image
            assert fully_in or fully_out or edge_cut, f"seed {seed}: crop cuts a care polygon"
            inside += fully_in or not fully_out
        assert inside >= 1 or not care


def test_fixed_crop_keeps_the_scale_and_finds_text(pipeline):
    from ocrkit.core.config import AugmentConfig, DataConfig

    image = np.full((400, 480, 3), 200, np.uint8)
    word = np.array([[300, 300], [380, 300], [380, 330], [300, 330]], np.float32)
    cv2.fillPoly(image, [word.astype(np.int32)], (10, 10, 10))
    cfg = DataConfig(
        train_size=(96, 128),
        augment=AugmentConfig(
            crop="fixed", scale=(1.0, 1.0), rotate=0, brightness=0, contrast=0, saturation=0, hue=0, pipeline=pipeline
        ),
    )
    found = 0
    for seed in range(20):
        out, polys, flags = augment(cfg, image, [word], [False], seed)
        assert out.shape[:2] == (96, 128)
        if polys:
            found += 1
            extent = polys[0].max(axis=0) - polys[0].min(axis=0)
            np.testing.assert_allclose(extent, [80, 30], atol=1.5)  # not resized: same scale
    assert found == 20  # the window is anchored on the word


def _old_resize_to_fit_plan(h: int, w: int, th: int, tw: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """resize_to_fit's own planning before it used plan_resize: (content, padded)."""
    scale = min(th / h, tw / w)
    return (min(th, max(1, round(h * scale))), min(tw, max(1, round(w * scale)))), (th, tw)


def test_resize_to_fit_plans_with_plan_resize_exactly_as_before(monkeypatch):
    """The content clamp min(target, ·) that resize_to_fit had is a no-op (the side that fits
    rounds to the target itself, the other is smaller); the only real difference from evaluation
    is the padding, now plan_resize(pad_to_target=True)."""
    from ocrkit.core.data import augment
    from ocrkit.core.geometry.transform import plan_resize

    sides = [*range(1, 300), *range(300, 6001, 97), 4095, 4096, 4097]
    targets = [(96, 96), (96, 128), (128, 96), (256, 256), (320, 320), (640, 640), (736, 1280), (1280, 736), (32, 1280)]
    for th, tw in targets:  # every h against a spread of w, and every (h, w) pair for a few h
        for h in sides:
            for w in sides if h in (1, 2, 3, 31, 32, 33, 96, 97, 255, 256, 257) else sides[h % 11 :: 11]:
                t = plan_resize((h, w), (th, tw), keep_ratio=True, pad_to_target=True)
                assert (t.content_size, t.padded_size) == _old_resize_to_fit_plan(h, w, th, tw), (h, w, th, tw)

    calls = []
    monkeypatch.setattr(augment, "plan_resize", lambda *a, **k: calls.append((a, k)) or plan_resize(*a, **k))
    rng = np.random.default_rng(0)
    for h, w in [(1, 1), (1, 500), (500, 1), (77, 160), (96, 96), (191, 97), *rng.integers(1, 1500, (40, 2))]:
        image = np.full((int(h), int(w), 3), 7, np.uint8)
        quad = np.array([[0, 0], [w, 0], [w, h], [0, h]], np.float32) * 0.5
        for size in [(96, 96), (96, 128), (640, 640)]:
            out, polys, flags, t = augment.resize_to_fit(image, [quad], [False], size)
            content, padded = _old_resize_to_fit_plan(int(h), int(w), *size)
            assert (t.orig_size, t.content_size, t.padded_size) == ((h, w), content, padded)
            assert out.shape == (*size, 3) and out[: content[0], : content[1]].all() and not out[content[0] :].any()
            assert flags == [False] and np.array_equal(polys[0], quad * np.float32([t.scale_x, t.scale_y]))
    assert len(calls) == 46 * 3

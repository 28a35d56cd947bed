"""Training augmentation in which the text polygons move with the pixels.

Order: random scale + rotation (one affine warp on an EXPANDED canvas, so no text is rotated out
of the picture) → horizontal flip → a DB-style crop whose borders cut no care text → resize the
crop to fit ``train_size`` keeping its aspect ratio, pad bottom/right → photometric jitter on
the content (after the crop, so its cost does not grow with the random scale).

Every polygon vertex travels through albumentations as an ``xy`` keypoint (pixel-centre
convention, invisible points kept) and is regrouped afterwards.

Determinism: the output is a pure function of ``rng_seed``. All albumentations transforms share
ONE generator pair built from the seed (``Compose.set_random_state``); ``set_random_seed`` /
``Compose(seed=...)`` in 2.0.8 give every transform its own generator started from the SAME seed,
which correlates the transforms' draws (measured: flip vs. brightness r = −0.86). The crop draws
from an independent stream of the same seed. Global ``random`` / ``np.random`` / ``torch`` state
is never read.
"""

from __future__ import annotations

import os
import random
from collections.abc import Sequence
from dataclasses import dataclass

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")  # no PyPI version check at import time

import albumentations as A  # noqa: E402
import cv2  # noqa: E402
import numpy as np  # noqa: E402

from ocrkit.core.config import AugmentConfig, DataConfig  # noqa: E402
from ocrkit.core.data.image import apply_resize  # noqa: E402
from ocrkit.core.geometry.maps import polygon_area  # noqa: E402
from ocrkit.core.geometry.transform import ResizeTransform, plan_resize  # noqa: E402

Polygons = list[np.ndarray]
Window = tuple[int, int, int, int]  # x0, y0, x1, y1 (exclusive ends)


@dataclass(frozen=True)
class Augmenter:
    """The built pipelines for one ``DataConfig`` (build once, call per sample)."""

    geometric: A.Compose | None
    photometric: A.Compose | None
    cfg: DataConfig

    def __call__(
        self, image: np.ndarray, polygons: Sequence[np.ndarray], ignore: Sequence[bool], rng_seed: int
    ) -> tuple[np.ndarray, Polygons, list[bool]]:
        polys = [np.asarray(p, dtype=np.float32).reshape(-1, 2) for p in polygons]
        flags = [bool(f) for f in ignore]
        if len(polys) != len(flags):
            raise ValueError("polygons and ignore flags differ in length")
        if self.geometric is None:
            return resize_to_fit(image, polys, flags, self.cfg.train_size)[:3]
        assert self.photometric is not None
        np_gen, py_gen, crop_gen = sample_generators(rng_seed)
        self.geometric.set_random_state(np_gen, py_gen)
        self.photometric.set_random_state(np_gen, py_gen)
        image, polys = warp(self.geometric, image, polys)
        if self.cfg.augment.crop == "fixed":
            window = choose_fixed_crop(crop_gen, image.shape[:2], polys, flags, self.cfg.train_size)
        else:
            window = choose_crop(crop_gen, image.shape[:2], polys, flags, self.cfg.augment)
        image, polys, flags = crop(image, polys, flags, window)
        image, polys, flags, transform = resize_to_fit(image, polys, flags, self.cfg.train_size)
        return jitter_content(self.photometric, image, transform.content_size), polys, flags


def build_augmenter(data_cfg: DataConfig) -> Augmenter:
    """Geometric pipeline (keypoints follow the pixels) and photometric pipeline for ``data_cfg``."""
    aug = data_cfg.augment
    if not aug.enabled:
        return Augmenter(None, None, data_cfg)
    geometric = A.Compose(
        [
            A.Affine(
                scale=aug.scale,
                rotate=(-aug.rotate, aug.rotate),
                keep_ratio=True,
                fit_output=True,  # expand the canvas: rotated corners and text stay in the picture
                interpolation=cv2.INTER_LINEAR,
                border_mode=cv2.BORDER_CONSTANT,
                fill=0,
                p=1.0,
            ),
            A.HorizontalFlip(p=aug.flip),
        ],
        keypoint_params=A.KeypointParams(format="xy", remove_invisible=False),
    )
    photometric = A.Compose([A.ColorJitter(aug.brightness, aug.contrast, aug.saturation, aug.hue, p=1.0)])
    return Augmenter(geometric, photometric, data_cfg)


def sample_generators(rng_seed: int) -> tuple[np.random.Generator, random.Random, np.random.Generator]:
    """(numpy, python) generators for albumentations and an independent numpy one for the crop."""
    albu, crop_stream = np.random.SeedSequence(int(rng_seed) % 2**64).spawn(2)
    py_random = random.Random(int(albu.generate_state(1)[0]))
    return np.random.default_rng(albu), py_random, np.random.default_rng(crop_stream)


def warp(geometric: A.Compose, image: np.ndarray, polygons: Polygons) -> tuple[np.ndarray, Polygons]:
    """Run the geometric pipeline with every vertex as a keypoint, then regroup per polygon."""
    counts = [len(p) for p in polygons]
    points = np.concatenate(polygons) if polygons else np.zeros((0, 2), np.float32)
    out = geometric(image=image, keypoints=points)
    moved = np.asarray(out["keypoints"], dtype=np.float32).reshape(-1, 2)
    groups = np.split(moved, np.cumsum(counts)[:-1]) if polygons else []
    return out["image"], [keep_winding(new, old) for new, old in zip(groups, polygons, strict=True)]


def keep_winding(moved: np.ndarray, original: np.ndarray) -> np.ndarray:
    """A mirror reverses the vertex order's winding; reverse it back so orientation is stable."""
    if polygon_area(moved) * polygon_area(original) < 0:
        return np.ascontiguousarray(moved[::-1])
    return moved


def _border_candidates(polygons: Polygons, length: int, axis: int) -> np.ndarray:
    """Border positions 0..length (between pixels) that cut no polygon along ``axis``.

    A polygon spanning [lo, hi] blocks positions floor(lo)..ceil(hi)+1 (one pixel of margin);
    the image edges are always allowed, since an edge cuts nothing that is not already cut.
    """
    blocked = np.zeros(length + 1, dtype=bool)
    for polygon in polygons:
        lo = int(np.floor(polygon[:, axis].min()))
        hi = int(np.ceil(polygon[:, axis].max())) + 1
        blocked[max(lo, 0) : max(min(hi + 1, length + 1), 0)] = True
    blocked[[0, length]] = False
    return np.flatnonzero(~blocked)


def _runs(positions: np.ndarray) -> list[np.ndarray]:
    """Split sorted positions into runs of consecutive integers (the text-free gaps)."""
    return np.split(positions, np.flatnonzero(np.diff(positions) != 1) + 1)


def _pick_span(rng: np.random.Generator, candidates: np.ndarray) -> tuple[int, int]:
    """Two borders from two different gaps when there are several (so text lies between them,
    DB's region-wise choice), else any two free positions."""
    runs = _runs(candidates)
    if len(runs) > 1:
        first, second = np.sort(rng.choice(len(runs), size=2, replace=False))
        return int(rng.choice(runs[first])), int(rng.choice(runs[second]))
    lo, hi = np.sort(rng.choice(candidates, size=2, replace=False))
    return int(lo), int(hi)


def _overlaps(polygon: np.ndarray, window: Window) -> bool:
    x0, y0, x1, y1 = window
    (min_x, min_y), (max_x, max_y) = polygon.min(axis=0), polygon.max(axis=0)
    return bool(max_x >= x0 and min_x <= x1 - 1 and max_y >= y0 and min_y <= y1 - 1)


def choose_crop(
    rng: np.random.Generator,
    shape: tuple[int, int],
    polygons: Polygons,
    ignore: Sequence[bool],
    cfg: AugmentConfig,
) -> Window:
    """DB's RandomCropData: up to ``crop_tries`` windows whose borders lie in text-free gaps of the
    care polygons' x/y projections, sides >= ``min_crop_ratio`` of the image, holding at least
    one care polygon (any window when there is none). Falls back to the whole image."""
    h, w = shape
    care = [p for p, flag in zip(polygons, ignore, strict=True) if not flag]
    xs, ys = _border_candidates(care, w, 0), _border_candidates(care, h, 1)
    min_w, min_h = cfg.min_crop_ratio * w, cfg.min_crop_ratio * h
    for _ in range(cfg.crop_tries):
        (x0, x1), (y0, y1) = _pick_span(rng, xs), _pick_span(rng, ys)
        if x1 - x0 < min_w or y1 - y0 < min_h:
            continue
        window = (x0, y0, x1, y1)
        if not care or any(_overlaps(p, window) for p in care):
            return window
    return 0, 0, w, h


def choose_fixed_crop(
    rng: np.random.Generator,
    shape: tuple[int, int],
    polygons: Polygons,
    ignore: Sequence[bool],
    size: tuple[int, int],
) -> Window:
    """A ``size`` (H, W) window (the whole side where the image is smaller) that contains the
    centre of a randomly chosen care polygon, at a random offset; anywhere when there is none.
    The crop is not resized afterwards, so the text scale seen in training is the one the random
    rescale chose: train and full-resolution eval see text at matching scales."""
    h, w = shape
    ch, cw = min(h, size[0]), min(w, size[1])
    care = [p for p, flag in zip(polygons, ignore, strict=True) if not flag]
    x_lo, x_hi, y_lo, y_hi = 0, w - cw, 0, h - ch
    if care:
        cx, cy = care[int(rng.integers(len(care)))].mean(axis=0)
        x_lo, x_hi = max(0, int(cx) - cw + 1), min(w - cw, int(cx))
        y_lo, y_hi = max(0, int(cy) - ch + 1), min(h - ch, int(cy))
    x0 = int(rng.integers(x_lo, max(x_lo, x_hi) + 1))
    y0 = int(rng.integers(y_lo, max(y_lo, y_hi) + 1))
    return x0, y0, x0 + cw, y0 + ch


def _drop_outside(polygons: Polygons, ignore: Sequence[bool], h: int, w: int) -> tuple[Polygons, list[bool]]:
    """Drop polygons entirely outside the (h, w) image; partly cut ones stay (maps clamp them)."""
    kept = [(p, f) for p, f in zip(polygons, ignore, strict=True) if _overlaps(p, (0, 0, w, h))]
    return [p for p, _ in kept], [f for _, f in kept]


def crop(
    image: np.ndarray, polygons: Polygons, ignore: Sequence[bool], window: Window
) -> tuple[np.ndarray, Polygons, list[bool]]:
    x0, y0, x1, y1 = window
    shift = np.array([x0, y0], dtype=np.float32)
    moved = [p - shift for p in polygons]
    kept, flags = _drop_outside(moved, ignore, y1 - y0, x1 - x0)
    return image[y0:y1, x0:x1], kept, flags


def resize_to_fit(
    image: np.ndarray, polygons: Polygons, ignore: Sequence[bool], size: tuple[int, int]
) -> tuple[np.ndarray, Polygons, list[bool], ResizeTransform]:
    """Scale to fit inside ``size`` (H, W) keeping the aspect ratio, pad bottom/right with 0.
    Polygons that land wholly outside the content (annotations beyond the image) are dropped."""
    transform = plan_resize(image.shape[:2], size, keep_ratio=True, pad_to_target=True)
    moved = [transform.forward(p) for p in polygons]
    kept, flags = _drop_outside(moved, ignore, *transform.content_size)
    return apply_resize(image, transform), kept, flags, transform


def jitter_content(photometric: A.Compose, image: np.ndarray, content: tuple[int, int]) -> np.ndarray:
    """Photometric jitter of the resized content only: the padding stays 0."""
    h, w = content
    image[:h, :w] = photometric(image=np.ascontiguousarray(image[:h, :w]))["image"]
    return image

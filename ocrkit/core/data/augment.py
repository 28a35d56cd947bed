"""Training augmentation in which the text polygons move with the pixels.

Two pipelines with the same random choices and DB's crop rule (``data.augment.pipeline``):

- ``fused`` (default): scale, rotation, flip, crop and the fit-to-``train_size`` resize are ONE
  affine matrix (geometry/affine.py). The crop is chosen on the polygons alone (mapped to the
  rotated canvas, which is never drawn), and then one ``cv2.warpAffine`` makes the final
  ``train_size`` pixels straight from the decoded image, with the polygons mapped by the same
  matrix. Photometric jitter is only drawn here (``JitterParams``) and applied to the batch on
  the model's device (data/jitter.py). ``ocrkit bench data`` has the per-stage costs of both.
- ``albumentations``: the chain described next, the first implementation, kept as the reference.

Chain order: random scale + rotation (one affine warp on an EXPANDED canvas, so no text is rotated out
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

import math
import os
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")  # no PyPI version check at import time

import albumentations as A  # noqa: E402
import albumentations.augmentations.pixel.functional as fpixel  # noqa: E402
import cv2  # noqa: E402
import numpy as np  # noqa: E402

from ocrkit.core.config import AugmentConfig, DataConfig  # noqa: E402
from ocrkit.core.data.image import apply_resize  # noqa: E402
from ocrkit.core.geometry import affine  # noqa: E402
from ocrkit.core.geometry.maps import polygon_area  # noqa: E402
from ocrkit.core.geometry.transform import ResizeTransform, plan_resize  # noqa: E402

Polygons = list[np.ndarray]
Window = tuple[int, int, int, int]  # x0, y0, x1, y1 (exclusive ends)


class Clock(Protocol):
    """Where a sample's time goes: ``lap(stage)`` charges the time since the previous lap to
    ``stage`` (``ocrkit bench data``'s per-stage breakdown; data/stages.py)."""

    def lap(self, stage: str) -> None: ...


class _NoClock:
    def lap(self, stage: str) -> None:
        pass


NO_CLOCK = _NoClock()


@dataclass(frozen=True)
class JitterParams:
    """One sample's photometric jitter, drawn on the CPU and applied on the device: factors
    (brightness, contrast, saturation, hue) and the order the four are applied in."""

    factors: np.ndarray  # float32 (4,)
    order: np.ndarray  # int64 (4,), a permutation of 0..3


@dataclass(frozen=True)
class Augmented:
    """One augmented sample at ``train_size``: uint8 RGB image, polygons and don't-care flags in
    its pixel coordinates, the size of its content (the rest is zero padding), and the jitter
    still to apply on the device (None when it was applied here, or there is none)."""

    image: np.ndarray
    polygons: Polygons
    ignore: list[bool]
    content_size: tuple[int, int]
    jitter: JitterParams | None = None

    def triple(self) -> tuple[np.ndarray, Polygons, list[bool]]:
        return self.image, self.polygons, self.ignore


def _as_polygons(polygons: Sequence[np.ndarray], ignore: Sequence[bool]) -> tuple[Polygons, list[bool]]:
    polys = [np.asarray(p, dtype=np.float32).reshape(-1, 2) for p in polygons]
    flags = [bool(f) for f in ignore]
    if len(polys) != len(flags):
        raise ValueError("polygons and ignore flags differ in length")
    return polys, flags


def _fit_only(image: np.ndarray, polys: Polygons, flags: list[bool], size: tuple[int, int]) -> Augmented:
    image, polys, flags, transform = resize_to_fit(image, polys, flags, size)
    return Augmented(image, polys, flags, transform.content_size)


class _Pipeline:
    """What both pipelines share: the call, and the fit-only path when augmentation is off."""

    cfg: DataConfig

    def __call__(
        self, image: np.ndarray, polygons: Sequence[np.ndarray], ignore: Sequence[bool], rng_seed: int
    ) -> tuple[np.ndarray, Polygons, list[bool]]:
        return self.augment(image, polygons, ignore, rng_seed).triple()

    @property
    def random(self) -> bool:
        return self.cfg.augment.enabled

    def augment(
        self,
        image: np.ndarray,
        polygons: Sequence[np.ndarray],
        ignore: Sequence[bool],
        rng_seed: int,
        clock: Clock = NO_CLOCK,
    ) -> Augmented:
        """The sample augmented with the draws of ``rng_seed``; ``clock`` is told where the time went."""
        polys, flags = _as_polygons(polygons, ignore)
        if not self.random:
            fitted = _fit_only(image, polys, flags, self.cfg.train_size)
            clock.lap("geometric")
            return fitted
        return self._augment(image, polys, flags, rng_seed, clock)

    def _augment(self, image: np.ndarray, polys: Polygons, flags: list[bool], rng_seed: int, clock: Clock) -> Augmented:
        raise NotImplementedError


@dataclass(frozen=True)
class Augmenter(_Pipeline):
    """The albumentations chain for one ``DataConfig`` (build once, call per sample)."""

    geometric: A.Compose | None
    photometric: A.Compose | None
    cfg: DataConfig

    def _augment(self, image: np.ndarray, polys: Polygons, flags: list[bool], rng_seed: int, clock: Clock) -> Augmented:
        assert self.geometric is not None and self.photometric is not None
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
        clock.lap("geometric")
        image = jitter_content(self.photometric, image, transform.content_size)
        clock.lap("photometric")
        return Augmented(image, polys, flags, transform.content_size)


@dataclass(frozen=True)
class FusedAugmenter(_Pipeline):
    """The fused pipeline for one ``DataConfig``: one affine warp, jitter left to the device.

    Draws the same kinds of parameters as the chain (uniform scale in ``augment.scale``, uniform
    rotation in ±``rotate`` degrees, a flip with probability ``flip``, DB's or the fixed crop,
    ColorJitter's factor ranges and a random order), from its own streams of the sample's seed.
    Reads the decoded image without modifying it (a read-only store or preload view will do).
    """

    cfg: DataConfig
    jitter_on_device: bool = False  # False: jitter here, on uint8, with ColorJitter's own operations

    def _augment(self, image: np.ndarray, polys: Polygons, flags: list[bool], rng_seed: int, clock: Clock) -> Augmented:
        geometric, crop_gen, photometric = np.random.default_rng(np.random.SeedSequence(int(rng_seed) % 2**64)).spawn(3)
        matrix, fit, polys, flags = self.plan(geometric, crop_gen, image.shape[:2], polys, flags)
        rgba = warp_to_fit(image, matrix, fit)
        clock.lap("geometric")
        jitter = draw_jitter(photometric, self.cfg.augment)
        if not self.jitter_on_device:
            out = jitter_on_loader(rgba, jitter, fit.content_size)
            clock.lap("photometric")
            return Augmented(out, polys, flags, fit.content_size)
        clock.lap("photometric")
        # a view: the collate's copy into the batch drops the fourth channel
        return Augmented(rgba[..., :3], polys, flags, fit.content_size, jitter)

    def plan(
        self,
        rng: np.random.Generator,
        crop_rng: np.random.Generator,
        shape: tuple[int, int],
        polys: Polygons,
        flags: list[bool],
    ) -> tuple[np.ndarray, ResizeTransform, Polygons, list[bool]]:
        """The one matrix from the decoded image to the training input, the fit it ends in, and
        the polygons it keeps (mapped by that matrix; those wholly outside the crop dropped)."""
        aug = self.cfg.augment
        scale, angle = rng.uniform(*aug.scale), rng.uniform(-aug.rotate, aug.rotate)
        to_canvas, canvas = affine.fit_canvas(affine.rotation_scaling(scale, angle), shape)
        if rng.random() < aug.flip:
            to_canvas = affine.mirror_x(canvas[1]) @ to_canvas
        on_canvas = [affine.apply(to_canvas, p) for p in polys]
        if aug.crop == "fixed":
            x0, y0, x1, y1 = choose_fixed_crop(crop_rng, canvas, on_canvas, flags, self.cfg.train_size)
        else:
            x0, y0, x1, y1 = choose_crop(crop_rng, canvas, on_canvas, flags, aug)
        fit = plan_resize((y1 - y0, x1 - x0), self.cfg.train_size, keep_ratio=True, pad_to_target=True)
        matrix = affine.scaling(fit.scale_x, fit.scale_y) @ affine.translation(-x0, -y0) @ to_canvas
        moved = [keep_winding(affine.apply(matrix, p), p) for p in polys]
        kept, kept_flags = _drop_outside(moved, flags, *fit.content_size)
        return matrix, fit, kept, kept_flags


AREA_BELOW = 0.75  # a net scale below this is reached with an area resize first (see warp_to_fit)


def warp_to_fit(image: np.ndarray, matrix: np.ndarray, fit: ResizeTransform) -> np.ndarray:
    """The training input, RGBA (H, W, 4) uint8 at the fit's padded size: ``image`` warped by
    ``matrix`` (edge convention) into the content, zero padding around it; the caller takes the
    RGB channels as a view. One bilinear ``warpAffine`` written straight into place, on four
    channels because OpenCV's vectorised bilinear path takes 4-channel images: 2-3× faster than
    3 channels here, for a 0.1 ms RGB → RGBA conversion (``ocrkit bench data`` shows the stage).

    A bilinear warp that shrinks by more than 1 / ``AREA_BELOW`` skips source pixels (aliasing),
    where the chain shrank with an area resize. So a strong shrink is split: an area resize of
    the source by the matrix's scale, then the warp of what remains (the rotation, at about scale
    1), its matrix corrected by the resize's exact per-axis factors, so that the pixels still land
    where the polygons do."""
    (ch, cw), (ph, pw) = fit.content_size, fit.padded_size
    scale = math.sqrt(abs(float(np.linalg.det(matrix[:2, :2]))))
    if scale < AREA_BELOW:
        h, w = image.shape[:2]
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
        matrix = matrix @ affine.scaling(w / size[0], h / size[1])
    out = np.zeros((ph, pw, 4), np.uint8)
    cv2.warpAffine(
        cv2.cvtColor(image, cv2.COLOR_RGB2RGBA),
        affine.to_opencv(matrix),
        (cw, ch),
        dst=out[:ch, :cw],
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=0,
    )
    return out


def draw_jitter(rng: np.random.Generator, aug: AugmentConfig) -> JitterParams:
    """ColorJitter's draws: brightness, contrast and saturation factors uniform in
    [max(0, 1 − x), 1 + x], the hue shift uniform in ±``hue`` turns, a random order."""
    factors = [rng.uniform(max(0.0, 1 - x), 1 + x) for x in (aug.brightness, aug.contrast, aug.saturation)]
    factors.append(rng.uniform(-aug.hue, aug.hue))
    return JitterParams(np.array(factors, np.float32), rng.permutation(4).astype(np.int64))


def jitter_on_loader(rgba: np.ndarray, jitter: JitterParams, content: tuple[int, int]) -> np.ndarray:
    """``jitter`` applied to the content of the RGBA ``rgba`` with albumentations' ColorJitter
    operations on uint8 (what the chain runs), in ``jitter.order``: an RGB array, padding 0.
    (OpenCV drops the fourth channel in 0.1 ms where numpy's copy of the RGB view takes 4.)"""
    h, w = content
    pixels = cv2.cvtColor(rgba[:h, :w], cv2.COLOR_RGBA2RGB)
    for op_id in jitter.order:
        pixels = COLOR_OPERATIONS[int(op_id)](pixels, float(jitter.factors[op_id]))
    out = np.zeros((*rgba.shape[:2], 3), np.uint8)
    out[:h, :w] = pixels
    return out


COLOR_OPERATIONS = (  # ColorJitter's, in the order of JitterParams.factors
    fpixel.adjust_brightness_torchvision,
    fpixel.adjust_contrast_torchvision,
    fpixel.adjust_saturation_torchvision,
    fpixel.adjust_hue_torchvision,
)


AnyAugmenter = Augmenter | FusedAugmenter


def build_augmenter(data_cfg: DataConfig, jitter_on_device: bool = False) -> AnyAugmenter:
    """The pipeline ``data.augment.pipeline`` names, for ``data_cfg``; ``jitter_on_device``: the
    fused pipeline leaves its photometric jitter to ``batch_to_device`` (see
    ``device_jitter_wanted``)."""
    aug = data_cfg.augment
    if aug.pipeline == "fused":
        return FusedAugmenter(data_cfg, jitter_on_device)
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


def device_jitter_wanted(data_cfg: DataConfig, model_device: str) -> bool:
    """Whether the fused pipeline's jitter runs on the model's device (``data.augment.jitter_on``;
    ``auto``: when that device is a GPU). ``model_device``: a torch device type or name."""
    mode = data_cfg.augment.jitter_on
    if data_cfg.augment.pipeline != "fused" or not data_cfg.augment.enabled:
        return False
    if mode != "auto":
        return mode == "device"
    return str(model_device).startswith("cuda")


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


def _pick_span(rng: np.random.Generator, candidates: np.ndarray, runs: list[np.ndarray]) -> tuple[int, int]:
    """Two borders from two different gaps (``runs`` of ``candidates``) when there are several
    (so text lies between them, DB's region-wise choice), else any two free positions."""
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
    x_runs, y_runs = _runs(xs), _runs(ys)  # once, not once per try
    min_w, min_h = cfg.min_crop_ratio * w, cfg.min_crop_ratio * h
    for _ in range(cfg.crop_tries):
        (x0, x1), (y0, y1) = _pick_span(rng, xs, x_runs), _pick_span(rng, ys, y_runs)
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

"""Synthetic scene text: random words on cluttered backgrounds, with exact quad ground truth.

This is ocrkit's built-in dataset, so a detector can be trained with no download. Each word is
rendered as an alpha mask on its own patch, and one 3x3 matrix (aspect/shear, mild perspective,
rotation, placement) warps both the patch pixels and the corners of the word's ink box, so the
quad written to the ground truth is exactly where the ink is. Coordinates use OpenCV's
pixel-centre convention. Each image draws from ``default_rng([seed, split, index])``: the same
seed gives byte-identical files, and an image does not depend on how many came before it.
"""

from __future__ import annotations

import math
import string
import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np
import PIL
from PIL import Image, ImageDraw, ImageFont
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from shapely.geometry import Polygon

from ocrkit.core.atomic import write_bytes_atomic
from ocrkit.core.data.formats import write_icdar_gt
from ocrkit.core.errors import OcrkitError

SPLITS = ("train", "val")
STEM_PREFIX = "synth_"
JPEG_QUALITY = 95
MIN_SIDE, MAX_SIDE = 64, 8192
MIN_CARE_HEIGHT = 8.0  # shorter words are don't-care, like ICDAR's tiny text
MAX_OVERLAP = 0.05  # fraction of the smaller quad another word may cover
PLACEMENT_TRIES = 12
EMPTY_IMAGE_P = 0.04
TINY_P, BLUR_P = 0.08, 0.07  # together with naturally small words: ~15% don't-care

FontSource = str | None  # a TTF path, or None for Pillow's built-in scalable font


@dataclass(frozen=True)
class Word:
    """One rendered word: its quad (4x2 float32, clockwise on screen from the word's top-left)."""

    polygon: np.ndarray
    text: str
    ignore: bool


@dataclass(frozen=True)
class SplitSummary:
    root: Path
    images: int
    care_words: int
    dont_care_words: int

    @property
    def images_dir(self) -> Path:
        return self.root / "images"

    @property
    def gts_dir(self) -> Path:
        return self.root / "gts"


@dataclass(frozen=True)
class SynthSummary:
    """What ``generate_synthetic`` wrote: per-split counts and paths, and how long it took."""

    out_dir: Path
    train: SplitSummary
    val: SplitSummary
    seconds: float

    @property
    def images(self) -> int:
        return self.train.images + self.val.images

    @property
    def images_per_second(self) -> float:
        return self.images / self.seconds if self.seconds > 0 else float("inf")


# ---------------------------------------------------------------- inputs and fonts


def _check_count(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 0:
        raise OcrkitError(f"synthetic data: {name} must be an integer >= 0, got {value!r}")
    return int(value)


def _check_size(size: object) -> tuple[int, int]:
    if (
        isinstance(size, Sequence)
        and len(size) == 2
        and all(isinstance(v, int | np.integer) and not isinstance(v, bool) for v in size)
        and all(MIN_SIDE <= v <= MAX_SIDE for v in size)
    ):
        return int(size[0]), int(size[1])
    raise OcrkitError(f"synthetic data: size must be (height, width) in {MIN_SIDE}..{MAX_SIDE} px, got {size!r}")


def _check_fonts(fonts: Sequence[str | Path] | None) -> tuple[FontSource, ...]:
    if fonts is None:
        load_font(None, 12)  # fail early if this Pillow has no scalable built-in font
        return (None,)
    if isinstance(fonts, str | Path) or len(fonts) == 0:
        raise OcrkitError("synthetic data: fonts must be a non-empty list of .ttf/.otf paths (or None)")
    for path in fonts:
        if not Path(path).is_file():
            raise OcrkitError(f"synthetic data: font file not found: {path}")
        try:
            ImageFont.truetype(str(path), 12)
        except OSError:
            raise OcrkitError(f"synthetic data: not a readable TrueType/OpenType font: {path}") from None
    return tuple(str(Path(p)) for p in fonts)


@lru_cache(maxsize=1024)
def load_font(source: FontSource, size: int) -> ImageFont.FreeTypeFont:
    """A cached font; the built-in one needs Pillow >= 10.1 with FreeType to be scalable.

    Basic layout, as Pillow uses for its built-in font, so pixels do not depend on libraqm.
    """
    if source is not None:
        return ImageFont.truetype(source, size, layout_engine=ImageFont.Layout.BASIC)
    try:
        font = ImageFont.load_default(size=size)
    except TypeError:
        font = None  # Pillow < 10.1: load_default takes no size
    if not isinstance(font, ImageFont.FreeTypeFont):
        raise OcrkitError(
            f"synthetic data: Pillow {PIL.__version__} has no scalable built-in font "
            "(needs Pillow >= 10.1 with FreeType); pass fonts=[...] with .ttf files"
        )
    return font


# ---------------------------------------------------------------- words

_VOWELS, _CONSONANTS = "aeiouy", "bcdfghjklmnprstvwxz"
_ALNUM = string.ascii_letters + string.digits


def _pick(rng: np.random.Generator, alphabet: str, n: int) -> str:
    return "".join(alphabet[i] for i in rng.integers(0, len(alphabet), n))


def _apply_case(rng: np.random.Generator, word: str) -> str:
    r = rng.random()
    if r < 0.4:
        return word
    if r < 0.65:
        return word.capitalize()
    if r < 0.85:
        return word.upper()
    flips = rng.random(len(word)) < 0.5
    return "".join(c.upper() if f else c for c, f in zip(word, flips, strict=True))


def random_text(rng: np.random.Generator) -> str:
    """2-12 characters: short numbers, pronounceable pseudo-words, or letter/digit mixes."""
    length = min(12, 2 + int(rng.exponential(3.5)))
    kind = rng.random()
    if kind < 0.15:
        return _pick(rng, string.digits, min(length, 5))
    if kind < 0.65:  # alternating consonants and vowels look like words at a glance
        start = int(rng.integers(0, 2))
        word = "".join(_pick(rng, (_CONSONANTS, _VOWELS)[(i + start) % 2], 1) for i in range(length))
        return _apply_case(rng, word)
    return _apply_case(rng, _pick(rng, _ALNUM, length))


@dataclass(frozen=True)
class _Glyphs:
    fill: np.ndarray  # uint8 alpha of the letters
    stroke: np.ndarray | None  # uint8 alpha of letters plus outline, when outlined
    box: tuple[float, float, float, float]  # ink extent in pixel-centre coordinates


def render_glyphs(text: str, font: ImageFont.FreeTypeFont, stroke_width: int = 0) -> _Glyphs | None:
    """Draw the word as alpha masks and measure its ink box from the pixels themselves."""
    left, top, right, bottom = font.getbbox(text, stroke_width=stroke_width)
    pad = 2 + stroke_width
    size = (int(right - left) + 2 * pad, int(bottom - top) + 2 * pad)  # a FreeType bbox is whole pixels
    origin = (pad - left, pad - top)
    fill_img = Image.new("L", size, 0)
    ImageDraw.Draw(fill_img).text(origin, text, font=font, fill=255)
    fill = np.asarray(fill_img)
    stroke = None
    if stroke_width:
        stroke_img = Image.new("L", size, 0)
        ImageDraw.Draw(stroke_img).text(origin, text, font=font, fill=255, stroke_width=stroke_width, stroke_fill=255)
        stroke = np.asarray(stroke_img)
    ink = stroke if stroke is not None else fill
    ys, xs = np.nonzero(ink)
    if len(xs) == 0:
        return None
    # a pixel's area spans +-0.5 around its centre
    box = (xs.min() - 0.5, ys.min() - 0.5, xs.max() + 0.5, ys.max() + 0.5)
    return _Glyphs(fill, stroke, box)


# ---------------------------------------------------------------- geometry


def _translation(tx: float, ty: float) -> np.ndarray:
    return np.array([[1, 0, tx], [0, 1, ty], [0, 0, 1]], dtype=np.float64)


def _rotation(degrees: float) -> np.ndarray:
    c, s = math.cos(math.radians(degrees)), math.sin(math.radians(degrees))
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]], dtype=np.float64)


def transform_points(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    homogeneous = np.c_[points, np.ones(len(points))] @ matrix.T
    return homogeneous[:, :2] / homogeneous[:, 2:3]


def box_quad(box: tuple[float, float, float, float], margin: float) -> np.ndarray:
    """Corners top-left, top-right, bottom-right, bottom-left: clockwise on screen (y down)."""
    x0, y0, x1, y1 = box[0] - margin, box[1] - margin, box[2] + margin, box[3] + margin
    return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], dtype=np.float64)


def _random_angle(rng: np.random.Generator) -> float:
    r = rng.random()
    if r < 0.5:
        return float(rng.normal(0, 2.5))
    if r < 0.92:
        return float(rng.uniform(-30, 30))
    return float(rng.uniform(-80, 80))


def word_matrix(rng: np.random.Generator, quad: np.ndarray) -> np.ndarray:
    """Aspect/shear, mild perspective and rotation, about the quad's centre (which goes to 0)."""
    centre = quad.mean(axis=0)
    shear = rng.uniform(-0.25, 0.25) if rng.random() < 0.2 else 0.0
    affine = np.array([[rng.uniform(0.8, 1.25), shear, 0], [0, 1, 0], [0, 0, 1]])
    src = transform_points(affine @ _translation(*-centre), quad)
    height = np.linalg.norm(src[3] - src[0])
    jitter = 0.0 if rng.random() < 0.3 else rng.uniform(0.03, 0.12)
    dst = src + rng.uniform(-1, 1, (4, 2)) * jitter * height  # < height/2 keeps the quad convex
    perspective = cv2.getPerspectiveTransform(src.astype(np.float32), dst.astype(np.float32))
    return _rotation(_random_angle(rng)) @ perspective @ affine @ _translation(*-centre)


def quad_height(quad: np.ndarray) -> float:
    return float((np.linalg.norm(quad[3] - quad[0]) + np.linalg.norm(quad[2] - quad[1])) / 2)


def _overlaps(quad: np.ndarray, placed: Sequence[Polygon]) -> bool:
    candidate = Polygon(quad)
    for other in placed:
        if candidate.intersects(other):
            shared = candidate.intersection(other).area
            if shared > MAX_OVERLAP * min(candidate.area, other.area):
                return True
    return False


# ---------------------------------------------------------------- compositing


def _luminance(rgb: np.ndarray) -> float:
    return float(rgb @ np.array([0.299, 0.587, 0.114]))


def contrasting_colour(rng: np.random.Generator, background: np.ndarray, min_gap: float) -> np.ndarray:
    """A random colour whose luminance is at least ``min_gap`` from the background's."""
    bg_lum = _luminance(background)
    for _ in range(12):
        colour = rng.uniform(0, 255, 3)
        if abs(_luminance(colour) - bg_lum) >= min_gap:
            return colour
    base = 0.0 if bg_lum > 127 else 255.0  # near-black or near-white always contrasts
    return np.clip(base + rng.uniform(-30, 30, 3), 0, 255)


def _blend(roi: np.ndarray, alpha: np.ndarray, colour: np.ndarray) -> None:
    a = alpha[..., None]
    roi[:] = roi * (1 - a) + colour * a


def _warp_alpha(mask: np.ndarray, matrix: np.ndarray, roi: tuple[int, int, int, int]) -> np.ndarray:
    x0, y0, x1, y1 = roi
    local = _translation(-x0, -y0) @ matrix
    warped = cv2.warpPerspective(mask, local, (x1 - x0, y1 - y0), flags=cv2.INTER_LINEAR, borderValue=0)
    return warped.astype(np.float32) / 255.0


@dataclass(frozen=True)
class _Style:
    font_size: int
    stroke_width: int
    blur_sigma: float  # 0: sharp
    opacity: float


def _random_style(rng: np.random.Generator, min_side: int) -> _Style:
    r = rng.random()
    if r < TINY_P:
        size = int(rng.integers(4, 10))
    else:
        hi = max(12.0, 0.16 * min_side)
        size = int(round(math.exp(rng.uniform(math.log(10), math.log(hi)))))
    blur = 0.0
    if TINY_P <= r < TINY_P + BLUR_P:
        blur = float(rng.uniform(0.12, 0.25) * size + 0.8)  # strong enough to be unreadable
    stroke = int(rng.integers(1, 1 + max(1, size // 15))) if size >= 16 and rng.random() < 0.12 else 0
    return _Style(size, stroke, blur, float(rng.uniform(0.8, 1.0)))


def _placed_matrix(
    rng: np.random.Generator, quad: np.ndarray, image_hw: tuple[int, int], reach: float
) -> np.ndarray | None:
    """The full patch-to-image matrix, placed at random so the quad (plus ``reach``) fits."""
    centred = word_matrix(rng, quad)
    corners = transform_points(centred, quad)
    low, high = corners.min(axis=0) - reach, corners.max(axis=0) + reach
    h, w = image_hw
    free = np.array([w - 1, h - 1]) - (high - low)
    if (free < 0).any():
        return None  # too big for the image at this size and angle
    tx, ty = rng.uniform(0, free) - low
    return _translation(tx, ty) @ centred


def _draw_word(
    image: np.ndarray,
    glyphs: _Glyphs,
    matrix: np.ndarray,
    style: _Style,
    reach: float,
    quad: np.ndarray,
    rng: np.random.Generator,
) -> None:
    h, w = image.shape[:2]
    low, high = quad.min(axis=0) - reach, quad.max(axis=0) + reach
    x0, y0 = max(0, int(low[0])), max(0, int(low[1]))
    x1, y1 = min(w, int(math.ceil(high[0])) + 1), min(h, int(math.ceil(high[1])) + 1)
    roi = image[y0:y1, x0:x1].astype(np.float32)
    fill = _warp_alpha(glyphs.fill, matrix, (x0, y0, x1, y1))
    stroke = _warp_alpha(glyphs.stroke, matrix, (x0, y0, x1, y1)) if glyphs.stroke is not None else None
    if style.blur_sigma > 0:
        fill = cv2.GaussianBlur(fill, (0, 0), style.blur_sigma)
        stroke = cv2.GaussianBlur(stroke, (0, 0), style.blur_sigma) if stroke is not None else None
    cover = stroke if stroke is not None else fill
    weight = cover.sum()
    background = (roi * cover[..., None]).sum(axis=(0, 1)) / weight if weight > 0 else roi.mean(axis=(0, 1))
    outer = contrasting_colour(rng, background, rng.uniform(80, 140))
    if stroke is not None:
        _blend(roi, stroke * style.opacity, outer)
        _blend(roi, fill * style.opacity, contrasting_colour(rng, outer, 60))
    else:
        _blend(roi, fill * style.opacity, outer)
    image[y0:y1, x0:x1] = np.clip(roi + 0.5, 0, 255).astype(np.uint8)


def _try_word(
    image: np.ndarray, rng: np.random.Generator, fonts: Sequence[FontSource], placed: list[Polygon]
) -> Word | None:
    h, w = image.shape[:2]
    style = _random_style(rng, min(h, w))
    text = random_text(rng)
    font = load_font(fonts[int(rng.integers(0, len(fonts)))], style.font_size)
    glyphs = render_glyphs(text, font, style.stroke_width)
    if glyphs is None:
        return None
    ink_height = glyphs.box[3] - glyphs.box[1]
    quad = box_quad(glyphs.box, margin=0.5 + 0.05 * ink_height)
    reach = 1.0 + 3.0 * style.blur_sigma  # where blurred ink can still land
    matrix = _placed_matrix(rng, quad, (h, w), reach)
    if matrix is None:
        return None
    image_quad = transform_points(matrix, quad)
    if _overlaps(image_quad, placed):
        return None
    _draw_word(image, glyphs, matrix, style, reach, image_quad, rng)
    placed.append(Polygon(image_quad))
    ignore = style.blur_sigma > 0 or quad_height(image_quad) < MIN_CARE_HEIGHT
    return Word(image_quad.astype(np.float32), text, ignore)


def place_words(image: np.ndarray, rng: np.random.Generator, fonts: Sequence[FontSource], n_words: int) -> list[Word]:
    """Draw up to ``n_words`` words onto ``image`` (RGB uint8, in place) without heavy overlap."""
    words: list[Word] = []
    placed: list[Polygon] = []
    for _ in range(n_words):
        for _ in range(PLACEMENT_TRIES):
            word = _try_word(image, rng, fonts, placed)
            if word is not None:
                words.append(word)
                break
    return words


# ---------------------------------------------------------------- backgrounds


def _random_colour(rng: np.random.Generator) -> tuple[int, int, int]:
    r, g, b = (int(v) for v in rng.integers(0, 256, 3))
    return r, g, b


def _gradient(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    angle = rng.uniform(0, 2 * math.pi)
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    t = xs * math.cos(angle) + ys * math.sin(angle)
    t = (t - t.min()) / max(float(t.max() - t.min()), 1.0)
    c0, c1 = rng.uniform(0, 255, 3).astype(np.float32), rng.uniform(0, 255, 3).astype(np.float32)
    return c0 + t[..., None] * (c1 - c0)


def _blotches(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Low-frequency colour noise; a stretched grid gives grain-like streaks."""
    gh, gw = int(rng.integers(2, 9)), int(rng.integers(2, 9))
    if rng.random() < 0.3:
        gh, gw = (gh * 12, 2) if rng.random() < 0.5 else (2, gw * 12)
    grid = rng.uniform(0, 255, (gh, gw, 3)).astype(np.float32)
    grey = grid.mean(axis=2, keepdims=True)
    grid = grey + (grid - grey) * rng.uniform(0.2, 1.0)  # photos are rarely fully saturated
    return cv2.resize(grid, (w, h), interpolation=cv2.INTER_CUBIC)


def _base_layer(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    r = rng.random()
    if r < 0.15:
        base: np.ndarray = np.empty((h, w, 3), np.float32)
        base[:] = rng.uniform(0, 255, 3)
    elif r < 0.5:
        base = _gradient(rng, h, w)
    elif r < 0.75:
        base = _blotches(rng, h, w)
    else:
        mix = rng.uniform(0.2, 0.8)
        base = mix * _gradient(rng, h, w) + (1 - mix) * _blotches(rng, h, w)
    if rng.random() < 0.6:  # grain, grey so one channel of noise suffices
        base += rng.standard_normal((h, w, 1), dtype=np.float32) * rng.uniform(2, 14)
    return base


def _line(img: np.ndarray, rng: np.random.Generator) -> None:
    h, w = img.shape[:2]
    p0, p1 = (int(rng.integers(0, w)), int(rng.integers(0, h))), (int(rng.integers(0, w)), int(rng.integers(0, h)))
    cv2.line(img, p0, p1, _random_colour(rng), int(rng.integers(1, 7)), cv2.LINE_AA)


def _rectangle(img: np.ndarray, rng: np.random.Generator) -> None:
    h, w = img.shape[:2]
    x, y = int(rng.integers(0, w)), int(rng.integers(0, h))
    rw, rh = int(rng.integers(4, w // 2)), int(rng.integers(4, h // 2))
    thickness = -1 if rng.random() < 0.5 else int(rng.integers(1, 5))
    cv2.rectangle(img, (x, y), (x + rw, y + rh), _random_colour(rng), thickness, cv2.LINE_AA)


def _ellipse(img: np.ndarray, rng: np.random.Generator) -> None:
    h, w = img.shape[:2]
    centre = (int(rng.integers(0, w)), int(rng.integers(0, h)))
    axes = (int(rng.integers(2, w // 3)), int(rng.integers(2, h // 3)))
    thickness = -1 if rng.random() < 0.5 else int(rng.integers(1, 5))
    angle = float(rng.uniform(0, 180))
    cv2.ellipse(img, centre, axes, angle, 0, 360, _random_colour(rng), thickness, cv2.LINE_AA)


def _polygon(img: np.ndarray, rng: np.random.Generator) -> None:
    h, w = img.shape[:2]
    centre, radius = rng.uniform((0, 0), (w, h)), rng.uniform(8, min(h, w) / 3)
    angles = np.sort(rng.uniform(0, 2 * math.pi, int(rng.integers(3, 7))))
    points = centre + radius * np.c_[np.cos(angles), np.sin(angles)]
    cv2.fillPoly(img, [points.astype(np.int32)], _random_colour(rng), cv2.LINE_AA)


def _stripes(img: np.ndarray, rng: np.random.Generator) -> None:
    """Parallel bands inside a random rectangle (awnings, blinds, fences)."""
    h, w = img.shape[:2]
    x0, y0 = int(rng.integers(0, w - 16)), int(rng.integers(0, h - 16))
    x1, y1 = int(rng.integers(x0 + 16, w + 1)), int(rng.integers(y0 + 16, h + 1))
    ys, xs = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    angle, period = rng.uniform(0, math.pi), rng.uniform(4, 24)
    phase = (xs * math.cos(angle) + ys * math.sin(angle)) % period
    on = phase < period * rng.uniform(0.2, 0.6)
    img[y0:y1, x0:x1][on] = _random_colour(rng)


def _bars(img: np.ndarray, rng: np.random.Generator) -> None:
    """A row of thin upright bars, text-sized: barcodes, railings, tally marks. Not text."""
    h, w = img.shape[:2]
    bar_h = rng.uniform(6, max(8.0, min(h, w) * 0.12))
    origin, angle = rng.uniform((0, 0), (w, h)), math.radians(rng.uniform(-30, 30))
    along, up = np.array([math.cos(angle), math.sin(angle)]), np.array([math.sin(angle), -math.cos(angle)])
    x, bars = 0.0, []
    for _ in range(int(rng.integers(4, 30))):
        width, height = rng.uniform(1, 4), bar_h * (rng.uniform(0.5, 1.0) if rng.random() < 0.4 else 1.0)
        corners = [
            origin + along * x,
            origin + along * (x + width),
            origin + along * (x + width) + up * height,
            origin + along * x + up * height,
        ]
        bars.append(np.array(corners, dtype=np.int32))
        x += width + rng.uniform(1, 6)
    cv2.fillPoly(img, bars, _random_colour(rng), cv2.LINE_AA)


def _dashes(img: np.ndarray, rng: np.random.Generator) -> None:
    h, w = img.shape[:2]
    p0, p1 = rng.uniform((0, 0), (w, h)), rng.uniform((0, 0), (w, h))
    n = int(rng.integers(4, 20))
    colour, thickness = _random_colour(rng), int(rng.integers(1, 4))
    for i in range(n):
        a, b = p0 + (p1 - p0) * (i / n), p0 + (p1 - p0) * ((i + 0.5) / n)
        cv2.line(img, (int(a[0]), int(a[1])), (int(b[0]), int(b[1])), colour, thickness, cv2.LINE_AA)


def _grid(img: np.ndarray, rng: np.random.Generator) -> None:
    h, w = img.shape[:2]
    step, colour = int(rng.integers(8, 48)), _random_colour(rng)
    x0, y0 = int(rng.integers(0, w // 2)), int(rng.integers(0, h // 2))
    x1, y1 = int(rng.integers(x0 + step, w + step)), int(rng.integers(y0 + step, h + step))
    for x in range(x0, x1, step):
        cv2.line(img, (x, y0), (x, y1), colour, 1)
    for y in range(y0, y1, step):
        cv2.line(img, (x0, y), (x1, y), colour, 1)


def _dots(img: np.ndarray, rng: np.random.Generator) -> None:
    h, w = img.shape[:2]
    colour = _random_colour(rng)
    for x, y in rng.uniform((0, 0), (w, h), (int(rng.integers(5, 60)), 2)):
        cv2.circle(img, (int(x), int(y)), int(rng.integers(1, 4)), colour, -1, cv2.LINE_AA)


def _scribble(img: np.ndarray, rng: np.random.Generator) -> None:
    h, w = img.shape[:2]
    steps = rng.normal(0, min(h, w) * 0.05, (int(rng.integers(4, 15)), 2))
    points = np.cumsum(steps, axis=0) + rng.uniform((0, 0), (w, h))
    cv2.polylines(img, [points.astype(np.int32)], False, _random_colour(rng), int(rng.integers(1, 5)), cv2.LINE_AA)


_CLUTTER = (_line, _rectangle, _ellipse, _polygon, _stripes, _bars, _dashes, _grid, _dots, _scribble)
_CLUTTER_WEIGHTS = np.array([3, 3, 3, 2, 1, 2, 1, 0.5, 1, 1.5])


def _add_clutter(img: np.ndarray, rng: np.random.Generator) -> None:
    h, w = img.shape[:2]
    scale = math.sqrt(h * w) / 640
    count = int(rng.poisson(rng.uniform(2, 22) * max(scale, 0.3)))
    kinds = rng.choice(len(_CLUTTER), size=count, p=_CLUTTER_WEIGHTS / _CLUTTER_WEIGHTS.sum())
    for kind in kinds:
        _CLUTTER[kind](img, rng)


def make_background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """An RGB uint8 background: gradient/blotches/grain, opaque and see-through clutter."""
    img = np.clip(_base_layer(rng, h, w), 0, 255).astype(np.uint8)
    _add_clutter(img, rng)
    if rng.random() < 0.4:  # translucent shapes over the scene
        layer = img.copy()
        _add_clutter(layer, rng)
        img = cv2.addWeighted(img, 0.5, layer, 0.5, 0)
    return img


def _finish(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Camera-ish degradations over the whole image, text included."""
    if rng.random() < 0.15:
        img = cv2.GaussianBlur(img, (0, 0), rng.uniform(0.3, 0.7))
    if rng.random() < 0.4:
        noise = rng.standard_normal(img.shape[:2] + (1,), dtype=np.float32) * rng.uniform(1, 5)
        img = np.clip(img + noise, 0, 255).astype(np.uint8)
    return img


def render_sample(
    rng: np.random.Generator, size: tuple[int, int], fonts: Sequence[FontSource] = (None,)
) -> tuple[np.ndarray, list[Word]]:
    """One synthetic image (RGB uint8, ``size`` = (H, W)) and its words."""
    h, w = size
    image = make_background(rng, h, w)
    n_words = 0 if rng.random() < EMPTY_IMAGE_P else int(rng.integers(3, 16))
    words = place_words(image, rng, fonts, n_words)
    return _finish(image, rng), words


# ---------------------------------------------------------------- files


def _write_sample(root: Path, stem: str, image: np.ndarray, words: Sequence[Word]) -> None:
    ok, jpeg = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise OcrkitError(f"synthetic data: could not encode {stem}.jpg")
    write_bytes_atomic(root / "images" / f"{stem}.jpg", jpeg.tobytes())
    write_icdar_gt(
        root / "gts" / f"gt_{stem}.txt", [w.polygon for w in words], [w.text for w in words], [w.ignore for w in words]
    )


def _remove_stale(root: Path, stems: set[str]) -> None:
    """Drop synth files from an earlier, larger run so the split holds exactly what was asked."""
    for path in (root / "images").glob(f"{STEM_PREFIX}*.jpg"):
        if path.stem not in stems:
            path.unlink()
    for path in (root / "gts").glob(f"gt_{STEM_PREFIX}*.txt"):
        if path.stem.removeprefix("gt_") not in stems:
            path.unlink()


def stem_for(index: int) -> str:
    return f"{STEM_PREFIX}{index + 1:06d}"


def _generate_split(
    root: Path,
    split_index: int,
    count: int,
    size: tuple[int, int],
    seed: int,
    fonts: Sequence[FontSource],
    progress: Progress,
) -> SplitSummary:
    for sub in ("images", "gts"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    task = progress.add_task(f"synthetic {root.name}", total=count, visible=count > 0)
    care = dont_care = 0
    for index in range(count):
        rng = np.random.default_rng([seed, split_index, index])
        image, words = render_sample(rng, size, fonts)
        _write_sample(root, stem_for(index), image, words)
        dont_care += sum(w.ignore for w in words)
        care += sum(not w.ignore for w in words)
        progress.advance(task)
    _remove_stale(root, {stem_for(i) for i in range(count)})
    return SplitSummary(root, count, care, dont_care)


def generate_synthetic(
    out_dir: str | Path,
    n_train: int,
    n_val: int,
    size: tuple[int, int] = (640, 640),
    seed: int = 0,
    fonts: Sequence[str | Path] | None = None,
    progress: bool = True,
) -> SynthSummary:
    """Write a synthetic ICDAR-2015-layout dataset to ``out_dir/{train,val}/{images,gts}``.

    ``size`` is (height, width); ``fonts`` are TTF/OTF files (default: Pillow's built-in font).
    """
    counts = (_check_count("n_train", n_train), _check_count("n_val", n_val))
    hw = _check_size(size)
    seed = _check_count("seed", seed)
    sources = _check_fonts(fonts)
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise OcrkitError(f"synthetic data: {out} exists and is not a directory")
    start = time.perf_counter()
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, disable=not progress) as bar:
        splits = [_generate_split(out / name, i, counts[i], hw, seed, sources, bar) for i, name in enumerate(SPLITS)]
    return SynthSummary(out, splits[0], splits[1], time.perf_counter() - start)

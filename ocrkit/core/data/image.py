"""Image decoding (EXIF orientation applied), the checks every image file passes before it is
used, and resizing into network space.

What an image file must be (``check_image``; every loader runs it before any work starts, so a
bad file stops a command at once instead of hours into a training run):

- a regular, non-empty file that Pillow recognises as an image (by its bytes: a PNG named ``.jpg``
  is read as the PNG it is);
- 8 bits a channel (grey, palette, RGB, RGBA, CMYK, ...): 16- and 32-bit grey would turn white
  in the conversion to RGB, so they are refused;
- at most ``MAX_SIDE`` pixels a side and ``MAX_PIXELS`` pixels in all (Pillow's own
  decompression-bomb threshold), checked from the header before anything is decoded;
- complete: its compressed data is read to the end (PNG: every chunk and its CRC; JPEG: decoded at
  1/8 scale, about a third of a full decode; other formats: decoded), so a truncated or corrupt
  file is named here, not by a DataLoader worker later.

Each failure is an ``InputError`` naming the file, in one line.
"""

from __future__ import annotations

import os
import threading
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ocrkit.core.config import DataConfig
from ocrkit.core.errors import InputError
from ocrkit.core.geometry.transform import ResizeTransform, plan_resize

if TYPE_CHECKING:
    import torch

MAX_SIDE = 20_000  # pixels a side
MAX_PIXELS = 89_478_485  # Pillow's decompression-bomb warning threshold (Image.MAX_IMAGE_PIXELS)

_TRANSPOSING_ORIENTATIONS = {5, 6, 7, 8}  # EXIF orientations that swap width and height
# Modes whose conversion to RGB keeps the picture. 16-bit and 32-bit grey (I;16, I, F) would be
# clipped at 255 (a 16-bit scan turns white), so they are refused rather than changed silently.
_EIGHT_BIT_MODES = {"1", "L", "LA", "La", "P", "PA", "RGB", "RGBA", "RGBa", "RGBX", "CMYK", "YCbCr", "LAB", "HSV"}
# Image.open may warn (DecompressionBombWarning) before ocrkit's own limit refuses the image with
# an error; the warning is silenced for that call only, under a lock so that the filter change is
# not interleaved with another thread's.
_OPEN_LOCK = threading.Lock()


def _describe(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{exc.__class__.__name__}: {text}" if text else exc.__class__.__name__


@contextmanager
def _opened(path: Path):
    """The image at ``path`` opened (header read, nothing decoded) and within ocrkit's limits;
    every way of failing is an InputError naming the file."""
    if path.is_dir():
        raise InputError(path, "is a directory, not an image file")
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise InputError(path, "image file not found") from None
    except OSError as exc:
        raise InputError(path, f"cannot read image file ({_describe(exc)})") from None
    if size == 0:
        raise InputError(path, "empty file (0 bytes), not an image")
    try:
        with _OPEN_LOCK, warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(path)
    except Image.DecompressionBombError as exc:
        raise InputError(
            path, f"image too large: {_describe(exc)} (ocrkit reads at most {MAX_PIXELS} pixels)"
        ) from None
    except UnidentifiedImageError:
        raise InputError(path, "not an image file (no image format recognises its bytes)") from None
    except Exception as exc:  # noqa: BLE001  (any failure of a decoder on a file is the file's fault)
        raise InputError(path, f"cannot decode image ({_describe(exc)})") from None
    with im:
        if im.mode not in _EIGHT_BIT_MODES:
            raise InputError(
                path, f"{im.mode} pixels (more than 8 bits a channel): ocrkit reads 8-bit images, convert it first"
            )
        w, h = im.size
        if w < 1 or h < 1 or w > MAX_SIDE or h > MAX_SIDE or w * h > MAX_PIXELS:
            raise InputError(
                path,
                f"image is {w}x{h} pixels: ocrkit reads at most {MAX_SIDE} pixels a side and "
                f"{MAX_PIXELS} pixels in all",
            )
        yield im


def _orientation(im: Image.Image, path: Path) -> int:
    try:
        return int(im.getexif().get(0x0112, 1))
    except Exception as exc:  # noqa: BLE001
        raise InputError(path, f"truncated or corrupt image data (its EXIF orientation: {_describe(exc)})") from None


def load_image(path: str | Path) -> np.ndarray:
    """Decode to an RGB uint8 array (H, W, 3), applying the EXIF orientation.

    The EXIF rotation is applied because annotations are drawn on the image as people see it
    (a known Total-Text image carries an EXIF rotation that otherwise breaks alignment).
    """
    path = Path(path)
    with _opened(path) as im:
        try:
            upright = ImageOps.exif_transpose(im)
            return np.asarray(upright.convert("RGB"))
        except Exception as exc:  # noqa: BLE001
            raise InputError(path, f"truncated or corrupt image data ({_describe(exc)})") from None


def check_image(path: str | Path) -> tuple[int, int]:
    """(H, W) as ``load_image`` decodes it, once the file has passed the checks in the module
    docstring (header, limits, EXIF, compressed data read to the end); InputError otherwise."""
    path = Path(path)
    with _opened(path) as im:
        w, h = im.size
        orientation = _orientation(im, path)
        png = im.format == "PNG"
        try:
            if im.format == "JPEG":
                im.draft("RGB", (max(1, w // 8), max(1, h // 8)))  # the whole stream at 1/8 scale
                im.load()
            elif not png:
                im.load()
        except Exception as exc:  # noqa: BLE001
            raise InputError(path, f"truncated or corrupt image data ({_describe(exc)})") from None
    if png:
        try:
            with Image.open(path) as fresh:  # verify must come straight after open
                fresh.verify()  # every chunk read and its CRC checked; nothing inflated
        except Exception as exc:  # noqa: BLE001
            raise InputError(path, f"truncated or corrupt image data ({_describe(exc)})") from None
    return (w, h) if orientation in _TRANSPOSING_ORIENTATIONS else (h, w)


def check_images(paths: Sequence[str | Path]) -> list[tuple[int, int] | InputError]:
    """``check_image`` of every path, in threads (the decoders release the GIL), in input order:
    each entry is the image's (H, W) or the InputError that names what is wrong with it."""

    def one(path: str | Path) -> tuple[int, int] | InputError:
        try:
            return check_image(path)
        except InputError as err:
            return err

    if len(paths) < 2:
        return [one(p) for p in paths]
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1, len(paths))) as pool:
        return list(pool.map(one, paths))


def resize_content(image: np.ndarray, transform: ResizeTransform) -> np.ndarray:
    """Resize to the transform's content size (area when shrinking, bilinear when growing)."""
    ch, cw = transform.content_size
    interp = cv2.INTER_AREA if ch < image.shape[0] else cv2.INTER_LINEAR
    return cv2.resize(image, (cw, ch), interpolation=interp)


def apply_resize(image: np.ndarray, transform: ResizeTransform, fill: int = 0) -> np.ndarray:
    """Resize to the transform's content size and pad bottom/right to its padded size."""
    ch, cw = transform.content_size
    ph, pw = transform.padded_size
    resized = resize_content(image, transform)
    if (ph, pw) == (ch, cw):
        return resized
    out = np.full((ph, pw, *image.shape[2:]), fill, dtype=image.dtype)
    out[:ch, :cw] = resized
    return out


def normalization(mean: Sequence[float], std: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """(offset, scale), float32 per channel: normalised = (x - offset) · scale, i.e.
    (x / 255 - mean) / std. Shared by ``normalize`` and the eval path's on-device normalisation,
    which apply the same two correctly rounded float32 operations and so agree bit for bit."""
    offset = np.array([255.0 * m for m in mean], np.float32)
    scale = np.array([1.0 / (255.0 * s) for s in std], np.float32)
    return offset, scale


def normalize_on_device(images: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """uint8 (or float32 in [0, 255]) N×3×H×W on any device → float32, normalised with the same
    two float32 operations as ``normalize``, so the two agree bit for bit. A float32 input is
    normalised in place."""
    import torch  # here, so that checking and decoding images does not load torch

    offset, scale = (torch.from_numpy(v).to(images.device)[:, None, None] for v in normalization(mean, std))
    return images.float().sub_(offset).mul_(scale)


def normalize(
    image: np.ndarray, mean: Sequence[float], std: Sequence[float], out: np.ndarray | None = None
) -> np.ndarray:
    """uint8 HWC RGB → float32 CHW, normalised per channel (``normalization``): the host-side
    reference of ``normalize_on_device``, which training and evaluation use (tests hold the two
    equal bit for bit).

    Written into ``out`` (3×h×w) when given. Two correctly rounded float32 operations per value,
    so the result does not depend on the memory layout (OpenCV's fused ``addWeighted`` was 2×
    faster but rounds its SIMD body and scalar tail differently). 1.0 ms for a 640×640 image
    here, where the former per-channel lookup table took 1.9 ms.
    """
    h, w, channels = image.shape
    if out is None:
        out = np.empty((channels, h, w), np.float32)
    offset, scale = normalization(mean, std)
    for c, plane in enumerate(cv2.split(image)):  # contiguous planes: faster than strided channel views
        np.subtract(plane, offset[c], out=out[c], dtype=np.float32)
        np.multiply(out[c], scale[c], out=out[c])
    return out


def eval_content(path: str | Path, data_cfg: DataConfig) -> tuple[np.ndarray, ResizeTransform]:
    """An image as the eval path feeds it: decoded, resized to its content size (uint8 HWC RGB,
    no padding), and the recorded transform that maps predictions back to original pixels."""
    image = load_image(path)
    transform = plan_resize(image.shape[:2], data_cfg.eval_size, data_cfg.keep_ratio, data_cfg.pad_multiple)
    return resize_content(image, transform), transform


def image_size(path: str | Path) -> tuple[int, int]:
    """(H, W) as decoded by ``load_image`` (EXIF applied), reading only the header."""
    path = Path(path)
    with _opened(path) as im:
        w, h = im.size
        orientation = _orientation(im, path)
    return (w, h) if orientation in _TRANSPOSING_ORIENTATIONS else (h, w)

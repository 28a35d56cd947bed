"""Image decoding (EXIF orientation applied) and resizing into network space."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ocrkit.core.errors import InputError
from ocrkit.core.geometry.transform import ResizeTransform


def load_image(path: str | Path) -> np.ndarray:
    """Decode to an RGB uint8 array (H, W, 3), applying the EXIF orientation.

    The EXIF rotation is applied because annotations are drawn on the image as people see it
    (a known Total-Text image carries an EXIF rotation that otherwise breaks alignment).
    """
    path = Path(path)
    try:
        with Image.open(path) as im:
            im = ImageOps.exif_transpose(im)
            return np.asarray(im.convert("RGB"))
    except FileNotFoundError:
        raise InputError(path, "image file not found") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise InputError(path, f"cannot decode image ({exc.__class__.__name__}: {exc})") from None


def apply_resize(image: np.ndarray, transform: ResizeTransform, fill: int = 0) -> np.ndarray:
    """Resize to the transform's content size and pad bottom/right to its padded size."""
    ch, cw = transform.content_size
    ph, pw = transform.padded_size
    interp = cv2.INTER_AREA if ch < image.shape[0] else cv2.INTER_LINEAR
    resized = cv2.resize(image, (cw, ch), interpolation=interp)
    if (ph, pw) == (ch, cw):
        return resized
    out = np.full((ph, pw, *image.shape[2:]), fill, dtype=image.dtype)
    out[:ch, :cw] = resized
    return out


def _normalisation_table(mean: tuple[float, ...], std: tuple[float, ...]) -> np.ndarray:
    """(channels, 256) float32: the normalised value of every uint8 level, per channel."""
    levels = np.arange(256, dtype=np.float32) / 255.0
    return (levels[None, :] - np.asarray(mean, np.float32)[:, None]) / np.asarray(std, np.float32)[:, None]


def normalize(image: np.ndarray, mean: tuple[float, ...], std: tuple[float, ...]) -> np.ndarray:
    """uint8 HWC RGB → float32 CHW, normalised per channel.

    A 256-entry lookup per channel instead of float arithmetic over every pixel: the same values
    (computed once per level in float32), about 2× faster on a 640×640 image.
    """
    table = _normalisation_table(tuple(mean), tuple(std))
    return np.stack([table[c][image[..., c]] for c in range(image.shape[2])])


_TRANSPOSING_ORIENTATIONS = {5, 6, 7, 8}  # EXIF orientations that swap width and height


def image_size(path: str | Path) -> tuple[int, int]:
    """(H, W) as decoded by ``load_image`` (EXIF applied), reading only the header."""
    path = Path(path)
    try:
        with Image.open(path) as im:
            w, h = im.size
            orientation = im.getexif().get(0x0112, 1)
    except FileNotFoundError:
        raise InputError(path, "image file not found") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise InputError(path, f"cannot decode image ({exc.__class__.__name__}: {exc})") from None
    return (w, h) if orientation in _TRANSPOSING_ORIENTATIONS else (h, w)

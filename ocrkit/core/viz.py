"""Overlay PNGs a person can look at: maps over the image, and polygons drawn on it."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

CARE_COLOUR = (0, 200, 0)  # RGB
DONT_CARE_COLOUR = (230, 40, 40)
DETECTION_COLOUR = (30, 120, 255)

# The evaluation report's overlay (engine/report.py): one colour per outcome of the ICDAR-2015
# matching, picked to stay apart from each other on photographs (RGB).
REPORT_COLOURS = {
    "gt_matched": (0, 170, 0),  # care ground truth with a match: drawn thick, under its detection
    "gt_missed": (255, 140, 0),  # care ground truth without a match: a miss
    "det_matched": DETECTION_COLOUR,  # a true positive
    "det_false": (220, 0, 0),  # a care detection without a match: a false positive
    "gt_dontcare": (160, 160, 160),  # ### or illegible ground truth
    "det_dontcare": (180, 60, 230),  # a detection lying mostly in a don't-care region
    "invalid": (0, 200, 220),  # a polygon the metric leaves out (zero area, self-intersecting)
}


def draw_polygons(
    image: np.ndarray, polygons: list[np.ndarray], colour: tuple[int, int, int], thickness: int = 2
) -> np.ndarray:
    out = np.ascontiguousarray(image.copy())
    pts = [np.rint(np.asarray(p)).astype(np.int32).reshape(-1, 1, 2) for p in polygons]
    if pts:
        cv2.polylines(out, pts, isClosed=True, color=colour, thickness=thickness, lineType=cv2.LINE_AA)
    return out


def draw_ground_truth(
    image: np.ndarray, polygons: list[np.ndarray], ignore: list[bool], thickness: int = 2
) -> np.ndarray:
    out = draw_polygons(image, [p for p, i in zip(polygons, ignore, strict=True) if not i], CARE_COLOUR, thickness)
    return draw_polygons(out, [p for p, i in zip(polygons, ignore, strict=True) if i], DONT_CARE_COLOUR, thickness)


def heatmap_overlay(image: np.ndarray, values: np.ndarray, alpha: float = 0.55) -> np.ndarray:
    """Blend a [0, 1] map (colour-mapped, JET) over an RGB image of the same size."""
    scaled = np.clip(values * 255.0, 0, 255).astype(np.uint8)
    colour = cv2.cvtColor(cv2.applyColorMap(scaled, cv2.COLORMAP_JET), cv2.COLOR_BGR2RGB)
    return cv2.addWeighted(image, 1 - alpha, colour, alpha, 0)


def save_png(path: str | Path, rgb: np.ndarray) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)):
        raise OSError(f"could not write {path}")
    return path


def colour_hex(colour: tuple[int, int, int]) -> str:
    """``#rrggbb`` for an RGB tuple (the report's legend and table use the overlay's colours)."""
    return "#" + "".join(f"{int(c):02x}" for c in colour)


def fit_for_display(image: np.ndarray, max_width: int, max_zoom: int = 4) -> tuple[np.ndarray, float]:
    """The image at a width fit to look at, and the scale applied: a wider one shrunk to
    ``max_width``; a narrower one enlarged by the largest whole factor (up to ``max_zoom``) that
    stays within it, so that lines drawn on a small image do not drown it."""
    height, width = image.shape[:2]
    scale = max_width / width if width > max_width else float(min(max_zoom, max_width // width))
    if scale == 1.0:
        return image, scale
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    return cv2.resize(image, size, interpolation=interpolation), scale


def encode_jpeg(rgb: np.ndarray, quality: int = 85) -> bytes:
    """JPEG bytes of an RGB image (much smaller than a PNG for photographs)."""
    ok, data = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError(f"could not encode a {rgb.shape} image as JPEG")
    return data.tobytes()

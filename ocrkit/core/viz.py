"""Overlay PNGs a person can look at: maps over the image, and polygons drawn on it."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

CARE_COLOUR = (0, 200, 0)  # RGB
DONT_CARE_COLOUR = (230, 40, 40)
DETECTION_COLOUR = (30, 120, 255)


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

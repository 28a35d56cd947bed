"""The recorded forward transform of an image into network space, and its exact inverse.

Predictions are scored in ORIGINAL image coordinates: every resize keeps its per-axis scale and
padding so that boxes found on the network input map back exactly (x and y scaled separately).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ResizeTransform:
    """original (h, w) → resized content (h, w) at the top-left of a padded (h, w) canvas."""

    orig_size: tuple[int, int]
    content_size: tuple[int, int]
    padded_size: tuple[int, int]

    @property
    def scale_x(self) -> float:
        return self.content_size[1] / self.orig_size[1]

    @property
    def scale_y(self) -> float:
        return self.content_size[0] / self.orig_size[0]

    def forward(self, points: np.ndarray) -> np.ndarray:
        """Original-image points → network-input points (float32)."""
        pts = np.asarray(points, dtype=np.float32).reshape(-1, 2)
        return pts * np.array([self.scale_x, self.scale_y], dtype=np.float32)

    def inverse(self, points: np.ndarray) -> np.ndarray:
        """Network-input points → original-image points (float, unrounded)."""
        pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        return pts / np.array([self.scale_x, self.scale_y])

    def to_original(self, points: np.ndarray) -> np.ndarray:
        """Inverse, rounded to whole pixels and clipped to the original image."""
        h, w = self.orig_size
        pts = np.rint(self.inverse(points))
        pts[:, 0] = np.clip(pts[:, 0], 0, w - 1)
        pts[:, 1] = np.clip(pts[:, 1], 0, h - 1)
        return pts.astype(np.int32)


def _round_up(value: int, multiple: int) -> int:
    return int(math.ceil(value / multiple) * multiple)


def plan_resize(
    orig_size: tuple[int, int],
    target_size: tuple[int, int],
    keep_ratio: bool,
    pad_multiple: int = 32,
    *,
    pad_to_target: bool = False,
) -> ResizeTransform:
    """How an image of ``orig_size`` enters a network whose input is at most ``target_size``.

    ``keep_ratio=False`` stretches to exactly the target (DB's ICDAR-2015 protocol at 736×1280);
    ``keep_ratio=True`` scales to fit inside the target (the content never exceeds it: the
    rounded side that fits is the target's side itself) and pads bottom/right to a multiple of
    ``pad_multiple`` (mmocr's choice, for evaluation: as little padding as the network allows).
    ``pad_to_target=True`` pads to exactly ``target_size`` instead (training: every sample of a
    batch must have the same size to be stacked); ``pad_multiple`` is then unused.
    """
    (h, w), (th, tw) = orig_size, target_size
    if h <= 0 or w <= 0:
        raise ValueError(f"empty image of size {orig_size}")
    if not keep_ratio:
        return ResizeTransform((h, w), (th, tw), (th, tw))
    scale = min(th / h, tw / w)
    ch, cw = max(1, round(h * scale)), max(1, round(w * scale))
    if pad_to_target:
        return ResizeTransform((h, w), (ch, cw), (th, tw))
    return ResizeTransform((h, w), (ch, cw), (_round_up(ch, pad_multiple), _round_up(cw, pad_multiple)))

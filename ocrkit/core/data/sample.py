"""The one internal sample type every reader produces and every consumer takes."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class Sample:
    """One image and its text regions.

    ``polygons[i]`` is a float32 array of shape (n_i, 2) in original-image pixel coordinates
    (x, y); ``ignore[i]`` is True for don't-care regions (``###`` or illegible).
    """

    image_path: Path
    polygons: list[np.ndarray]
    ignore: list[bool]
    texts: list[str] = field(default_factory=list)
    gt_path: Path | None = None

    def __post_init__(self) -> None:
        if len(self.polygons) != len(self.ignore):
            raise ValueError("polygons and ignore flags differ in length")

    @property
    def stem(self) -> str:
        return self.image_path.stem

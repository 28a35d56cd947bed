"""RAM preload of decoded training images, up to a byte cap.

Loaded in the main process before the DataLoader forks its workers, which then read the arrays
through copy-on-write pages. Images are taken in dataset order until the next one would pass the
cap; the rest are read through the store (or decoded) as usual.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from ocrkit.core.data.cached import ImageLayer
from ocrkit.core.data.sample import Sample


@dataclass
class Preload:
    """Decoded training images held in RAM (up to ``cache.preload_bytes``)."""

    cap_bytes: int
    images: dict[str, np.ndarray] = field(default_factory=dict)
    bytes_used: int = 0
    total: int = 0

    @property
    def loaded(self) -> int:
        return len(self.images)

    def describe(self) -> str:
        mb = 1e6
        return (
            f"RAM preload: {self.loaded}/{self.total} images fit ({self.bytes_used / mb:.1f} MB of the "
            f"{self.cap_bytes / mb:.1f} MB cap)"
        )


def preload_images(samples: Sequence[Sample], images: ImageLayer, cap_bytes: int) -> Preload:
    result = Preload(cap_bytes, total=len(samples))
    for sample in samples:
        key = str(sample.image_path)
        if key in result.images:
            continue
        image = images.load(sample.image_path)
        if result.bytes_used + image.nbytes > cap_bytes:
            break
        image.flags.writeable = False  # shared by every worker: never modified in place
        result.images[key] = image
        result.bytes_used += image.nbytes
    return result

"""A lap timer for one training sample's stages (``ocrkit bench data``'s breakdown).

Every lap ends where the next begins (one clock reading serves both), so the stages of a sample
add up to the sample's whole time exactly: nothing falls between them unaccounted.
"""

from __future__ import annotations

import time
from collections import defaultdict


class StageClock:
    """``lap(stage)`` charges the time since the previous lap (or ``start``) to ``stage``."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.whole = 0.0
        self._last = time.perf_counter()

    def start(self) -> None:
        self._last = time.perf_counter()

    def lap(self, stage: str) -> None:
        now = time.perf_counter()
        self.seconds[stage] += now - self._last
        self.whole += now - self._last
        self._last = now

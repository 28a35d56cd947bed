"""The up-front "will the store hold this run's data?" estimate."""

from __future__ import annotations

import random
from collections.abc import Sequence

from ocrkit.core.config import DataConfig
from ocrkit.core.data.image import image_size
from ocrkit.core.data.sample import Sample
from ocrkit.core.geometry.transform import plan_resize


def estimate_store_bytes(
    train: Sequence[Sample], val: Sequence[Sample], data_cfg: DataConfig, stored_maps: bool, probe: int = 64
) -> int:
    """Bytes the store needs to hold every entry one run makes, from image headers (a random
    ``probe`` of them, scaled up)."""

    def mean_bytes(samples: Sequence[Sample], per_image) -> float:
        if not samples:
            return 0.0
        chosen = random.Random(0).sample(list(samples), min(probe, len(samples)))
        return sum(per_image(image_size(s.image_path)) for s in chosen) / len(chosen)

    def eval_tensor(size: tuple[int, int]) -> int:
        t = plan_resize(size, data_cfg.eval_size, data_cfg.keep_ratio, data_cfg.pad_multiple)
        return t.content_size[0] * t.content_size[1] * 3  # uint8 RGB (tensor kind v2)

    th, tw = data_cfg.train_size
    maps_per_sample = th * tw * 4 + 3 * ((th * tw + 7) // 8) if stored_maps else 0
    total = len(train) * (mean_bytes(train, lambda hw: hw[0] * hw[1] * 3) + maps_per_sample)
    total += len(val) * mean_bytes(val, eval_tensor)
    return int(total)

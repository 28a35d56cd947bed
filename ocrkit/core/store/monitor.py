"""Per-epoch store statistics for training, and the up-front "will it fit?" estimate."""

from __future__ import annotations

import random
from collections.abc import Sequence

from ocrkit.core.config import DataConfig
from ocrkit.core.data.image import image_size
from ocrkit.core.data.sample import Sample
from ocrkit.core.geometry.transform import plan_resize
from ocrkit.core.store.store import EVENTS, KINDS, Store


def lookups(events: dict[str, int]) -> int:
    return sum(events[e] for e in ("hits", "misses", "stale", "corrupt", "fallbacks"))


def hit_rate(events: dict[str, int]) -> float | None:
    n = lookups(events)
    return events["hits"] / n if n else None


class EpochCacheStats:
    """Differences of the persisted counters over one epoch (workers flush when they exit, which
    is before the epoch's loader is gone). Counts from other processes using the same store at
    the same time are included."""

    def __init__(self, store: Store):
        self.store = store
        self.before: dict[str, dict[str, int]] | None = None
        self.filled: set[str] = set()  # layers that have had a full epoch to fill

    def begin(self) -> None:
        self.before = self.store.read_stats()

    def end(self, epoch: int) -> tuple[dict[str, float], str | None, list[str]]:
        """(scalars for the logger, one console line, warnings)."""
        if self.before is None:
            return {}, None, []
        now = self.store.read_stats()
        values: dict[str, float] = {}
        parts, problems = [], []
        for kind in KINDS:
            delta = {e: now[kind][e] - self.before[kind][e] for e in EVENTS}
            n = lookups(delta)
            if not n:
                continue
            rate = delta["hits"] / n
            values[f"cache/{kind}_hit_rate"] = rate
            values[f"cache/{kind}_failed_writes"] = float(delta["failed_writes"])
            extra = "".join(f", {delta[e]} {e.replace('_', ' ')}" for e in ("corrupt", "fallbacks", "failed_writes")
                            if delta[e])
            parts.append(f"{kind} {rate:.0%} ({delta['hits']}/{n}{extra})")
            if delta["hits"] == 0 and kind in self.filled:
                problems.append(
                    f"[cache] the {kind} layer's hit rate is still 0 in epoch {epoch}, after a full epoch to fill "
                    f"it ({delta['failed_writes']} failed writes): is cache.size_limit_gb too small for the data, "
                    "or is something changing the inputs every epoch? Run `ocrkit cache health`."
                )
            self.filled.add(kind)
        self.before = None
        line = f"cache epoch {epoch}: " + ", ".join(parts) if parts else None
        return values, line, problems


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
        return t.content_size[0] * t.content_size[1] * 3 * 4

    th, tw = data_cfg.train_size
    maps_per_sample = th * tw * 4 + 3 * (th * tw + 7) // 8 if stored_maps else 0
    total = len(train) * (mean_bytes(train, lambda hw: hw[0] * hw[1] * 3) + maps_per_sample)
    total += len(val) * mean_bytes(val, eval_tensor)
    return int(total)

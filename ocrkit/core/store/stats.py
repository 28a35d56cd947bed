"""Lookup statistics: hit rates, and their differences over one training epoch."""

from __future__ import annotations

from ocrkit.core.store.events import EVENTS
from ocrkit.core.store.store import Store, StoreUnavailable


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
        self.unreadable: str | None = None  # why the statistics cannot be read (then: no report)
        self._said = False

    def _read(self) -> dict[str, dict[str, int]] | None:
        """The persisted counters, or None when the store cannot be read: training goes on
        without the per-epoch report (the layers go on without the store)."""
        try:
            return self.store.read_stats()
        except StoreUnavailable as exc:
            self.unreadable = str(exc)
            return None

    def begin(self) -> None:
        self.before = self._read()

    def end(self, epoch: int) -> tuple[dict[str, float], str | None, list[str]]:
        """(scalars for the logger, one console line, warnings)."""
        now = self._read() if self.before is not None else None
        if self.before is None or now is None:
            self.before = None
            if self.unreadable is not None and not self._said:
                self._said = True
                return {}, None, [f"no store hit rates this run: {self.unreadable}"]
            return {}, None, []
        values: dict[str, float] = {}
        parts, problems = [], []
        for kind in self.store.kinds:
            delta = {e: now[kind][e] - self.before[kind][e] for e in EVENTS}
            n = lookups(delta)
            if not n:
                continue
            rate = delta["hits"] / n
            values[f"cache/{kind}_hit_rate"] = rate
            values[f"cache/{kind}_failed_writes"] = float(delta["failed_writes"])
            extra = "".join(
                f", {delta[e]} {e.replace('_', ' ')}" for e in ("corrupt", "fallbacks", "failed_writes") if delta[e]
            )
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

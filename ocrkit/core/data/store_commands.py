"""What the ``ocrkit cache ...`` commands do, as functions: status, health, validate, clear and
export of the data store (the kinds this package keeps in it: data/cached.py)."""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ocrkit.core.config import DataConfig, MapsConfig, OcrkitConfig
from ocrkit.core.data.cached import (
    check_image,
    check_maps,
    check_tensor,
    config_id,
    image_config,
    maps_config,
    produce_image,
    produce_maps,
    produce_tensor,
    source_digest,
    tensor_config,
)
from ocrkit.core.data.image import load_image
from ocrkit.core.data.kinds import KINDS
from ocrkit.core.errors import InputError, OcrkitError
from ocrkit.core.progress import track
from ocrkit.core.store.codec import CorruptEntry, decode
from ocrkit.core.store.events import EVENTS
from ocrkit.core.store.stats import hit_rate, lookups
from ocrkit.core.store.store import Store, parse_tag

# ---------------------------------------------------------------- status


def current_config_ids(cfg: OcrkitConfig) -> dict[str, str]:
    """The config id each kind's entries get under this config."""
    return {
        "image": config_id(image_config()),
        "maps": config_id(maps_config(cfg.data, cfg.maps)),
        "tensor": config_id(tensor_config(cfg.data)),
    }


def status(store: Store, cfg: OcrkitConfig) -> dict[str, Any]:
    current = current_config_ids(cfg)
    groups = []
    for tag, (n, size) in sorted(store.tag_summary().items(), key=lambda item: str(item[0])):
        kind, version, cid = parse_tag(tag)
        groups.append(
            {
                "kind": kind,
                "version": version,
                "config": cid,
                "entries": n,
                "bytes": size,
                "current_version": kind in KINDS and version == store.version_of(kind),
                "current_config": current.get(kind) == cid,
            }
        )
    return {
        "location": str(store.root),
        "size_bytes": store.volume(),
        "size_limit_bytes": store.size_limit_bytes,
        "entries": sum(g["entries"] for g in groups),
        "groups": groups,
        "current": {kind: {"version": store.version_of(kind), "config": current[kind]} for kind in KINDS},
    }


# ---------------------------------------------------------------- health


HEALTHY, WARN, FAIL = "HEALTHY", "WARN", "FAIL"
EXIT_CODES = {HEALTHY: 0, WARN: 1, FAIL: 2}


def health(store: Store, cfg: OcrkitConfig) -> dict[str, Any]:
    """Verdict FAIL: writes failing, or a layer that missed more than twice as often as it holds
    entries without a single hit (entries are not kept: evicted, or inputs change every time);
    WARN: the store at its size limit, over 20% of entries from older versions, corrupt entries,
    fallbacks, or stale reads."""
    info = status(store, cfg)
    stats = store.read_stats()
    held = {kind: sum(g["entries"] for g in info["groups"] if g["kind"] == kind) for kind in KINDS}
    problems: list[tuple[str, str]] = []
    kinds = {}
    for kind in KINDS:
        events = stats[kind]
        rate = hit_rate(events)
        kinds[kind] = {**events, "lookups": lookups(events), "hit_rate": rate, "entries": held[kind]}
        if events["failed_writes"]:
            problems.append(
                (
                    FAIL,
                    f"{kind}: {events['failed_writes']} failed writes (disk full, permissions, "
                    "or lock timeouts: raise cache.timeout_s)",
                )
            )
        if events["hits"] == 0 and events["misses"] > 2 * max(1, held[kind]):
            problems.append(
                (
                    FAIL,
                    f"{kind}: {events['misses']} misses, no hit, {held[kind]} entries held: "
                    "entries are not kept (size limit?) or the inputs change on every read",
                )
            )
        if events["stale"]:
            problems.append((WARN, f"{kind}: {events['stale']} reads found an entry made from other inputs"))
        if events["corrupt"]:
            problems.append((WARN, f"{kind}: {events['corrupt']} corrupt entries found and regenerated"))
        if events["fallbacks"]:
            problems.append((WARN, f"{kind}: {events['fallbacks']} lookups fell back to computing (store busy)"))
    stale = sum(g["entries"] for g in info["groups"] if not g["current_version"])
    stale_share = stale / info["entries"] if info["entries"] else 0.0
    if stale_share > 0.2:
        problems.append((WARN, f"{stale_share:.0%} of entries are from older versions: `ocrkit cache clear --stale`"))
    fill = info["size_bytes"] / info["size_limit_bytes"] if info["size_limit_bytes"] else 0.0
    if fill > 0.95:
        problems.append((WARN, f"the store is at {fill:.0%} of cache.size_limit_gb: entries are being evicted"))
    verdict = FAIL if any(p[0] == FAIL for p in problems) else WARN if problems else HEALTHY
    return {
        **info,
        "kinds": kinds,
        "stale_entries": stale,
        "stale_share": stale_share,
        "fill": fill,
        "problems": [{"level": level, "message": message} for level, message in problems],
        "verdict": verdict,
    }


# ---------------------------------------------------------------- validate


@dataclass
class ValidateReport:
    checked: int = 0
    ok: int = 0
    corrupt: list[str] = field(default_factory=list)
    stale: list[str] = field(default_factory=list)  # older version, or the source changed or vanished
    mismatched: list[str] = field(default_factory=list)  # recomputed value differs: a producer bug
    deleted: int = 0
    total: int = 0
    orphans: int = 0  # value files no entry names (a writer killed before recording it): space only
    orphan_bytes: int = 0
    orphans_deleted: int = 0

    @property
    def bad(self) -> int:
        return len(self.corrupt) + len(self.stale) + len(self.mismatched)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "bad": self.bad}


def _recompute(kind: str, fields: dict[str, Any], path: Path) -> dict[str, np.ndarray]:
    if kind == "image":
        return produce_image(path)[0]
    if kind == "tensor":
        data_cfg = DataConfig(
            eval_size=tuple(fields["eval_size"]), keep_ratio=fields["keep_ratio"], pad_multiple=fields["pad_multiple"]
        )
        return produce_tensor(path, data_cfg)[0]
    if kind == "maps":
        polygons = [np.asarray(p, np.float32).reshape(-1, 2) for p in fields["polygons"]]
        return produce_maps(
            load_image(path), polygons, fields["ignore"], tuple(fields["train_size"]), MapsConfig(**fields["maps"])
        )[1]
    raise CorruptEntry(f"unknown kind {kind!r}")


def _shape_problem(kind: str, arrays, meta, fields) -> str | None:
    if kind == "image":
        return check_image(arrays)
    if kind == "maps":
        return check_maps(arrays, tuple(fields["train_size"]))
    return check_tensor(arrays, meta)


def _validate_entry(store: Store, key: str, report: ValidateReport) -> bool:
    """True when the entry is sound and current; records what is wrong otherwise."""
    kind = key.split("/", 1)[0]
    blob = store.read_raw(key)
    if blob is None:
        if store.has_key(key):  # listed, but its value file is gone
            report.corrupt.append(key)
            return False
        return True  # evicted meanwhile
    try:
        header, arrays = decode(blob)
        fields, meta = header["fields"], header.get("meta", {})
        if header.get("kind") != kind or key.split("/")[1] != header.get("version"):
            raise CorruptEntry("key and header disagree")
        problem = _shape_problem(kind, arrays, meta, fields)
        if problem:
            raise CorruptEntry(problem)
    except (CorruptEntry, KeyError, TypeError, ValueError):
        report.corrupt.append(key)
        return False
    if kind not in KINDS or header["version"] != store.version_of(kind):
        report.stale.append(key)
        return False
    path = Path(meta.get("path", ""))
    try:
        if not path.is_file() or source_digest(path) != fields["source"]:
            report.stale.append(key)
            return False
        fresh = _recompute(kind, fields, path)
    except (InputError, OSError, CorruptEntry):
        report.stale.append(key)
        return False
    if set(fresh) != set(arrays) or any(not np.array_equal(arrays[k], fresh[k]) for k in fresh):
        report.mismatched.append(key)
        return False
    return True


def validate(
    store: Store, sample: int | None, fix: bool, progress: bool = True, seed: int = 0, orphan_age_s: float = 60.0
) -> ValidateReport:
    """Re-check ``sample`` random entries (all with None): checksum and shapes, version, source
    digest, and a recomputation compared exactly. ``fix`` deletes every bad entry, and the value
    files no entry names that are older than ``orphan_age_s`` (younger ones may be a write
    another process is about to record)."""
    keys = store.keys()
    report = ValidateReport(total=len(keys))
    if sample is not None and sample < len(keys):
        keys = random.Random(seed).sample(keys, sample)
    for key in track(keys, "validating", total=len(keys), enabled=progress):
        report.checked += 1
        if _validate_entry(store, key, report):
            report.ok += 1
        elif fix and store.delete(key):
            report.deleted += 1
    for path in store.orphan_files(orphan_age_s):
        report.orphans += 1
        try:
            report.orphan_bytes += path.stat().st_size
            if fix:
                path.unlink()
                report.orphans_deleted += 1
        except FileNotFoundError:
            pass
    return report


# ---------------------------------------------------------------- clear / export


def clear(store: Store, everything: bool, stale: bool, kind: str | None) -> int:
    """Delete entries: all of them (and the statistics), those of older versions, or one kind's."""
    if sum([everything, stale, kind is not None]) != 1:
        raise OcrkitError("say what to clear: exactly one of --all, --stale, --kind K")
    if everything:
        removed = store.clear_entries()
        store.reset_stats()
        return removed
    if kind is not None and kind not in KINDS:
        raise OcrkitError(f"--kind: unknown kind {kind!r}; expected one of {', '.join(KINDS)}")
    removed = 0
    for tag in store.tag_summary():
        tag_kind, version, _ = parse_tag(tag)
        current = tag_kind in KINDS and version == store.version_of(tag_kind)
        if (stale and not current) or (kind is not None and tag_kind == kind):
            removed += store.evict(tag) if tag is not None else _delete_untagged(store)
    return removed


def _delete_untagged(store: Store) -> int:
    return sum(store.delete(key) for key in store.keys() if store.tag_of(key) is None)


def export(store: Store, cfg: OcrkitConfig) -> dict[str, Any]:
    return {
        "status": status(store, cfg),
        "stats": store.read_stats(),
        "health": health(store, cfg)["verdict"],
        "events": list(EVENTS),
    }

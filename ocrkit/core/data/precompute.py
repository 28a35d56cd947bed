"""``ocrkit maps precompute``: the label maps of a whole dataset made once, into the store, by a
pool of processes (one writer per key; the store is process-safe)."""

from __future__ import annotations

import multiprocessing
import signal
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from ocrkit.core.config import DataConfig, MapsConfig, OcrkitConfig
from ocrkit.core.data.cached import MAP_BITS, MapsLayer, open_data_store, produce_maps, source_digest
from ocrkit.core.data.formats import load_dataset
from ocrkit.core.data.image import load_image
from ocrkit.core.data.sample import Sample
from ocrkit.core.errors import InputError, OcrkitError
from ocrkit.core.progress import track
from ocrkit.core.store.store import Store


@dataclass
class PrecomputeReport:
    total: int = 0
    present: int = 0
    computed: int = 0
    failed_writes: int = 0
    errors: list[str] = field(default_factory=list)


_worker: dict[str, Any] = {}


def _init_worker(store: Store, data_cfg: DataConfig, maps_cfg: MapsConfig) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and stops the pool
    _worker["layer"] = MapsLayer(store, data_cfg, maps_cfg)


def _precompute_one(sample: Sample) -> str:
    """ "present" | "computed" | "failed_write" | an error message."""
    layer: MapsLayer = _worker["layer"]
    store = layer.store
    assert store is not None  # precompute_maps always passes one
    try:
        fields = layer.fields(source_digest(sample.image_path), sample)
        if store.contains("maps", fields):
            return "present"
        _, maps = produce_maps(
            load_image(sample.image_path), sample.polygons, sample.ignore, layer.train_size, layer.maps_cfg
        )
        ok = store.write("maps", layer.config_id, fields, maps, {"path": str(sample.image_path)}, MAP_BITS, sync=True)
        return "computed" if ok else "failed_write"
    except InputError as exc:
        return str(exc)


def precompute_maps(
    samples: Sequence[Sample],
    data_cfg: DataConfig,
    maps_cfg: MapsConfig,
    store: Store,
    workers: int,
    progress: bool = True,
) -> PrecomputeReport:
    """Fill the maps of ``samples`` at the deterministic training geometry; present entries are
    skipped, so an interrupted run is finished by running it again."""
    report = PrecomputeReport(total=len(samples))
    outcomes: Iterator[str]
    if workers > 0:
        context = multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods() else None)
        with context.Pool(workers, _init_worker, (store, data_cfg, maps_cfg)) as pool:
            outcomes = pool.imap_unordered(_precompute_one, samples, chunksize=4)
            _tally(report, track(outcomes, "precomputing maps", total=len(samples), enabled=progress))
    else:
        _init_worker(store, data_cfg, maps_cfg)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        outcomes = (_precompute_one(s) for s in samples)
        _tally(report, track(outcomes, "precomputing maps", total=len(samples), enabled=progress))
    store.flush_stats()
    return report


def precompute_job(cfg: OcrkitConfig, workers: int, progress: bool = True) -> PrecomputeReport:
    store = open_data_store(cfg.cache)
    if store is None:
        raise OcrkitError("the store is disabled (cache.enabled = false): nowhere to precompute into")
    assert cfg.data.train is not None, "the caller checks that there is training data"
    samples = load_dataset(cfg.data.train, cfg.data.skip_bad).samples
    return precompute_maps(samples, cfg.data, cfg.maps, store, workers, progress)


def _tally(report: PrecomputeReport, outcomes) -> None:
    for outcome in outcomes:
        if outcome == "present":
            report.present += 1
        elif outcome == "computed":
            report.computed += 1
        elif outcome == "failed_write":
            report.failed_writes += 1
        else:
            report.errors.append(outcome)

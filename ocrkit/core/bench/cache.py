"""``ocrkit bench cache``: the validation path with no store, with an empty store (cold) and
with the store that cold epoch filled (warm), side by side in one process, repeated.

Two scopes: the validation data path alone (decode, resize, uint8 batch: what the store
replaces) and a full validation pass (the same plus on-device normalisation, the model,
post-processing and metric).
Each repeat runs none → cold (a fresh, empty store directory) → warm (the same store again).
One untimed pass first brings the source files into the OS page cache for every variant alike.
The empty store is created and opened before the cold epoch is timed: creating it happens once
per store and opening it once per process (``store_open_ms``, reported beside the epochs), where
an epoch's cost grows with its images.
"""

from __future__ import annotations

import shutil
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path

import torch

from ocrkit.core.config import OcrkitConfig
from ocrkit.core.data.cached import TensorLayer
from ocrkit.core.data.kinds import KIND_VERSIONS
from ocrkit.core.data.sample import Sample
from ocrkit.core.engine.inference import evaluate_model, prepared_batches
from ocrkit.core.paths import user_cache_dir
from ocrkit.core.store.store import Store

VARIANTS = ("none", "cold", "warm")


@dataclass
class CacheBenchRow:
    scope: str  # "data path" | "validation pass"
    images: int
    none_s: float
    cold_s: float
    warm_s: float
    warm_speedup: float  # cold / warm
    cold_overhead: float  # cold / none - 1
    warm_vs_none: float  # none / warm
    store_bytes: int
    store_create_ms: float  # once per store: a fresh directory's SQLite databases
    store_open_ms: float  # once per process: an existing store's handles


def data_path_epoch(paths: Sequence[Path], cfg: OcrkitConfig, store: Store | None) -> None:
    for _ in prepared_batches(paths, TensorLayer(store, cfg.data), cfg.train.eval_batch_size):
        pass


def validation_pass(model: torch.nn.Module, samples: Sequence[Sample], cfg: OcrkitConfig, store: Store | None) -> None:
    evaluate_model(
        model,
        samples,
        cfg.data,
        cfg.postprocess,
        next(model.parameters()).device,
        batch_size=cfg.train.eval_batch_size,
        store=store,
    )


def _timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _create_store(root: Path) -> None:
    _open_handles(Store(root, size_limit_bytes=10**12, kinds=KIND_VERSIONS)).close()


def _run_and_drain(run: Callable[[Store | None], None], store: Store) -> None:
    run(store)
    store.drain()  # until its writes are on disk


def compare(scope: str, images: int, run: Callable[[Store | None], None], repeats: int, workdir: Path) -> CacheBenchRow:
    run(None)  # page cache, allocator, lazy imports
    times: dict[str, list[float]] = {v: [] for v in (*VARIANTS, "create", "open")}
    store_bytes = 0
    for repeat in range(repeats):
        root = workdir / f"{scope.replace(' ', '_')}-{repeat}"
        shutil.rmtree(root, ignore_errors=True)
        times["create"].append(_timed(partial(_create_store, root)))
        store = Store(root, size_limit_bytes=10**12, kinds=KIND_VERSIONS)
        times["open"].append(_timed(partial(_open_handles, store)))
        times["none"].append(_timed(partial(run, None)))
        times["cold"].append(_timed(partial(_run_and_drain, run, store)))
        times["warm"].append(_timed(partial(run, store)))
        stats = store.read_stats()["tensor"]
        if stats["hits"] != images or stats["misses"] != images:
            raise RuntimeError(f"cache bench: expected {images} misses then {images} hits, got {stats}")
        store_bytes = store.volume()
        store.close()
        shutil.rmtree(root, ignore_errors=True)
    none, cold, warm, create, opened = (statistics.median(times[v]) for v in (*VARIANTS, "create", "open"))
    return CacheBenchRow(
        scope,
        images,
        none,
        cold,
        warm,
        cold / warm,
        cold / none - 1,
        none / warm,
        store_bytes,
        create * 1000,
        opened * 1000,
    )


def _open_handles(store: Store) -> Store:
    store.entries, store.stats  # noqa: B018 - opening the handles is the point
    return store


def run_cache_bench(
    cfg: OcrkitConfig, samples: Sequence[Sample], repeats: int, full_pass: bool, model: torch.nn.Module | None
) -> list[CacheBenchRow]:
    paths = [s.image_path for s in samples]
    # beside the configured store: the same filesystem a real run writes to
    parent = user_cache_dir(cfg.cache)
    parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="bench-cache-", dir=parent) as tmp:
        rows = [compare("data path", len(paths), lambda store: data_path_epoch(paths, cfg, store), repeats, Path(tmp))]
        if full_pass and model is not None:
            rows.append(
                compare(
                    "validation pass",
                    len(paths),
                    lambda store: validation_pass(model, samples, cfg, store),
                    repeats,
                    Path(tmp),
                )
            )
    return rows


def results_document(rows: list[CacheBenchRow], cfg: OcrkitConfig, repeats: int, data: str) -> dict:
    from ocrkit.core.bench.runs import bench_document

    return bench_document(
        "cache",
        repeats=repeats,
        data=data,
        eval_size=list(cfg.data.eval_size),
        targets={"warm_speedup_data_path": 6.0, "cold_overhead": 0.05},
        results=[asdict(r) for r in rows],
    )


def cache_bench_job(
    config_file: Path | None,
    sets: list[str] | None,
    data: str | None,
    repeats: int,
    full_pass: bool,
    checkpoint: Path | None,
    quiet: bool,
) -> tuple[list[CacheBenchRow], OcrkitConfig, str]:
    """Validation samples (``--data``, else data.val, else the built-in synthetic val set), and
    a model (a checkpoint with its own config, else a freshly initialised one: the weights do
    not change which work the store saves)."""
    from ocrkit.core.config import load_config
    from ocrkit.core.engine.device import resolve_device
    from ocrkit.core.engine.eval_job import load_for_inference
    from ocrkit.core.engine.train_job import load_samples, plan_data
    from ocrkit.core.model import build_model

    model = None
    if checkpoint is not None:
        loaded = load_for_inference(checkpoint, config_file, sets, {})
        cfg, model = loaded.cfg, loaded.model
    else:
        cfg = load_config(config_file, sets)
        if full_pass:
            torch.manual_seed(cfg.train.seed)
            model = build_model(cfg.model).to(resolve_device(cfg.train.device)).eval()
    if data is None and cfg.data.val is None:
        cfg = plan_data(cfg, overfit_batches=0, progress=not quiet).cfg  # the built-in set's paths
    source = data or cfg.data.val
    samples = load_samples(source, cfg.data.skip_bad, "validation")
    return run_cache_bench(cfg, samples, repeats, full_pass, model), cfg, str(source)

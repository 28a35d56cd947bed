"""``ocrkit bench data``: can the training data pipeline keep the model fed?

Two measurements on the same config, samples and machine:

1. The loader alone: decode → augment → DB maps → uint8 collate, through the real training
   ``DataLoader`` (one loader per epoch, as training builds it), for each source of decoded images
   (``files``: no store; ``store``: a warm store; ``preload``: the warm store plus RAM preload) and
   each worker count. Per epoch: the time to the first batch (worker start-up and first fill,
   paid again every epoch because workers are not persistent) and the steady images/s after it.
   Variants take turns within each repeat so that machine drift falls on all alike.
2. The model: short trainings (the real ``Trainer``, default source) per worker count, giving
   the step alone in images/s (what the model could consume) and the end-to-end images/s (the
   step plus the wait for its data). On a CPU the workers and the model share the cores, so the
   end-to-end figure, not the loader alone, decides the worker count there.

The store and the runs live in a scratch directory under the bench's output; the user's store is
not touched. With random augmentation the store supplies decoded images only (maps depend on the
crop); with augmentation off it supplies the maps too (``maps_from_store`` in the report).
"""

from __future__ import annotations

import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from ocrkit.core.bench.runs import bench_document, bench_setup, train_variant
from ocrkit.core.bench.timing import fixed_steps_variant
from ocrkit.core.config import OcrkitConfig
from ocrkit.core.data.cached import ImageLayer, open_data_store
from ocrkit.core.data.dataset import TrainDataset, build_train_loader, default_workers, pin_memory_for
from ocrkit.core.data.preload import preload_images
from ocrkit.core.data.sample import Sample
from ocrkit.core.errors import OcrkitError
from ocrkit.core.store.store import Store

SOURCES = ("files", "store", "preload")
MODEL_WARMUP_STEPS = 2  # first steps: allocator, worker start-up


@dataclass
class LoaderRow:
    source: str
    workers: int
    images_per_epoch: int
    first_batch_ms: float  # median over repeats: start-up + first fill
    images_per_s: float  # median over repeats: after the first batch
    epoch_images_per_s: float  # median over repeats: the whole epoch, start-up included


@dataclass
class ModelRow:
    workers: int
    steps: int
    step_images_per_s: float  # the optimizer step alone (median, warm-up left out)
    train_images_per_s: float  # step + wait for data (median, warm-up left out)
    data_wait_share: float  # 1 − train / step: the share of time the model waited for data


@dataclass
class DataBench:
    batch_size: int
    train_size: tuple[int, int]
    device: str
    maps_from_store: bool
    default_workers: int  # what an unset data.num_workers gives on this machine
    loader: list[LoaderRow] = field(default_factory=list)
    model: list[ModelRow] = field(default_factory=list)

    def best_loader(self) -> LoaderRow:
        return max(self.loader, key=lambda r: r.epoch_images_per_s)

    def verdict(self) -> str:
        if not self.model:
            return ""
        fastest_model = max(r.step_images_per_s for r in self.model)
        best = self.best_loader()
        ratio = best.epoch_images_per_s / fastest_model
        who = "data keeps up with the model" if ratio >= 1 else "DATA IS THE BOTTLENECK"
        end_to_end = max(self.model, key=lambda r: r.train_images_per_s)
        return (
            f"{who} (default data.num_workers here: {self.default_workers}): "
            f"best loader {best.epoch_images_per_s:.1f} img/s ({best.source}, {best.workers} workers) "
            f"vs model step {fastest_model:.1f} img/s ({ratio:.2f}x); best end-to-end "
            f"{end_to_end.train_images_per_s:.1f} img/s with {end_to_end.workers} workers"
        )


def _time_epoch(
    dataset: TrainDataset, cfg: OcrkitConfig, workers: int, epoch: int, pin_memory: bool
) -> tuple[float, float, float]:
    """(first batch s, steady img/s, epoch img/s) of one epoch through a fresh training loader."""
    loader = build_train_loader(
        dataset,
        cfg.train.batch_size,
        workers,
        cfg.train.seed,
        epoch,
        pin_memory=pin_memory,
        prefetch_factor=cfg.data.prefetch_factor,
    )
    start = time.perf_counter()
    batches = iter(loader)
    first = next(batches)
    first_at = time.perf_counter()
    images = 0
    for batch in batches:
        images += batch["image"].shape[0]
    end = time.perf_counter()
    del batches  # shuts the workers down before the next variant starts
    total = images + first["image"].shape[0]
    return first_at - start, images / max(end - first_at, 1e-9), total / (end - start)


def _datasets(cfg: OcrkitConfig, samples: list[Sample], store: Store, sources: list[str]) -> dict[str, TrainDataset]:
    out = {}
    for source in sources:
        use_store = store if source != "files" else None
        preloaded = None
        if source == "preload":
            preloaded = preload_images(samples, ImageLayer(store), cap_bytes=2**62).images
        out[source] = TrainDataset(samples, cfg.data, cfg.maps, cfg.train.seed, use_store, preloaded)
    return out


def _fill_store(dataset: TrainDataset, cfg: OcrkitConfig) -> None:
    """One untimed epoch through the store: every later read is warm."""
    for _ in build_train_loader(dataset, cfg.train.batch_size, 0, cfg.train.seed, epoch=0):
        pass
    if dataset.images.store is not None:
        dataset.images.store.drain()


def measure_loader(
    cfg: OcrkitConfig, datasets: dict[str, TrainDataset], workers: list[int], repeats: int, pin_memory: bool = False
) -> list[LoaderRow]:
    if "store" in datasets or "preload" in datasets:
        _fill_store(datasets.get("store") or datasets["preload"], cfg)
    variants = [(s, w) for s in datasets for w in workers]
    runs: dict[tuple[str, int], list[tuple[float, float, float]]] = {v: [] for v in variants}
    for repeat in range(repeats):
        shift = repeat % len(variants)
        for source, n_workers in variants[shift:] + variants[:shift]:  # take turns going first
            runs[(source, n_workers)].append(_time_epoch(datasets[source], cfg, n_workers, 1 + repeat, pin_memory))
    n_samples = len(next(iter(datasets.values())))
    per_epoch = (n_samples // cfg.train.batch_size) * cfg.train.batch_size
    return [
        LoaderRow(
            source,
            n_workers,
            per_epoch,
            statistics.median(r[0] for r in runs[(source, n_workers)]) * 1e3,
            statistics.median(r[1] for r in runs[(source, n_workers)]),
            statistics.median(r[2] for r in runs[(source, n_workers)]),
        )
        for source, n_workers in variants
    ]


def measure_model(
    cfg: OcrkitConfig, samples: list[Sample], workers: list[int], steps: int, device: torch.device, out_dir: Path
) -> list[ModelRow]:
    rows = []
    for n_workers in workers:
        variant = fixed_steps_variant(cfg, steps)
        variant.data.num_workers = n_workers
        variant.train.profile = False
        variant.log.tensorboard = False
        result = train_variant(variant, out_dir / f"model-w{n_workers}", samples, [], device)
        step = statistics.median(result.step_images_per_s[MODEL_WARMUP_STEPS:])
        train = statistics.median(result.images_per_s[MODEL_WARMUP_STEPS:])
        rows.append(ModelRow(n_workers, steps, step, train, max(0.0, 1 - train / step)))
    return rows


def run_data_bench(
    cfg: OcrkitConfig,
    samples: list[Sample],
    device: torch.device,
    out_dir: Path,
    sources: list[str],
    workers: list[int],
    epoch_images: int,
    repeats: int,
    model_steps: int,
) -> DataBench:
    """``epoch_images`` samples (the first of the set; at least two batches, so that there is a
    steady rate after the first) make one epoch of the loader measurement."""
    scratch = cfg.model_copy(deep=True)
    scratch.cache.enabled = True
    scratch.cache.dir = str(out_dir / "scratch-store")
    store = open_data_store(scratch.cache)
    assert store is not None
    subset = samples[: max(epoch_images, 2 * cfg.train.batch_size)]
    try:
        datasets = _datasets(scratch, subset, store, sources)
        bench = DataBench(
            cfg.train.batch_size,
            cfg.data.train_size,
            str(device),
            maps_from_store=any(d.stored_maps is not None for d in datasets.values()),
            default_workers=default_workers(),
        )
        bench.loader = measure_loader(scratch, datasets, workers, repeats, pin_memory_for(cfg.data, device))
        if model_steps > 0:
            bench.model = measure_model(scratch, samples, workers, model_steps, device, out_dir)
    finally:
        store.close()
    return bench


def parse_sources(text: str) -> list[str]:
    names = [t.strip() for t in text.split(",") if t.strip()]
    unknown = [n for n in names if n not in SOURCES]
    if unknown or not names:
        raise OcrkitError(f"--sources: unknown {', '.join(unknown) or '(none given)'}; expected {', '.join(SOURCES)}")
    return names


def parse_counts(text: str, option: str, minimum: int = 0) -> list[int]:
    """``"0,1,2"`` → [0, 1, 2]; one line naming ``option`` for anything else."""
    items = [t.strip() for t in text.split(",") if t.strip()]
    if not items or not all(t.isdigit() and int(t) >= minimum for t in items):
        example = ",".join(str(minimum + i) for i in range(3))
        raise OcrkitError(
            f"{option}: expected comma-separated counts of at least {minimum} such as {example}, got {text!r}"
        )
    return [int(t) for t in items]


def results_document(bench: DataBench) -> dict:
    return bench_document("data", result=asdict(bench), verdict=bench.verdict())


def data_bench_job(
    cfg: OcrkitConfig,
    sources: list[str],
    workers: list[int],
    epoch_images: int,
    repeats: int,
    model_steps: int,
    name: str,
    quiet: bool,
) -> tuple[DataBench, Path]:
    setup = bench_setup(cfg, name, quiet)
    return run_data_bench(
        setup.cfg, setup.train, setup.device, setup.out_dir, sources, workers, epoch_images, repeats, model_steps
    ), setup.out_dir

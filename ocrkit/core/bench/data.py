"""``ocrkit bench data``: can the training data pipeline keep the model fed?

Three measurements on the same config, samples and machine:

0. Where one training image's time goes, stage by stage, for each augmentation pipeline
   (``data.augment.pipeline``: the albumentations chain and the fused warp) and source: read
   (decode, store or preload), geometric augmentation, photometric augmentation (the fused
   pipeline only draws its factors here), label maps, tensors, then per batch the collate and the
   move to the model's device (with the fused pipeline's jitter and the normalisation there), in
   ms per image on ONE core (torch's and OpenCV's threads set to 1, as in a loader worker). A lap
   timer makes the stages add up to the whole exactly; the repeat with the median whole time is
   reported. Images per second per core = 1000 / the loader's ms (read to collate).
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
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from ocrkit.core.bench.runs import bench_document, bench_setup, train_variant
from ocrkit.core.bench.timing import fixed_steps_variant
from ocrkit.core.config import OcrkitConfig
from ocrkit.core.data.cached import ImageLayer, open_data_store
from ocrkit.core.data.dataset import (
    TrainDataset,
    batch_to_device,
    build_train_loader,
    collate_train,
    default_workers,
    pin_memory_for,
)
from ocrkit.core.data.preload import preload_images
from ocrkit.core.data.sample import Sample
from ocrkit.core.data.stages import StageClock
from ocrkit.core.engine.flops import device_peak, train_flops_per_image, utilisation
from ocrkit.core.errors import OcrkitError
from ocrkit.core.store.store import Store

SOURCES = ("files", "store", "preload")
PIPELINES = ("albumentations", "fused")
LOADER_STAGES = ("read", "geometric", "photometric", "maps", "tensors", "collate")
STAGES = (*LOADER_STAGES, "to device")
MODEL_WARMUP_STEPS = 2  # first steps: allocator, worker start-up


@dataclass
class StageRow:
    pipeline: str
    source: str
    images: int
    ms_per_image: dict[str, float]  # each stage, from the repeat with the median whole time
    loader_ms_per_image: float  # read .. collate: one core's work per image in a loader
    whole_ms_per_image: float  # every stage, the move to the device included

    @property
    def images_per_core_s(self) -> float:
        return 1e3 / self.loader_ms_per_image


@dataclass
class LoaderRow:
    pipeline: str
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
    step_tflops: float = 0.0  # achieved by the step alone (engine/flops.py)
    train_tflops: float = 0.0  # achieved end to end
    step_mfu: float | None = None  # of the device's peak, where it is known
    train_mfu: float | None = None


@dataclass
class DataBench:
    batch_size: int
    train_size: tuple[int, int]
    device: str
    maps_from_store: bool
    default_workers: int  # what an unset data.num_workers gives on this machine
    pipeline: str = "fused"  # the config's, which the model runs train with
    stages: list[StageRow] = field(default_factory=list)
    loader: list[LoaderRow] = field(default_factory=list)
    model: list[ModelRow] = field(default_factory=list)
    flops_per_image: float = 0.0
    peak_tflops: float | None = None
    peak_source: str = ""

    def stage_speedup(self) -> str:
        """The fused pipeline's images per core against the chain's, per source."""
        by = {(r.pipeline, r.source): r for r in self.stages}
        parts = [
            f"{source}: {by['fused', source].images_per_core_s / by['albumentations', source].images_per_core_s:.2f}x"
            for source in dict.fromkeys(r.source for r in self.stages)
            if ("fused", source) in by and ("albumentations", source) in by
        ]
        return "fused vs albumentations images per core: " + ", ".join(parts) if parts else ""

    def best_loader(self) -> LoaderRow:
        return max(self.loader, key=lambda r: r.epoch_images_per_s)

    def verdict(self) -> str:
        if not self.model or not self.loader:
            return ""
        fastest_model = max(r.step_images_per_s for r in self.model)
        best = self.best_loader()
        ratio = best.epoch_images_per_s / fastest_model
        who = "data keeps up with the model" if ratio >= 1 else "DATA IS THE BOTTLENECK"
        end_to_end = max(self.model, key=lambda r: r.train_images_per_s)
        return (
            f"{who} (default data.num_workers here: {self.default_workers}): "
            f"best loader {best.epoch_images_per_s:.1f} img/s ({best.pipeline}, {best.source}, {best.workers} workers) "
            f"vs model step {fastest_model:.1f} img/s ({ratio:.2f}x); best end-to-end "
            f"{end_to_end.train_images_per_s:.1f} img/s with {end_to_end.workers} workers"
        )


Variant = tuple[str, str]  # (pipeline, source)


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


def _datasets(
    cfg: OcrkitConfig,
    samples: list[Sample],
    store: Store,
    sources: list[str],
    pipelines: tuple[str, ...],
    device: torch.device,
) -> dict[Variant, TrainDataset]:
    """One dataset per (pipeline, source); the fused pipeline's jitter goes where training would
    put it for ``device`` (data.augment.jitter_on)."""
    out = {}
    preloaded = None
    if "preload" in sources:
        preloaded = preload_images(samples, ImageLayer(store), cap_bytes=2**62).images
    for pipeline in pipelines:
        data_cfg = cfg.data.model_copy(deep=True)
        data_cfg.augment.pipeline = pipeline  # type: ignore[assignment]
        for source in sources:
            use_store = store if source != "files" else None
            images = preloaded if source == "preload" else None
            out[pipeline, source] = TrainDataset(
                samples, data_cfg, cfg.maps, cfg.train.seed, use_store, images, device.type
            )
    return out


def _fill_store(dataset: TrainDataset, cfg: OcrkitConfig) -> None:
    """One untimed epoch through the store: every later read is warm."""
    for _ in build_train_loader(dataset, cfg.train.batch_size, 0, cfg.train.seed, epoch=0):
        pass
    if dataset.images.store is not None:
        dataset.images.store.drain()


def _fill_stores(datasets: dict[Variant, TrainDataset], cfg: OcrkitConfig) -> None:
    stored = [d for (_, source), d in datasets.items() if source != "files"]
    if stored:
        _fill_store(stored[0], cfg)


@contextmanager
def one_core():
    """torch and OpenCV on one thread, as in a DataLoader worker (torch sets 1 there)."""
    import cv2

    threads, cv_threads = torch.get_num_threads(), cv2.getNumThreads()
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
        cv2.setNumThreads(cv_threads)


def time_stages(dataset: TrainDataset, cfg: OcrkitConfig, epoch: int, device: torch.device) -> StageClock:
    """One epoch's full batches, sample by sample and stage by stage, in this process."""
    dataset.set_epoch(epoch)
    batch_size = cfg.train.batch_size
    clock = StageClock()
    for start in range(0, len(dataset) - batch_size + 1, batch_size):
        items = [dataset.item(index, clock) for index in range(start, start + batch_size)]
        batch = collate_train(items)
        clock.lap("collate")
        on_device = batch_to_device(batch, device, dataset.data_cfg, cfg.maps)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        del on_device
        clock.lap("to device")
    return clock


def measure_stages(
    cfg: OcrkitConfig, datasets: dict[Variant, TrainDataset], repeats: int, device: torch.device
) -> list[StageRow]:
    """Per-stage ms per image for every variant (variants take turns within each repeat); each
    row is the repeat with the median whole time, so its stages add up to its whole."""
    _fill_stores(datasets, cfg)
    variants = list(datasets)
    runs: dict[Variant, list[StageClock]] = {v: [] for v in variants}
    with one_core():
        for variant in variants:  # warm-up: kernels, allocator, the first use of each path
            time_stages(datasets[variant], cfg, 0, device)
        for repeat in range(repeats):
            shift = repeat % len(variants)
            for variant in variants[shift:] + variants[:shift]:
                runs[variant].append(time_stages(datasets[variant], cfg, 1 + repeat, device))
    n = (len(next(iter(datasets.values()))) // cfg.train.batch_size) * cfg.train.batch_size
    rows = []
    for (pipeline, source), clocks in runs.items():
        median = sorted(clocks, key=lambda c: c.whole)[len(clocks) // 2]
        ms = {stage: median.seconds.get(stage, 0.0) / n * 1e3 for stage in STAGES}
        loader = sum(ms[stage] for stage in LOADER_STAGES)
        rows.append(StageRow(pipeline, source, n, ms, loader, median.whole / n * 1e3))
    return rows


def measure_loader(
    cfg: OcrkitConfig, datasets: dict[Variant, TrainDataset], workers: list[int], repeats: int, pin_memory: bool = False
) -> list[LoaderRow]:
    _fill_stores(datasets, cfg)
    variants = [(v, w) for v in datasets for w in workers]
    runs: dict[tuple[Variant, int], list[tuple[float, float, float]]] = {v: [] for v in variants}
    for repeat in range(repeats):
        shift = repeat % len(variants)
        for variant, n_workers in variants[shift:] + variants[:shift]:  # take turns going first
            runs[(variant, n_workers)].append(_time_epoch(datasets[variant], cfg, n_workers, 1 + repeat, pin_memory))
    n_samples = len(next(iter(datasets.values())))
    per_epoch = (n_samples // cfg.train.batch_size) * cfg.train.batch_size
    return [
        LoaderRow(
            pipeline,
            source,
            n_workers,
            per_epoch,
            statistics.median(r[0] for r in runs[((pipeline, source), n_workers)]) * 1e3,
            statistics.median(r[1] for r in runs[((pipeline, source), n_workers)]),
            statistics.median(r[2] for r in runs[((pipeline, source), n_workers)]),
        )
        for (pipeline, source), n_workers in variants
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


def add_utilisation(bench: DataBench, cfg: OcrkitConfig, device: torch.device) -> None:
    """TFLOP/s and MFU of every model row (the step's FLOPs counted once; engine/flops.py)."""
    bench.flops_per_image = train_flops_per_image(cfg.model, cfg.data.train_size)
    peak = device_peak(device, cfg.train.precision)
    bench.peak_tflops, bench.peak_source = peak.tflops, peak.source
    for row in bench.model:
        row.step_tflops, row.step_mfu = utilisation(bench.flops_per_image, row.step_images_per_s, peak)
        row.train_tflops, row.train_mfu = utilisation(bench.flops_per_image, row.train_images_per_s, peak)


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
    pipelines: tuple[str, ...] = PIPELINES,
    stages: bool = True,
) -> DataBench:
    """``epoch_images`` samples (the first of the set; at least two batches, so that there is a
    steady rate after the first) make one epoch of the stage and loader measurements."""
    scratch = cfg.model_copy(deep=True)
    scratch.cache.enabled = True
    scratch.cache.dir = str(out_dir / "scratch-store")
    store = open_data_store(scratch.cache)
    assert store is not None
    subset = samples[: max(epoch_images, 2 * cfg.train.batch_size)]
    try:
        datasets = _datasets(scratch, subset, store, sources, pipelines, device)
        bench = DataBench(
            cfg.train.batch_size,
            cfg.data.train_size,
            str(device),
            maps_from_store=any(d.stored_maps is not None for d in datasets.values()),
            default_workers=default_workers(),
            pipeline=cfg.data.augment.pipeline,
        )
        if stages:
            bench.stages = measure_stages(scratch, datasets, repeats, device)
        if workers:
            bench.loader = measure_loader(scratch, datasets, workers, repeats, pin_memory_for(cfg.data, device))
        if model_steps > 0:
            bench.model = measure_model(scratch, samples, workers or [0], model_steps, device, out_dir)
            add_utilisation(bench, scratch, device)
    finally:
        store.close()
    return bench


def parse_pipelines(text: str) -> list[str]:
    names = [t.strip() for t in text.split(",") if t.strip()]
    unknown = [n for n in names if n not in PIPELINES]
    if unknown or not names:
        raise OcrkitError(
            f"--pipelines: unknown {', '.join(unknown) or '(none given)'}; expected {', '.join(PIPELINES)}"
        )
    return names


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
    result = asdict(bench)
    for row, stage in zip(result["stages"], bench.stages, strict=True):
        row["images_per_core_s"] = stage.images_per_core_s
    return bench_document("data", result=result, verdict=bench.verdict(), stage_speedup=bench.stage_speedup())


def data_bench_job(
    cfg: OcrkitConfig,
    sources: list[str],
    workers: list[int],
    epoch_images: int,
    repeats: int,
    model_steps: int,
    name: str,
    quiet: bool,
    pipelines: tuple[str, ...] = PIPELINES,
    stages: bool = True,
) -> tuple[DataBench, Path]:
    setup = bench_setup(cfg, name, quiet)
    bench = run_data_bench(
        setup.cfg,
        setup.train,
        setup.device,
        setup.out_dir,
        sources,
        workers,
        epoch_images,
        repeats,
        model_steps,
        pipelines,
        stages,
    )
    return bench, setup.out_dir

"""Training and evaluation datasets, the epoch sampler and the loaders.

Reproducibility contract: a training sample is a pure function of (seed, epoch, index) and the
visiting order a pure function of (seed, epoch), so DataLoader workers, DDP ranks and a run
resumed in the middle of an epoch all see exactly the data an uninterrupted run would.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler, default_collate

from ocrkit.core.config import DataConfig, MapsConfig
from ocrkit.core.data.augment import (
    NO_CLOCK,
    Augmented,
    Clock,
    FusedAugmenter,
    build_augmenter,
    device_jitter_wanted,
)
from ocrkit.core.data.cached import ImageLayer, MapsLayer
from ocrkit.core.data.device_maps import device_db_maps
from ocrkit.core.data.image import normalize_on_device
from ocrkit.core.data.jitter import jitter_batch
from ocrkit.core.data.sample import Sample
from ocrkit.core.geometry.maps import (
    BINARY_MAP_KEYS,
    MAP_KEYS,
    MapPlan,
    compile_kernels,
    make_db_maps,
    plan_db_maps,
)
from ocrkit.core.machine import available_cpus
from ocrkit.core.store.store import Store


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """The augmentation seed of one sample: independent streams for every (seed, epoch, index)."""
    entropy = [int(seed) % 2**64, int(epoch), int(index)]
    return int(np.random.SeedSequence(entropy).generate_state(1)[0])


class TrainDataset(Dataset[dict[str, torch.Tensor]]):
    """decode → augment (seeded by (seed, epoch, index)) → DB maps at ``train_size``.

    Items: ``image`` uint8 3×H×W (RGB), binary maps uint8, ``thresh`` float32; see
    ``batch_to_device`` for what the model gets.

    With a store, decoded images come from it (RAM preload first), and when the pipeline is
    deterministic (augmentation off) so do the maps; after random augmentation the maps are
    always regenerated.
    """

    def __init__(
        self,
        samples: Sequence[Sample],
        data_cfg: DataConfig,
        maps_cfg: MapsConfig,
        seed: int,
        store: Store | None = None,
        preloaded: dict[str, np.ndarray] | None = None,
        model_device: str = "cpu",
    ) -> None:
        self.samples = list(samples)
        self.data_cfg = data_cfg
        self.maps_cfg = maps_cfg
        self.seed = seed
        self.epoch = 0
        # the fused pipeline's jitter goes to a GPU model's device (data.augment.jitter_on)
        self.augmenter = build_augmenter(data_cfg, device_jitter_wanted(data_cfg, model_device))
        self.images = ImageLayer(store, preloaded)
        deterministic = not self.augmenter.random
        self.stored_maps = MapsLayer(store, data_cfg, maps_cfg) if deterministic and store is not None else None
        compile_kernels()  # before any worker forks: each would otherwise load them every epoch

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return self.item(index)

    def item(self, index: int, clock: Clock = NO_CLOCK) -> dict[str, torch.Tensor]:
        """The training item of ``index``; ``clock`` is told where the time went (read,
        geometric, photometric, maps, tensors)."""
        sample = self.samples[index]
        plan: MapPlan | None = None
        if self.stored_maps is not None:
            image, maps = self.stored_maps.sample(sample, self.images)
            clock.lap("read")
            augmented = Augmented(image, [], [], image.shape[:2])
        else:
            # the fused warp only reads the decoded image: no private copy of it is needed
            decoded = self.images.load(sample.image_path, writable=not isinstance(self.augmenter, FusedAugmenter))
            clock.lap("read")
            augmented = self.augmenter.augment(
                decoded, sample.polygons, sample.ignore, sample_seed(self.seed, self.epoch, index), clock
            )
            h, w = self.data_cfg.train_size
            if self.data_cfg.label_maps == "device":  # drawn for the whole batch by batch_to_device
                plan, maps = plan_db_maps(augmented.polygons, augmented.ignore, h, w, self.maps_cfg), {}
            else:
                maps = make_db_maps(augmented.polygons, augmented.ignore, h, w, self.maps_cfg, np.uint8).as_dict()
            clock.lap("maps")
        item = to_item(augmented, maps, index)
        if plan is not None:
            item[MAP_PLAN] = plan  # type: ignore[assignment]
        clock.lap("tensors")
        return item


def to_item(augmented: Augmented, maps: dict[str, np.ndarray], index: int) -> dict[str, torch.Tensor]:
    """The tensors of one training item. The image and binary maps stay uint8: a third of the
    bytes through worker shared memory, the collate and the host-to-device copy;
    ``batch_to_device`` makes them float32 there."""
    # channels first as a strided view: the collate's copy into the batch does the transpose
    item = {"image": torch.from_numpy(augmented.image).permute(2, 0, 1)}
    item["index"] = torch.tensor(index)  # which samples a batch holds (health diagnostics)
    for key in MAP_KEYS if maps else ():
        dtype = np.uint8 if key in BINARY_MAP_KEYS else np.float32
        item[key] = torch.from_numpy(np.ascontiguousarray(maps[key], dtype=dtype))
    if augmented.jitter is not None:
        item["jitter"] = torch.from_numpy(augmented.jitter.factors)
        item["jitter_order"] = torch.from_numpy(augmented.jitter.order)
        item["content_size"] = torch.tensor(augmented.content_size)
    return item


JITTER_KEYS = ("jitter", "jitter_order", "content_size")
MAP_PLAN = "map_plan"  # an item's MapPlan when its maps are drawn on the device (data.label_maps)


def collate_train(items: list[dict[str, Any]]) -> dict[str, Any]:
    """``default_collate``, with the items' map plans (when there are) kept as a list."""
    if MAP_PLAN not in items[0]:
        return default_collate(items)
    plans = [item[MAP_PLAN] for item in items]
    batch = default_collate([{k: v for k, v in item.items() if k != MAP_PLAN} for item in items])
    batch[MAP_PLAN] = plans
    return batch


def batch_to_device(
    batch: dict[str, Any], device: torch.device, data_cfg: DataConfig, maps_cfg: MapsConfig | None = None
) -> dict[str, torch.Tensor]:
    """A collated training batch on ``device`` as the model and loss take it: the image
    photometrically jittered there when the loader left that to the device (the fused pipeline;
    data/jitter.py), then normalised to float32 (``normalize_on_device``; without jitter
    bit-identical to ``normalize``), every map float32, drawn there from the batch's map plans
    when the loader left them to the device (data/device_maps.py; needs ``maps_cfg``)."""
    jitter = {key: batch[key] for key in JITTER_KEYS if key in batch}
    plans = batch.get(MAP_PLAN)
    skip = {*jitter, MAP_PLAN}
    out = {key: value.to(device, non_blocking=True) for key, value in batch.items() if key not in skip}
    if plans is not None:
        if maps_cfg is None:
            raise ValueError("a batch with map plans needs the maps config to draw them")
        h, w = out["image"].shape[-2:]
        out.update(device_db_maps(plans, h, w, maps_cfg, device))
    image = out["image"].float()
    if jitter:
        factors = jitter["jitter"].to(device, non_blocking=True)
        image = jitter_batch(image, factors, jitter["jitter_order"], jitter["content_size"])
    out["image"] = normalize_on_device(image, data_cfg.mean, data_cfg.std)
    for key in BINARY_MAP_KEYS:
        out[key] = out[key].float()
    return out


class EpochSampler(Sampler[int]):
    """Visiting order = a permutation drawn from ``torch.Generator().manual_seed(seed + epoch)``.

    With ``world_size`` > 1 every rank computes the same order and takes the strided share
    ``order[rank::world_size]``; the order is padded by wrapping around (or truncated with
    ``drop_last``) to a multiple of ``world_size``, like ``DistributedSampler``, so ranks get equal
    lengths. ``skip(n)`` drops this rank's first ``n`` samples of the current epoch (resume in
    mid-epoch); ``set_epoch`` clears it, since a skip only ever applies to the epoch being resumed.
    """

    def __init__(
        self, n: int, seed: int, shuffle: bool = True, rank: int = 0, world_size: int = 1, drop_last: bool = False
    ) -> None:
        if n < 0 or world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"bad sampler arguments: n={n}, rank={rank}, world_size={world_size}")
        self.n, self.seed, self.shuffle = n, seed, shuffle
        self.rank, self.world_size, self.drop_last = rank, world_size, drop_last
        self.epoch = 0
        self.start = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self.start = 0

    def skip(self, n_samples: int) -> None:
        """Start this rank's share at ``n_samples`` (samples already consumed this epoch)."""
        if n_samples < 0:
            raise ValueError(f"cannot skip a negative number of samples ({n_samples})")
        self.start = n_samples

    @property
    def per_rank(self) -> int:
        """Length of one rank's full share in an epoch (before any skip)."""
        if self.drop_last:
            return self.n // self.world_size
        return math.ceil(self.n / self.world_size)

    def epoch_order(self) -> list[int]:
        """The global order of this epoch, padded/truncated to ``per_rank * world_size``."""
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed + self.epoch)
            order = torch.randperm(self.n, generator=generator).tolist()
        else:
            order = list(range(self.n))
        total = self.per_rank * self.world_size
        if order and len(order) < total:
            order = (order * math.ceil(total / len(order)))[:total]
        return order[:total]

    def __iter__(self) -> Iterator[int]:
        share = self.epoch_order()[self.rank :: self.world_size]
        return iter(share[self.start :])

    def __len__(self) -> int:
        return max(0, self.per_rank - self.start)


def _seed_worker(worker_id: int) -> None:
    """Belt and braces: augmentation is seeded per sample, but seed any other randomness from the
    worker's torch seed (derived from the loader's generator, so reproducible).

    Do NOT call ``cv2.setNumThreads`` here: in a forked worker, after the parent has used OpenCV's
    thread pool, it deadlocks (measured with torch 2.13 / opencv-python-headless on Linux).
    """
    worker_seed = torch.initial_seed() % 2**32
    np.random.seed(worker_seed)
    random.seed(worker_seed)


def default_workers(cpus: int | None = None) -> int:
    """One worker per CPU core but one (the main process drives the model), at most 8.

    ``ocrkit bench data`` on 2 cores (docs/benchmarks.md): the CPU model takes 13–15 img/s where
    the loader supplies 120–270, and 0, 1 or 2 workers train equally fast within the run-to-run
    spread; without workers the model waited for data 9–11% of the time, with one 1%. A GPU
    needs the workers.
    """
    if cpus is None:
        cpus = available_cpus()
    return max(0, min(8, cpus - 1))


def pin_memory_for(data_cfg: DataConfig, device: torch.device) -> bool:
    """``data.pin_memory``; unset: page-locked batches only when the model is on CUDA."""
    return device.type == "cuda" if data_cfg.pin_memory is None else data_cfg.pin_memory


def build_train_loader(
    dataset: TrainDataset,
    batch_size: int,
    num_workers: int,
    seed: int,
    epoch: int,
    skip_batches: int = 0,
    drop_last: bool = True,
    *,
    rank: int = 0,
    world_size: int = 1,
    pin_memory: bool = False,
    prefetch_factor: int = 2,
) -> DataLoader:
    """The loader of one epoch (build a new one per epoch); ``skip_batches`` resumes mid-epoch.

    Workers are not persistent: each keeps its own copy of the dataset, whose epoch (the
    augmentation seed) would go stale across epochs, and restarting them costs 20–80 ms an epoch
    here (bench data: the first batch with workers minus without), ~0.2% of a demo epoch."""
    dataset.set_epoch(epoch)
    sampler = EpochSampler(len(dataset), seed, shuffle=True, rank=rank, world_size=world_size)
    sampler.set_epoch(epoch)
    sampler.skip(skip_batches * batch_size)
    worker_options: dict[str, Any] = {}
    if num_workers > 0:  # these raise with num_workers == 0
        worker_options = {
            "persistent_workers": False,
            "prefetch_factor": prefetch_factor,
            "worker_init_fn": _seed_worker,
        }
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=num_workers,
        drop_last=drop_last,
        pin_memory=pin_memory,
        collate_fn=collate_train,
        generator=torch.Generator().manual_seed(seed + epoch),  # fixes the workers' base seed
        **worker_options,
    )

"""Everything a training run reads, set up once: the samples, the store, the RAM preload, the
training dataset and a loader per epoch. Built by ``ocrkit train`` (engine/train_job.py) and by
the benches, and passed to the Trainer, which only asks it for an epoch's batches.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch

from ocrkit.core.config import OcrkitConfig
from ocrkit.core.data.cached import ImageLayer, open_data_store
from ocrkit.core.data.dataset import (
    TrainDataset,
    build_train_loader,
    default_workers,
    pin_memory_for,
)
from ocrkit.core.data.preload import preload_images
from ocrkit.core.data.sample import Sample
from ocrkit.core.data.store_size import estimate_store_bytes
from ocrkit.core.errors import InputError, OcrkitError
from ocrkit.core.machine import available_cpus
from ocrkit.core.store.stats import EpochCacheStats
from ocrkit.core.store.store import Store

Batch = dict[str, torch.Tensor]


@dataclass(frozen=True)
class Shard:
    """Which part of every epoch this process trains on: rank ``rank`` of ``world_size`` takes
    every ``world_size``-th sample of the epoch's order (data/dataset.py ``EpochSampler``), and
    its machine's cores are shared by ``local_world_size`` processes. One process: rank 0 of 1."""

    rank: int = 0
    world_size: int = 1
    local_world_size: int = 1


class TrainData:
    """The training and validation samples with the store, preload, dataset and loaders they use.

    Reads ``data``, ``maps``, ``cache`` and, of ``train``, ``seed``, ``batch_size`` and
    ``accumulate``. ``say`` receives the one-line notes set-up makes (the preload's size); ``device``
    is the model's, where the fused pipeline's jitter goes when it is a GPU (data.augment.jitter_on).
    """

    def __init__(
        self,
        cfg: OcrkitConfig,
        train: list[Sample],
        val: list[Sample],
        shard: Shard = Shard(),
        say: Callable[[str], None] = lambda text: None,
        device: torch.device | None = None,
    ):
        if len(train) == 0:
            raise OcrkitError("the training set is empty")
        self.cfg, self.train, self.val, self.shard = cfg, train, val, shard
        self.store: Store | None = open_data_store(cfg.cache)
        self.dataset = TrainDataset(
            train, cfg.data, cfg.maps, cfg.train.seed, self.store, self._preload(say), device.type if device else "cpu"
        )
        self.cache_stats = EpochCacheStats(self.store) if self.store is not None else None
        share = math.ceil(len(train) / shard.world_size)  # this rank's samples per epoch
        self.drop_last = share >= cfg.train.batch_size
        self.steps_per_epoch = steps_per_epoch(share, cfg.train.batch_size, cfg.train.accumulate)
        self._warn_if_store_too_small()

    def _preload(self, say: Callable[[str], None]) -> dict[str, np.ndarray] | None:
        cap = self.cfg.cache.preload_bytes
        if not cap:
            return None
        preload = preload_images(self.train, ImageLayer(self.store), cap)
        say(preload.describe())
        return preload.images

    def _warn_if_store_too_small(self) -> None:
        if self.store is None:
            return
        need = estimate_store_bytes(self.train, self.val, self.cfg.data, self.dataset.stored_maps is not None)
        if need > self.store.size_limit_bytes:
            warnings.warn(
                f"[cache] this data needs about {need / 1e9:.2f} GB in the store but cache.size_limit_gb is "
                f"{self.cfg.cache.size_limit_gb}: entries will be evicted and remade; raise the limit to keep them",
                stacklevel=2,
            )

    def step_groups(self, epoch: int, batches_done: int, device: torch.device) -> Iterator[list[Batch]]:
        """The epoch's batches in groups of ``train.accumulate`` (one optimizer step each),
        starting after the ``batches_done`` already trained (a resumed epoch)."""
        data, train = self.cfg.data, self.cfg.train
        self.dataset.set_epoch(epoch)
        loader = build_train_loader(
            self.dataset,
            train.batch_size,
            self.workers(),
            train.seed,
            epoch,
            skip_batches=batches_done,
            drop_last=self.drop_last,
            rank=self.shard.rank,
            world_size=self.shard.world_size,
            pin_memory=pin_memory_for(data, device),
            prefetch_factor=data.prefetch_factor,
        )
        group: list[Batch] = []
        try:
            for batch in loader:
                group.append(batch)
                if len(group) == train.accumulate:
                    yield group
                    group = []
        except RuntimeError as exc:
            error = input_error_from_worker(exc)
            if error is None:
                raise
            raise error from None

    def workers(self) -> int:
        """``data.num_workers``; unset: ``default_workers`` of this process's share of the
        machine's cores (each of the machine's training processes runs its own loader)."""
        if self.cfg.data.num_workers is not None:
            return self.cfg.data.num_workers
        return default_workers(max(1, available_cpus() // self.shard.local_world_size))

    def begin_epoch(self) -> None:
        if self.cache_stats is not None:
            self.cache_stats.begin()

    def end_epoch(self, epoch: int) -> tuple[dict[str, float], str | None, list[str]]:
        """The epoch's store hit rates: (scalars, one console line, warnings)."""
        if self.cache_stats is None:
            return {}, None, []
        return self.cache_stats.end(epoch)

    def flush_stats(self) -> None:
        """Add this process's pending store counts to the persisted ones (other processes
        sharing the store read them there)."""
        if self.store is not None:
            self.store.finish()

    def close(self) -> None:
        if self.store is not None:
            self.store.flush_stats()


def input_error_from_worker(error: RuntimeError) -> OcrkitError | None:
    """The one-line error an input problem in a loader worker stands for (an image that changed or
    vanished after the up-front check). Torch re-raises a worker's exception by calling its class
    with the worker's traceback text; InputError takes a file and a message, so torch falls back
    to a RuntimeError holding that text, whose last line is the original ``InputError: <message>``."""
    text = str(error)
    lines = [line for line in text.splitlines() if line.strip()]
    prefix = f"{InputError.__module__}.{InputError.__name__}: "
    if "Caught InputError" not in text or not lines or not lines[-1].startswith(prefix):
        return None
    return OcrkitError(lines[-1][len(prefix) :])


def steps_per_epoch(n_samples: int, batch_size: int, accumulate: int = 1) -> int:
    """Optimizer steps per epoch: full batches only (drop_last), except that a set smaller than
    one batch is one batch; a step takes ``accumulate`` of them."""
    batches = max(1, n_samples // batch_size)
    if batches < accumulate:
        raise OcrkitError(
            f"train.accumulate={accumulate} needs at least {accumulate} batches per epoch; "
            f"{n_samples} training images at batch size {batch_size} make {batches}"
        )
    return batches // accumulate

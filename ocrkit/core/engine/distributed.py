"""Several processes, one run: the process group and the few collectives the jobs use.

torchrun starts the processes and tells each its rank (core/ranks.py); ``distributed_session``
joins them into a torch.distributed process group (NCCL on CUDA, gloo on CPU) with a timeout,
and hands the jobs a ``Distributed``. With one process every collective is a local no-op, so a
single-process run executes exactly the code it did before distributed training existed.

Failures: a rank that raises exits, and torchrun stops the others within a second. A rank that
hangs or dies without torchrun noticing (another machine) leaves the others waiting at their
next collective for at most ``dist.timeout_s``; the error that collective raises (gloo, NCCL)
becomes one line naming the rank, and a non-zero exit.
"""

from __future__ import annotations

import contextlib
import math
import re
from collections.abc import Callable, Iterator, Sequence
from datetime import timedelta
from typing import Any, TypeVar

import torch
import torch.distributed as dist

from ocrkit.core.config import DistConfig
from ocrkit.core.data.train_data import Shard
from ocrkit.core.engine.device import resolve_device
from ocrkit.core.errors import OcrkitError
from ocrkit.core.ranks import RankLayout

T = TypeVar("T")

# what gloo, NCCL and c10d put in the messages of a collective that lost a peer or timed out
_PEER_FAILURE_MARKERS = (
    "gloo",
    "nccl",
    "c10d",
    "processgroup",
    "connection reset",
    "connection closed",
    "timed out",
    "timeout",
    "pair closure",
    "broken pipe",
)


class PeerFailure(OcrkitError):
    """A collective failed: another rank died, stopped or hangs."""


class Distributed:
    """This process's rank, its device and the collectives the trainer and evaluation use.

    Every method is collective (all ranks call it, in the same order) unless its name says
    otherwise; with one process each returns its input at once.
    """

    def __init__(self, layout: RankLayout | None = None, device: torch.device | None = None, backend: str = ""):
        self.layout = layout or RankLayout()
        self.device = device or torch.device("cpu")
        self.backend = backend  # "" with one process

    # ---------------------------------------------------------------- who am I
    @property
    def enabled(self) -> bool:
        return self.layout.distributed

    @property
    def rank(self) -> int:
        return self.layout.rank

    @property
    def world_size(self) -> int:
        return self.layout.world_size

    @property
    def is_main(self) -> bool:
        return self.layout.is_main

    @property
    def shard(self) -> Shard:
        """The part of every epoch this rank trains on (and its machine's share of CPU cores)."""
        return Shard(self.layout.rank, self.layout.world_size, self.layout.local_world_size)

    def _tensor_device(self) -> torch.device:
        return self.device if self.backend == "nccl" else torch.device("cpu")  # gloo: CPU tensors

    # ---------------------------------------------------------------- collectives
    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def broadcast_object(self, obj: T) -> T:
        """Rank 0's ``obj`` on every rank (picklable objects: paths, configs, small results)."""
        if not self.enabled:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def made_by_main(self, make: Callable[[], T]) -> T:
        """``make()`` run on rank 0 only (e.g. creating the run directory), its result on every rank."""
        if not self.enabled:
            return make()
        box: list[Any] = [make() if self.is_main else None]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def gather_objects(self, obj: T) -> list[T]:
        """Every rank's ``obj``, in rank order, on every rank."""
        if not self.enabled:
            return [obj]
        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def gather_floats(self, values: Sequence[float]) -> list[list[float]]:
        """Every rank's ``values`` (same length everywhere), in rank order: one small tensor
        collective, cheap enough for every step."""
        if not self.enabled:
            return [list(values)]
        local = torch.tensor(list(values), dtype=torch.float64, device=self._tensor_device())
        out = [torch.empty_like(local) for _ in range(self.world_size)]
        dist.all_gather(out, local)
        return [t.tolist() for t in out]

    def broadcast_floats(self, values: Sequence[float]) -> list[float]:
        """Rank 0's ``values`` on every rank."""
        if not self.enabled:
            return list(values)
        t = torch.tensor(list(values), dtype=torch.float64, device=self._tensor_device())
        dist.broadcast(t, src=0)
        return t.tolist()

    def sync_buffers(self, *modules: torch.nn.Module) -> None:
        """Rank 0's buffers (BatchNorm running statistics) on every rank. DDP sends them at the
        start of each training forward, but that forward then updates each rank's copy from its
        own micro-batch: before validation and checkpoints every rank takes rank 0's again, so
        what is evaluated is exactly what is saved."""
        if not self.enabled:
            return
        for module in modules:
            for buffer in module.buffers():
                dist.broadcast(buffer.data, src=0)

    def check_same(self, what: str, values: Sequence[float]) -> None:
        """Stop if the ranks' ``values`` differ (e.g. a fingerprint of the weights: DDP keeps
        them identical; a difference is a bug that would make rank 0's checkpoint unrepresentative)."""
        if not self.enabled:
            return
        gathered = self.gather_floats(values)
        if any(row != gathered[0] for row in gathered[1:]):
            ranks = [r for r, row in enumerate(gathered) if row != gathered[0]]
            raise OcrkitError(f"{what} differ between ranks (rank 0 vs {ranks}): the processes went out of step")

    @contextlib.contextmanager
    def local_main_first(self) -> Iterator[None]:
        """Local rank 0 runs the block first (it prepares what the machine's ranks share: the
        built-in dataset, first store entries), then the others."""
        if not self.enabled:
            yield
            return
        if not self.layout.is_local_main:
            dist.barrier()
        yield
        if self.layout.is_local_main:
            dist.barrier()


def rank_device(name: str, layout: RankLayout) -> torch.device:
    """The device of this rank: with CUDA, GPU ``local_rank`` of its machine (one GPU per
    process); otherwise the CPU."""
    device = resolve_device(name)
    if device.type != "cuda" or not layout.distributed:
        return device
    if device.index is not None:
        raise OcrkitError(
            f"train.device={name!r}: with several processes each rank takes GPU <local rank>; set device = cuda or auto"
        )
    count = torch.cuda.device_count()
    if layout.local_rank >= count:
        raise OcrkitError(
            f"local rank {layout.local_rank} has no GPU: this machine has {count} and runs "
            f"{layout.local_world_size} processes (one GPU per process; use --devices {count} or fewer)"
        )
    torch.cuda.set_device(layout.local_rank)
    return torch.device("cuda", layout.local_rank)


def choose_backend(cfg: DistConfig, device: torch.device) -> str:
    backend = cfg.backend if cfg.backend != "auto" else ("nccl" if device.type == "cuda" else "gloo")
    if backend == "nccl" and device.type != "cuda":
        raise OcrkitError("dist.backend = nccl needs CUDA devices; on CPU use gloo (or auto)")
    return backend


def is_peer_failure(exc: BaseException) -> bool:
    """Whether ``exc`` is a collective's failure (a lost or hung peer) rather than a bug here."""
    if isinstance(exc, dist.DistError):
        return True
    return isinstance(exc, RuntimeError) and any(m in str(exc).lower() for m in _PEER_FAILURE_MARKERS)


@contextlib.contextmanager
def distributed_session(cfg: DistConfig, device_name: str) -> Iterator[Distributed]:
    """Join the process group torchrun describes (nothing to join with one process), run the
    block, leave. A collective that fails becomes ``PeerFailure``: one line, non-zero exit."""
    layout = RankLayout.from_env()
    device = rank_device(device_name, layout)
    if not layout.distributed:
        yield Distributed(layout, device)
        return
    backend = choose_backend(cfg, device)
    timeout = timedelta(seconds=cfg.timeout_s)
    try:
        # device_id binds NCCL to this rank's GPU up front (collectives and barriers then need
        # no guess of the device); gloo takes none
        bound = device if device.type == "cuda" else None
        dist.init_process_group(
            backend, timeout=timeout, rank=layout.rank, world_size=layout.world_size, device_id=bound
        )
    except (RuntimeError, ValueError) as exc:
        raise PeerFailure(f"could not join the other {layout.world_size - 1} processes ({backend}): {exc}") from None
    try:
        yield Distributed(layout, device, backend)
        # Leave together: a rank that tore its connections down while rank 0 was still writing
        # its last checkpoint was seen to abort at exit ("terminate called without an active
        # exception", gloo), about once in six runs. Not on the error path: a dead peer would
        # hold the barrier until the timeout.
        dist.barrier()
    except (RuntimeError, dist.DistError) as exc:
        if not is_peer_failure(exc):
            raise
        text = str(exc).strip()
        first_line = re.sub(r"^\[[^\]]*\]\s*", "", text.splitlines()[0]) if text else type(exc).__name__
        raise PeerFailure(
            f"another rank failed or stopped responding (a collective failed after at most dist.timeout_s="
            f"{cfg.timeout_s:g} s): {first_line}"
        ) from None
    finally:
        with contextlib.suppress(Exception):  # leaving a broken group must not hide the real error
            dist.destroy_process_group()


def fingerprint(module: torch.nn.Module) -> list[float]:
    """Two numbers that differ when any floating-point parameter differs (almost surely): the
    float64 sum and sum of squares of every parameter."""
    with torch.no_grad():
        params = [p.detach().double() for p in module.parameters() if p.is_floating_point()]
        if not params:
            return [0.0, 0.0]
        sums = torch.stack([torch.stack([x.sum(), (x * x).sum()]) for x in params]).sum(dim=0)
    return [v if math.isfinite(v) else -1.0 for v in sums.tolist()]  # one host sync

"""Which process of a distributed job this is, read from the variables torchrun sets. No torch
here: the CLI reads it to prefix a rank's error line and to refuse ``--devices`` under torchrun
without loading the engine.

torchrun (torch.distributed.run) gives every process it starts ``RANK`` (0 .. WORLD_SIZE-1 over
all machines), ``WORLD_SIZE``, ``LOCAL_RANK`` (0 .. LOCAL_WORLD_SIZE-1 on this machine),
``LOCAL_WORLD_SIZE`` and ``GROUP_RANK`` (the machine's index). A process started any other way
is rank 0 of 1.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from ocrkit.core.errors import OcrkitError

TORCHRUN_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "GROUP_RANK")


@dataclass(frozen=True)
class RankLayout:
    """This process's place in the job: global and per-machine rank and size, machine index."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1
    node_rank: int = 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that logs, shows progress and writes checkpoints."""
        return self.rank == 0

    @property
    def is_local_main(self) -> bool:
        """Local rank 0: the one process per machine that prepares what the machine shares
        (the built-in dataset, the store's first entries)."""
        return self.local_rank == 0

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> RankLayout:
        """The layout torchrun describes in the environment; rank 0 of 1 without it."""
        env = os.environ if environ is None else environ
        if "WORLD_SIZE" not in env:
            return cls()
        values = {}
        for name in TORCHRUN_VARIABLES:
            raw = env.get(name, "0" if name != "LOCAL_WORLD_SIZE" else env["WORLD_SIZE"])
            try:
                values[name] = int(raw)
            except ValueError:
                raise OcrkitError(f"environment variable {name}={raw!r} is not an integer (set by torchrun)") from None
        layout = cls(
            values["RANK"], values["WORLD_SIZE"], values["LOCAL_RANK"], values["LOCAL_WORLD_SIZE"], values["GROUP_RANK"]
        )
        if not (0 <= layout.rank < layout.world_size and 0 <= layout.local_rank < layout.local_world_size):
            raise OcrkitError(
                f"inconsistent torchrun environment: RANK={layout.rank} WORLD_SIZE={layout.world_size} "
                f"LOCAL_RANK={layout.local_rank} LOCAL_WORLD_SIZE={layout.local_world_size}"
            )
        return layout


def under_torchrun(environ: Mapping[str, str] | None = None) -> bool:
    """Whether torchrun (or another launcher speaking its protocol) started this process."""
    env = os.environ if environ is None else environ
    return "WORLD_SIZE" in env and "RANK" in env


def rank_prefix(environ: Mapping[str, str] | None = None) -> str:
    """``[rank 1] `` in a job of several processes (each one's errors say who it is), else ''."""
    try:
        layout = RankLayout.from_env(environ)
    except OcrkitError:
        return ""
    return f"[rank {layout.rank}] " if layout.distributed else ""

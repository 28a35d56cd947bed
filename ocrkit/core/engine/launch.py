"""``ocrkit train --devices N``: start torchrun for the user, with the same command minus the
launcher's own options, and return its exit code.

This is torchrun itself (``torch.distributed.run.run`` with torchrun's own argument parser), not
a launcher of ours: only its failure report changes. torchrun ends a failed job with a Python
traceback holding a table of the failed ranks; here that becomes one line naming the first
rank that failed and its exit code (the rank's own error line is printed above it).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

from ocrkit.core.errors import OcrkitError
from ocrkit.core.machine import available_cpus

# the options `ocrkit train` takes for torchrun; the processes it starts get the rest
LAUNCHER_OPTIONS = ("--devices", "--nodes", "--node-rank", "--master-addr", "--master-port")
DEFAULT_MASTER_PORT = 29500  # torchrun's


@dataclass(frozen=True)
class Launch:
    """Where the processes run: ``devices`` per machine on ``nodes`` machines; this machine is
    ``node_rank``; with several machines, node 0 listens at ``master_addr:master_port``."""

    devices: int
    nodes: int = 1
    node_rank: int = 0
    master_addr: str | None = None
    master_port: int = DEFAULT_MASTER_PORT

    def torchrun_args(self) -> list[str]:
        if self.devices < 1 or self.nodes < 1:
            raise OcrkitError(f"--devices {self.devices} --nodes {self.nodes}: both must be at least 1")
        if not 0 <= self.node_rank < self.nodes:
            raise OcrkitError(f"--node-rank {self.node_rank}: expected 0 to {self.nodes - 1} for --nodes {self.nodes}")
        args = ["--nproc-per-node", str(self.devices)]
        if self.nodes == 1 and self.master_addr is None:
            return [*args, "--standalone"]  # a rendezvous on a free local port: runs never collide
        if self.master_addr is None:
            raise OcrkitError(f"--nodes {self.nodes}: give --master-addr, the address of the machine of --node-rank 0")
        return [
            *args,
            "--nnodes",
            str(self.nodes),
            "--node-rank",
            str(self.node_rank),
            "--master-addr",
            self.master_addr,
            "--master-port",
            str(self.master_port),
        ]


def strip_launcher_options(argv: Sequence[str]) -> list[str]:
    """``argv`` without the launcher's options (``--devices 2`` and ``--devices=2`` forms)."""
    out: list[str] = []
    skip_value = False
    for arg in argv:
        if skip_value:
            skip_value = False
            continue
        name = arg.split("=", 1)[0]
        if name in LAUNCHER_OPTIONS:
            skip_value = "=" not in arg
            continue
        out.append(arg)
    return out


def launch(launch: Launch, command: Sequence[str]) -> int:
    """Run ``python -m ocrkit <command>`` in ``launch.devices`` processes per machine through
    torchrun; 0 when every rank succeeded, else the first failed rank's exit code (128 + the
    signal number for a rank killed by a signal, as a shell reports it)."""
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import parse_args, run

    args = parse_args([*launch.torchrun_args(), "--module", "ocrkit", *command])
    # torchrun gives each process 1 thread when several share a machine (and says so in a banner);
    # a machine's cores split evenly between its processes use it fully. A user's own value stays.
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, available_cpus() // launch.devices)))
    try:
        run(args)
    except ChildFailedError as exc:
        rank, failure = exc.get_first_failure()
        code = failure.exitcode if failure.exitcode > 0 else 128 + abs(failure.exitcode)
        how = f"was stopped by {failure.signal_name()}" if failure.exitcode < 0 else f"exited with code {code}"
        raise LaunchFailed(
            f"rank {rank} (local rank {failure.local_rank}) {how}, and torchrun stopped "
            "the other ranks; that rank's error is above",
            code,
        ) from None
    return 0


class LaunchFailed(OcrkitError):
    """A rank of a launched job failed; the exit code is that rank's."""

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code

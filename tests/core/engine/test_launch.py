"""``ocrkit train --devices``: which torchrun arguments it passes and what the ranks receive."""

from __future__ import annotations

import pytest

from ocrkit.core.engine.launch import Launch, strip_launcher_options
from ocrkit.core.errors import OcrkitError


def test_the_ranks_get_the_command_without_the_launcher_options():
    argv = ["train", "--devices", "2", "--nodes=2", "--node-rank", "1", "--data", "d", "--master-addr=10.0.0.1"]
    assert strip_launcher_options([*argv, "--master-port", "29501", "-q"]) == ["train", "--data", "d", "-q"]


def test_one_machine_uses_a_standalone_rendezvous_on_a_free_port():
    assert Launch(4).torchrun_args() == ["--nproc-per-node", "4", "--standalone"]


def test_several_machines_pass_the_rendezvous_through():
    args = Launch(8, nodes=2, node_rank=1, master_addr="10.0.0.1", master_port=29501).torchrun_args()
    assert args == [
        "--nproc-per-node",
        "8",
        "--nnodes",
        "2",
        "--node-rank",
        "1",
        "--master-addr",
        "10.0.0.1",
        "--master-port",
        "29501",
    ]


def test_torchrun_parses_what_the_launcher_passes():
    from torch.distributed.run import parse_args

    args = parse_args([*Launch(2, 2, 1, "host0").torchrun_args(), "--module", "ocrkit", "train", "-q"])
    assert (args.nproc_per_node, args.nnodes, args.node_rank, args.master_addr) == ("2", "2", 1, "host0")
    assert args.module and args.training_script == "ocrkit" and args.training_script_args == ["train", "-q"]


@pytest.mark.parametrize(
    "launch, fragment",
    [
        (Launch(2, nodes=2), "--nodes 2: give --master-addr"),
        (Launch(2, nodes=2, node_rank=2, master_addr="h"), "--node-rank 2: expected 0 to 1"),
        (Launch(0), "--devices 0 --nodes 1: both must be at least 1"),
    ],
)
def test_an_incomplete_rendezvous_is_one_line(launch, fragment):
    with pytest.raises(OcrkitError) as caught:
        launch.torchrun_args()
    assert fragment in str(caught.value)

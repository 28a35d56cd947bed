"""The process group's helpers: no-ops with one process, real collectives between two gloo
processes, and which errors count as a lost peer."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as tmp_mp

from ocrkit.core.config import DistConfig
from ocrkit.core.data.sample import Sample
from ocrkit.core.engine.distributed import (
    Distributed,
    PeerFailure,
    choose_backend,
    fingerprint,
    is_peer_failure,
    rank_device,
)
from ocrkit.core.engine.inference import own_batches
from ocrkit.core.errors import OcrkitError
from ocrkit.core.ranks import RankLayout


def test_one_process_collectives_return_their_input():
    d = Distributed()
    assert not d.enabled and d.is_main and d.world_size == 1
    assert d.gather_floats([1.5, 2.0]) == [[1.5, 2.0]]
    assert d.broadcast_floats([3.0]) == [3.0]
    assert d.gather_objects({"a": 1}) == [{"a": 1}]
    assert d.made_by_main(lambda: "made") == "made"
    d.check_same("weights", [1.0])
    d.barrier()
    with d.local_main_first():
        pass


def test_each_rank_gets_whole_batches_and_together_all_samples():
    samples = [Sample(image_path=Path(f"/x/{i}.jpg"), polygons=[], ignore=[]) for i in range(11)]
    shares = [own_batches(samples, 3, rank, 2) for rank in range(2)]
    assert [s.stem for s in shares[0]] == ["0", "1", "2", "6", "7", "8"]  # batches 0 and 2
    assert [s.stem for s in shares[1]] == ["3", "4", "5", "9", "10"]  # batches 1 and 3
    assert own_batches(samples, 3, 0, 1) == samples


def test_peer_failures_are_recognised_and_bugs_are_not():
    assert is_peer_failure(RuntimeError("[gloo/transport/tcp/pair.cc:537] Read error: Connection reset by peer"))
    assert is_peer_failure(RuntimeError("Application timeout caused pair closure"))
    assert is_peer_failure(torch.distributed.DistBackendError("NCCL error"))
    assert not is_peer_failure(RuntimeError("mat1 and mat2 shapes cannot be multiplied"))
    assert not is_peer_failure(ValueError("timeout"))


def test_backend_follows_the_device():
    assert choose_backend(DistConfig(), torch.device("cpu")) == "gloo"
    assert choose_backend(DistConfig(), torch.device("cuda", 0)) == "nccl"
    with pytest.raises(OcrkitError, match="nccl needs CUDA"):
        choose_backend(DistConfig(backend="nccl"), torch.device("cpu"))


def test_cpu_ranks_share_the_cpu_device():
    assert rank_device("cpu", RankLayout(1, 2, 1, 2)) == torch.device("cpu")


def test_fingerprint_changes_with_any_parameter():
    model = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2))
    before = fingerprint(model)
    with torch.no_grad():
        model[1].bias[1] += 1e-3
    assert fingerprint(model) != before


# ---------------------------------------------------------------- two real gloo processes


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _collectives(rank: int, port: int, out) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        WORLD_SIZE="2",
        LOCAL_RANK=str(rank),
        LOCAL_WORLD_SIZE="2",
    )
    from ocrkit.core.engine.distributed import distributed_session

    with distributed_session(DistConfig(timeout_s=30), "cpu") as d:
        bn = torch.nn.BatchNorm1d(2)
        bn.running_mean.fill_(float(rank + 1))
        d.sync_buffers(bn)
        order = []
        with d.local_main_first():
            order.append(("inside", rank))
        result = {
            "floats": d.gather_floats([float(rank), 0.5]),
            "broadcast": d.broadcast_floats([float(rank + 7)]),
            "objects": d.gather_objects(f"r{rank}"),
            "made": d.made_by_main(lambda: f"made by {rank}"),
            "running_mean": bn.running_mean.tolist(),
        }
        try:
            d.check_same("weights", [float(rank)])
            result["check"] = "passed"
        except OcrkitError as exc:
            result["check"] = str(exc)
    out.put((rank, result))


def test_two_gloo_processes_gather_broadcast_and_compare():
    context = tmp_mp.get_context("spawn")
    out = context.Queue()
    port = _free_port()
    procs = [context.Process(target=_collectives, args=(rank, port, out)) for rank in range(2)]
    for p in procs:
        p.start()
    results = dict(out.get(timeout=120) for _ in procs)
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    for rank in range(2):
        r = results[rank]
        assert r["floats"] == [[0.0, 0.5], [1.0, 0.5]]
        assert r["broadcast"] == [7.0]
        assert r["objects"] == ["r0", "r1"]
        assert r["made"] == "made by 0"
        assert r["running_mean"] == [1.0, 1.0]  # rank 0's statistics everywhere
        assert "weights differ between ranks (rank 0 vs [1])" in r["check"]


def test_peer_failure_is_an_ocrkit_error():
    assert issubclass(PeerFailure, OcrkitError)


def test_sync_bn_on_cpu_is_refused_in_one_line(synth, tmp_path):
    """torch's SyncBatchNorm only runs on CUDA: asking for it on CPU ranks stops before training."""
    from conftest import tiny_cfg
    from ocrkit.core.data.formats import load_dataset
    from ocrkit.core.data.train_data import TrainData
    from ocrkit.core.engine.trainer import Trainer

    cfg = tiny_cfg("train.sync_bn=true")
    samples = load_dataset(str(synth / "train")).samples
    ranks = Distributed(RankLayout(0, 2, 0, 2), torch.device("cpu"), "gloo")  # refused before any collective
    with pytest.raises(OcrkitError, match="train.sync_bn needs CUDA"):
        Trainer(cfg, tmp_path, TrainData(cfg, samples, [], shard=ranks.shard), torch.device("cpu"), dist=ranks)


def test_train_data_shares_the_machine_cores_between_its_processes(synth):
    from conftest import tiny_cfg
    from ocrkit.core.data.formats import load_dataset
    from ocrkit.core.data.train_data import Shard, TrainData
    from ocrkit.core.machine import available_cpus

    cfg = tiny_cfg()
    cfg.data.num_workers = None  # the default: chosen from the cores
    samples = load_dataset(str(synth / "train")).samples
    one = TrainData(cfg, samples, [], shard=Shard(0, 1, 1))
    many = TrainData(cfg, samples, [], shard=Shard(0, 64, 64))
    assert one.workers() == max(0, min(8, available_cpus() - 1))
    assert many.workers() == 0  # one core or less each: the main process loads
    assert many.steps_per_epoch == 1  # 8 samples over 64 ranks: one padded batch each

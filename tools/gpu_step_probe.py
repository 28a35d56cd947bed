"""Where does a DBNet training step spend its time on a GPU?

Forward, loss, backward and optimizer step, each timed with a device sync, on one fixed batch (no
data loading), for each precision, model size and memory format; then the whole step without the
intermediate syncs. The GPU figures in docs/benchmarks.md ("Mixed precision", on an H100) come
from this probe; `ocrkit bench profile` is to replace it.

    PYTHONPATH=. python tools/gpu_step_probe.py
"""

import statistics
import time

import torch
from torch.profiler import ProfilerActivity, profile

from ocrkit.core.config import load_config
from ocrkit.core.data.dataset import TrainDataset, build_train_loader
from ocrkit.core.data.formats import load_dataset
from ocrkit.core.data.synth import generate_synthetic
from ocrkit.core.engine.precision import PrecisionPolicy
from ocrkit.core.engine.schedule import build_optimizer
from ocrkit.core.model import DBLoss, build_model

DEVICE = torch.device("cuda")
CASES = [(conf, bs, nhwc) for conf, bs in (("configs/gpu.toml", 16), ("configs/gpu.toml", 32), ("configs/long.toml", 8))
         for nhwc in (False, True)]


def synced() -> float:
    torch.cuda.synchronize()
    return time.perf_counter()


def fixed_batch(cfg, batch_size: int, memory_format) -> dict[str, torch.Tensor]:
    dataset = TrainDataset(load_dataset("/tmp/probe/train").samples, cfg.data, cfg.maps, 0)
    batch = next(iter(build_train_loader(dataset, batch_size, 0, 0, 0, skip_batches=0, drop_last=True)))
    batch = {k: v.to(DEVICE) for k, v in batch.items()}
    batch["image"] = batch["image"].contiguous(memory_format=memory_format)
    return batch


def probe(cfg, precision: str, batch, memory_format) -> dict[str, float]:
    cfg.train.precision, cfg.train.scaler.enabled = precision, None
    torch.manual_seed(0)
    model = build_model(cfg.model).to(DEVICE, memory_format=memory_format)
    loss_fn, policy = DBLoss(cfg.loss, k=cfg.model.k), PrecisionPolicy(precision, DEVICE, cfg.train.scaler)
    optimizer = build_optimizer(model.parameters(), cfg.train)

    def step(stages: dict | None = None):
        t0 = synced() if stages is not None else 0.0
        with policy.autocast():
            outputs = model(batch["image"])
        t1 = synced() if stages is not None else 0.0
        terms = loss_fn(outputs, batch)
        t2 = synced() if stages is not None else 0.0
        policy.backward(terms["loss"], micro_batches=1)
        t3 = synced() if stages is not None else 0.0
        policy.step(optimizer, model.parameters(), None)
        if stages is not None:
            t4 = synced()
            for name, a, b in (("fwd", t0, t1), ("loss", t1, t2), ("bwd", t2, t3), ("step", t3, t4)):
                stages.setdefault(name, []).append((b - a) * 1e3)

    for _ in range(5):  # warm-up: cuDNN autotuning, allocator, scaler calibration
        step()
    stages: dict[str, list[float]] = {}
    for _ in range(20):
        step(stages)
    whole = []
    for _ in range(15):
        start = synced()
        step()
        whole.append((synced() - start) * 1e3)
    stages["total"] = whole
    if precision == "32-true" and not memory_format == torch.channels_last and batch["image"].shape[0] == 16:
        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
            for _ in range(3):
                step()
            torch.cuda.synchronize()
        print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=12, max_name_column_width=40))
    return {name: statistics.median(values) for name, values in stages.items()}


def main() -> None:
    torch.backends.cudnn.benchmark = True
    generate_synthetic("/tmp/probe", n_train=32, n_val=0, size=(640, 640), seed=0, progress=False)
    for conf, batch_size, nhwc in CASES:
        cfg = load_config(conf, [f"train.batch_size={batch_size}"])
        memory_format = torch.channels_last if nhwc else torch.contiguous_format
        batch = fixed_batch(cfg, batch_size, memory_format)
        for precision in ("32-true", "16-mixed", "bf16-mixed"):
            ms = probe(cfg, precision, batch, memory_format)
            stages = " ".join(f"{k} {v:6.1f}ms" for k, v in ms.items())
            print(f"{conf} bs{batch_size} nhwc={nhwc} {precision:10s} {stages} => "
                  f"{batch_size / ms['total'] * 1e3:5.0f} img/s", flush=True)


if __name__ == "__main__":
    main()

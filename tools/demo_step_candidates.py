"""Training-step rate of candidate demo settings on this CPU, side by side (variants take turns).

    .venv/bin/python tools/demo_step_candidates.py [--rounds 5] [--compile]

Times forward + backward of the demo model (configs/demo.toml) on random input for each variant,
in rounds so that a slow moment of the machine hits every variant alike; prints the median ms per
step, img/s and the ratio to the demo's own setting. A speed candidate is worth a training run only
when it is faster here; whether it also reaches the accuracy is for `ocrkit train --time-limit`.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from ocrkit.core.config import load_config
from ocrkit.core.machine import cpu_summary
from ocrkit.core.model import build_model


def variants(args) -> dict[str, dict]:
    out = {
        "demo: 8x320x320": {"shape": (8, 3, 320, 320)},
        "channels-last": {"shape": (8, 3, 320, 320), "channels_last": True},
        "crop 256x256": {"shape": (8, 3, 256, 256)},
        "batch 4": {"shape": (4, 3, 320, 320)},
        "width 24/96/24": {
            "shape": (8, 3, 320, 320),
            "model": {"base_width": 24, "inner_channels": 96, "head_channels": 24},
        },
    }
    if args.compile:
        out["torch.compile"] = {"shape": (8, 3, 320, 320), "compile": True}
    return out


def build(spec: dict):
    cfg = load_config("configs/demo.toml", [f"model.{k}={v}" for k, v in spec.get("model", {}).items()])
    torch.manual_seed(0)
    fmt = torch.channels_last if spec.get("channels_last") else torch.contiguous_format
    model = build_model(cfg.model).to(memory_format=fmt).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    run = torch.compile(model) if spec.get("compile") else model
    images = torch.randn(spec["shape"]).contiguous(memory_format=fmt)

    def step() -> float:
        start = time.perf_counter()
        outputs = run(images)
        sum(v.float().mean() for v in outputs.values()).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return time.perf_counter() - start

    first = step()  # warm-up (and compilation)
    return step, first


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--compile", action="store_true")
    args = parser.parse_args()
    print(f"machine: {cpu_summary()}; torch {torch.__version__}, {torch.get_num_threads()} threads")
    specs = variants(args)
    steps, first = {}, {}
    for name, spec in specs.items():
        steps[name], first[name] = build(spec)
    times: dict[str, list[float]] = {name: [] for name in specs}
    for _ in range(args.rounds):
        for name in specs:
            times[name].append(steps[name]())
    base = next(iter(specs))
    base_rate = specs[base]["shape"][0] / statistics.median(times[base])
    print(f"{'variant':<18} {'first ms':>9} {'median ms':>10} {'img/s':>7} {'vs demo':>8}")
    for name, spec in specs.items():
        median = statistics.median(times[name])
        rate = spec["shape"][0] / median
        print(f"{name:<18} {first[name] * 1e3:>9.0f} {median * 1e3:>10.0f} {rate:>7.2f} {rate / base_rate:>7.2f}x")


if __name__ == "__main__":
    main()

"""ocrkit train."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from ocrkit.cli.common import ConfigOption, SetOption, SkipBadOption, out_console, resolve_config
from ocrkit.core.engine.launch import Launch, launch, strip_launcher_options
from ocrkit.core.errors import OcrkitError
from ocrkit.core.ranks import RankLayout, under_torchrun


def train_command(
    config: ConfigOption = None,
    data: Annotated[
        str | None, typer.Option(help="Training data: ICDAR dir or JSON (default: built-in synthetic).")
    ] = None,
    val_data: Annotated[str | None, typer.Option(help="Validation data, same formats.")] = None,
    precision: Annotated[
        str | None,
        typer.Option(
            help="32-true | 16-mixed | bf16-mixed | auto (aliases 32, 16, bf16); "
            "auto: the fastest mode measured safe here."
        ),
    ] = None,
    epochs: Annotated[int | None, typer.Option(help="Epochs to train (in total, across resumes).")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Images per micro-batch.")] = None,
    accumulate: Annotated[
        int | None, typer.Option(min=1, help="Micro-batches per optimizer step (gradient accumulation).")
    ] = None,
    device: Annotated[str | None, typer.Option(help="cpu | cuda | auto.")] = None,
    time_limit: Annotated[
        float | None, typer.Option(min=0.01, help="Minutes to train: the step count and LR schedule are fitted to it.")
    ] = None,
    name: Annotated[str, typer.Option(help="Run name: runs/train/<name>, auto-incremented.")] = "exp",
    resume: Annotated[Path | None, typer.Option(help="Continue a run (its directory or a checkpoint) exactly.")] = None,
    init_from: Annotated[Path | None, typer.Option(help="Start a new run from these weights only.")] = None,
    overfit_batches: Annotated[int, typer.Option(min=0, help="Sanity check: train on this many fixed batches.")] = 0,
    profile: Annotated[
        bool, typer.Option("--profile", help="Per-stage step times at each epoch end and in TensorBoard.")
    ] = False,
    profile_trace: Annotated[
        int | None, typer.Option(min=0, help="Also write a torch.profiler trace of this many steps.")
    ] = None,
    skip_bad: SkipBadOption = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress output.")] = False,
    devices: Annotated[
        int | None,
        typer.Option(
            min=1, help="Train in this many processes per machine (one per GPU; on CPU, gloo): starts torchrun."
        ),
    ] = None,
    nodes: Annotated[int, typer.Option(min=1, help="With --devices: machines in the job (torchrun --nnodes).")] = 1,
    node_rank: Annotated[int, typer.Option(min=0, help="With --devices: this machine's index (0 = master).")] = 0,
    master_addr: Annotated[
        str | None, typer.Option(help="With --devices and --nodes > 1: the address of machine 0.")
    ] = None,
    master_port: Annotated[int, typer.Option(min=1, max=65535, help="With --master-addr: its port.")] = 29500,
    set_: SetOption = None,
) -> None:
    """Train a DBNet detector; writes runs/train/<name> (config, checkpoints, metrics, TensorBoard)."""
    if devices is not None:
        launch_processes(Launch(devices, nodes, node_rank, master_addr, master_port))
    elif nodes > 1 or master_addr is not None:
        raise OcrkitError("--nodes, --node-rank and --master-addr go with --devices (processes per machine)")
    from ocrkit.core.engine.train_job import resolve_resume, run_training  # torch: only when used

    if resume is not None and init_from is not None:
        raise OcrkitError("--resume continues a run; --init-from starts a new one from weights: pick one")
    if overfit_batches and val_data is not None:
        raise OcrkitError("--overfit-batches validates on the batches it trains on: leave out --val-data")
    if resume is not None and config is None:
        config = resolve_resume(resume)[1] / "config.toml"  # the run's own resolved config
    cfg = resolve_config(
        config,
        set_,
        data__train=data,
        data__val=val_data,
        train__precision=precision,
        train__epochs=epochs,
        train__batch_size=batch_size,
        train__accumulate=accumulate,
        train__device=device,
        train__time_limit=time_limit,
        data__skip_bad=skip_bad,
        log__quiet=quiet or None,
        train__profile=profile or None,
        train__profile_trace_steps=profile_trace,
    )
    result = run_training(cfg, name, resume, init_from, overfit_batches, quiet=cfg.log.quiet)
    if not RankLayout.from_env().is_main:
        return  # under torchrun, rank 0 reports
    state = result.state
    out_console.print(f"run directory: {result.run_dir}")
    if result.last_losses:
        out_console.print(f"final loss: {result.last_losses['loss']:.4f}")
    if cfg.train.time_limit is not None:
        planned = state.planned_steps if state.planned_steps is not None else "no plan (ended before it)"
        out_console.print(
            f"time budget {cfg.train.time_limit:g} min: {state.step} steps trained in "
            f"{state.elapsed_s / 60:.1f} min (planned: {planned})"
        )
    if state.best_step >= 0:
        out_console.print(f"best val hmean {state.best_hmean:.4f} at step {state.best_step}")
        # without --val-data (the built-in set) the checkpoint's own config names the data
        data = f" --data {cfg.data.val}" if cfg.data.val else ""
        out_console.print("evaluate:  " + f"ocrkit eval --checkpoint {result.best_checkpoint}{data}", soft_wrap=True)
        out_console.print(
            "predict:   " + f"ocrkit predict --checkpoint {result.best_checkpoint} IMAGE...", soft_wrap=True
        )
    out_console.print(f"TensorBoard: tensorboard --logdir {result.run_dir / 'tb'}", soft_wrap=True)


def launch_processes(where: Launch) -> None:
    """Run this same command (without the launcher's options) under torchrun; exit with its code."""
    if under_torchrun():
        raise OcrkitError("--devices starts torchrun; under torchrun (or --devices's own processes) leave it out")
    raise typer.Exit(launch(where, strip_launcher_options(sys.argv[1:])))

"""``ocrkit train`` as a function: resolve data and run directory, build the trainer, run it."""

from __future__ import annotations

import json
import os
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TypedDict

from ocrkit.core.atomic import remove_stale_temps, write_text_atomic
from ocrkit.core.config import CacheConfig, OcrkitConfig, save_config
from ocrkit.core.data.formats import load_dataset
from ocrkit.core.data.sample import Sample
from ocrkit.core.data.synth import generate_synthetic
from ocrkit.core.data.train_data import TrainData
from ocrkit.core.engine.checkpoint import load_checkpoint, load_pretrained, read_init_source
from ocrkit.core.engine.distributed import distributed_session
from ocrkit.core.engine.probe import decision_document, resolve_precision
from ocrkit.core.engine.rundir import create_run_dir
from ocrkit.core.engine.trainer import Trainer, TrainResult
from ocrkit.core.errors import InputError, OcrkitError
from ocrkit.core.paths import user_cache_dir
from ocrkit.core.progress import TrainProgress


class SynthRecipe(TypedDict):
    """generate_synthetic's arguments for the built-in dataset."""

    n_train: int
    n_val: int
    size: tuple[int, int]
    seed: int


# The built-in dataset: rendered once per user and reused (bump the version if the recipe changes).
BUILTIN_SYNTH: SynthRecipe = {"n_train": 400, "n_val": 60, "size": (640, 640), "seed": 0}
BUILTIN_SYNTH_VERSION = "synth-v1"


def builtin_dataset(cfg: CacheConfig, progress: bool) -> Path:
    """Render the built-in synthetic set once; a half-written one (interrupted) is redone."""
    root = user_cache_dir(cfg) / f"{BUILTIN_SYNTH_VERSION}-s{BUILTIN_SYNTH['seed']}"
    if (root / "COMPLETE").exists():
        return root
    partial = root.with_name(root.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    generate_synthetic(partial, progress=progress, **BUILTIN_SYNTH)
    (partial / "COMPLETE").write_text("ok\n")
    shutil.rmtree(root, ignore_errors=True)
    os.replace(partial, root)
    return root


def resolve_resume(path: str | Path) -> tuple[Path, Path]:
    """A run directory or a checkpoint → (checkpoint, run directory).

    A run stopped before its first checkpoint (killed in its first epoch) has nothing to resume:
    that is a one-line error, and starting it again without ``--resume`` is the user's choice."""
    path = Path(path)
    checkpoint = path / "last.pt" if path.is_dir() else path
    if not checkpoint.is_file():
        hint = (
            " (the run stopped before its first checkpoint: start it again without --resume)" if path.is_dir() else ""
        )
        raise InputError(checkpoint, f"nothing to resume: checkpoint not found{hint}")
    return checkpoint, checkpoint.parent


def load_samples(path: str | None, skip_bad: bool, what: str) -> list[Sample]:
    if path is None:
        return []
    samples = load_dataset(path, skip_bad).samples
    if not samples:
        raise InputError(path, f"the {what} set is empty (no images with ground truth)")
    return samples


@dataclass
class TrainPlan:
    """The config a run trains with (data paths filled in) and its samples."""

    cfg: OcrkitConfig
    train: list[Sample]
    val: list[Sample]


def plan_data(cfg: OcrkitConfig, overfit_batches: int, progress: bool) -> TrainPlan:
    """Resolve the data a run trains on: the built-in set when ``data.train`` is unset, and the
    ``--overfit-batches`` settings. Works on a copy: the caller's config is left as it was."""
    cfg = cfg.model_copy(deep=True)
    if cfg.data.train is None:
        root = builtin_dataset(cfg.cache, progress)
        cfg.data.train = str(root / "train")
        if cfg.data.val is None:
            cfg.data.val = str(root / "val")
    train = load_samples(cfg.data.train, cfg.data.skip_bad, "training")
    val = load_samples(cfg.data.val, cfg.data.skip_bad, "validation")
    if overfit_batches:
        # One fixed set of batches, no augmentation, validated on exactly those images.
        train = train[: overfit_batches * cfg.train.batch_size]
        val = train
        cfg.data.augment.enabled = False
        cfg.train.checkpoint_every = cfg.train.val_every  # one-step epochs: no checkpoint per step
    return TrainPlan(cfg, train, val)


def run_training(
    cfg: OcrkitConfig,
    name: str = "exp",
    resume: str | Path | None = None,
    init_from: str | Path | None = None,
    overfit_batches: int = 0,
    quiet: bool = False,
) -> TrainResult:
    """Train in this process, or as one rank of a torchrun job (engine/distributed.py): every
    rank reads the data and the checkpoint; rank 0 makes the run directory, chooses the
    precision and writes the config, and the others follow its choices."""
    if resume and init_from:
        raise OcrkitError("--resume continues a run; --init-from starts a new one from weights: pick one")
    with distributed_session(cfg.dist, cfg.train.device) as dist:
        with dist.local_main_first():  # one process per machine renders the built-in set
            plan = plan_data(cfg, overfit_batches, progress=not quiet and dist.is_main)
        resume_state = init_state = pretrained = None
        if resume:
            checkpoint, run_dir = resolve_resume(resume)
            if dist.is_main:
                remove_stale_temps(run_dir)  # half-written checkpoints and logs of a killed process
            resume_state = (load_checkpoint(checkpoint), checkpoint)
        else:
            # model.pretrained only starts a new run: a resumed one has its weights, --init-from a whole detector
            if plan.cfg.model.pretrained and not init_from:
                with dist.local_main_first():  # one process per machine downloads torchvision's file
                    pretrained = load_pretrained(plan.cfg)
            run_dir = dist.made_by_main(lambda: create_run_dir(cfg.log.dir, "train", name))
            if init_from:
                init_state = (read_init_source(init_from), Path(init_from))
        progress = TrainProgress(enabled=not quiet and dist.is_main, log_every=cfg.train.log_every)
        if init_from and plan.cfg.model.pretrained:
            progress.message("model.pretrained is not applied: --init-from loads a whole detector")
        if dist.is_main:
            choose_precision(plan.cfg, dist.device, run_dir, progress)
            save_config(plan.cfg, run_dir / "config.toml")  # with the precision the run really uses
        plan.cfg.train.precision = dist.broadcast_object(plan.cfg.train.precision)
        data = TrainData(plan.cfg, plan.train, plan.val, shard=dist.shard, say=progress.message, device=dist.device)
        trainer = Trainer(plan.cfg, run_dir, data, dist.device, resume_state, init_state, progress, dist, pretrained)
        progress.message(trainer.global_batch_line())
        return trainer.fit()


def choose_precision(cfg: OcrkitConfig, device, run_dir: Path, progress: TrainProgress) -> None:
    """Probe a mixed or auto precision on ``device``; set the mode the run trains in, say why, warn
    when the requested mode measured slower than the fastest one, and keep the figures with the run."""
    requested = cfg.train.precision
    chosen = resolve_precision(cfg, device)
    if chosen is None:
        return
    decision, probe = chosen
    cfg.train.precision = decision.mode
    progress.message(f"precision: {decision.reason}" + (" (cached probe)" if probe.cached else ""))
    if decision.warning:
        warnings.warn(decision.warning, stacklevel=2)
    document = decision_document(requested, decision, probe)
    write_text_atomic(run_dir / "precision.json", json.dumps(document, indent=2), fsync=True)

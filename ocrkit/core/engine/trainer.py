"""The training loop. The CLI parses; engine/train_job.py builds the data and the run directory;
this trains; ``fit`` shows the whole sequence in one function.

Exact resume: data order is a pure function of (seed, epoch), augmentation of (seed, epoch,
index), and a checkpoint holds model, optimizer, scheduler, scaler, RNG and the step counters
(including how many batches of the current epoch were already trained), so N steps + resume N
equals 2N straight. With gradient accumulation an optimizer step consumes ``train.accumulate``
micro-batches and a pause only happens between optimizer steps.

Health (engine/health.py): every step's scale, skip, unscaled grad norm and raw-model update
are recorded before the EMA is touched; a non-finite loss stops the run at once with a
diagnostic file, and so does a non-finite gradient without a GradScaler (``health.nonfinite_grad``;
with one it is an overflow: the step is skipped and the scale goes down); the monitor's other
checks stop or warn per ``health.action``. A checkpoint is never written from non-finite weights:
the last good ``last.pt``/``best.pt`` stay as they were.

Several processes (torchrun, docs/distributed.md): the model is wrapped in DistributedDataParallel,
which averages the gradients in backward (skipped with ``no_sync`` on all but the last micro-batch
of an accumulated step). Each rank trains its ``Shard`` of every epoch; the ranks compare their
losses every micro-batch, so a non-finite loss anywhere stops every rank; the gradients, and so
the scaler's and the health monitor's verdicts, are identical on every rank after the all-reduce.
Rank 0 alone logs, shows progress and writes checkpoints, after every rank took its BatchNorm
statistics. With one process none of this runs: ``Distributed``'s collectives are no-ops.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from ocrkit.core.atomic import write_text_atomic
from ocrkit.core.config import OcrkitConfig
from ocrkit.core.data.dataset import batch_to_device
from ocrkit.core.data.train_data import Batch, TrainData
from ocrkit.core.engine.budget import BudgetCosts, TimeBudget
from ocrkit.core.engine.callbacks import StepReport, build_callbacks
from ocrkit.core.engine.checkpoint import load_pretrained_backbone, load_weights, save_checkpoint
from ocrkit.core.engine.distributed import Distributed, fingerprint
from ocrkit.core.engine.ema import ModelEma
from ocrkit.core.engine.health import HealthGuard, HealthStop, HealthSummary, StepHealth, UpdateProbe
from ocrkit.core.engine.inference import evaluate_model
from ocrkit.core.engine.precision import PrecisionPolicy, StepOutcome
from ocrkit.core.engine.probe import resolve_precision
from ocrkit.core.engine.schedule import build_optimizer, build_scheduler, reschedule
from ocrkit.core.errors import InputError, OcrkitError
from ocrkit.core.geometry.metric import DetectionMetrics
from ocrkit.core.model import DBLoss, build_model
from ocrkit.core.progress import TrainProgress

LOSS_TAGS = ("loss", "loss_prob", "loss_thresh", "loss_binary")
RESUME_KEYS = ("model", "optimizer", "scheduler", "train_state", "torch_rng")  # what --resume needs


@dataclass
class TrainState:
    """The counters a checkpoint keeps (``train_state``)."""

    step: int = 0  # optimizer steps taken: the one counter every log sink uses
    epoch: int = 0  # epochs completed
    batch_in_epoch: int = 0  # batches of the current epoch already trained
    best_hmean: float = -1.0
    best_step: int = -1
    skipped_steps: int = 0
    elapsed_s: float = 0.0  # training-loop wall time, resumes included (train.time_limit)
    planned_steps: int | None = None  # the time budget's plan, once made: the schedule ends here
    planned_warmup: int | None = None
    validation_s: float = 0.0  # the last validation pass's wall time (the budget's stop rule needs it)
    world_size: int = 1  # training processes: the step counters and the data order are per world size


@dataclass
class TrainResult:
    """What a run produced: its directory, counters, metrics and the per-step figures the
    benches read."""

    run_dir: Path
    state: TrainState
    precision: str = "32-true"  # the mode the run trained in (``auto`` resolved)
    loss_scaling: bool = False  # whether a GradScaler scaled the loss (16-mixed)
    last_losses: dict[str, float] = field(default_factory=dict)
    last_metrics: DetectionMetrics | None = None
    last_ema_metrics: DetectionMetrics | None = None
    health: HealthSummary | None = None
    budget: BudgetCosts | None = None  # what the time budget's plan was made from
    images_per_s: list[float] = field(default_factory=list)  # one per optimizer step, data wait included
    step_images_per_s: list[float] = field(default_factory=list)  # the step alone: what the model could do
    losses: list[float] = field(default_factory=list)  # total loss per optimizer step
    profile: list[dict[str, float]] = field(default_factory=list)  # ms per step by stage, one per epoch

    @property
    def best_checkpoint(self) -> Path:
        return self.run_dir / "best.pt"


@dataclass
class _StepTaken:
    """One optimizer step, before the schedule and the EMA move."""

    losses: dict[str, float]
    lr: float
    outcome: StepOutcome
    update_ratio: float | None
    images: int
    started: float  # perf_counter when its data had arrived


class Trainer:
    """Trains a DBNet on a ``TrainData`` and validates it, per the ``train`` section (and
    ``health``, ``loss``, ``model``, ``log``, ``postprocess`` for validation).

    Owns the model, optimizer, LR schedule, precision policy, EMA and the step counters; the
    data, health reactions, time budget and output sinks are objects of their own. ``fit`` runs;
    ``state_dict``/``load_state_dict`` are what a checkpoint holds.
    """

    def __init__(
        self,
        cfg: OcrkitConfig,
        run_dir: Path,
        data: TrainData,
        device: torch.device,
        resume_state: tuple[dict[str, Any], Path] | None = None,
        init_state: tuple[dict[str, Any], Path] | None = None,
        progress: TrainProgress | None = None,
        dist: Distributed | None = None,
        pretrained: tuple[dict[str, torch.Tensor], str] | None = None,
    ):
        self.cfg, self.run_dir, self.data, self.device = cfg, run_dir, data, device
        self.dist = dist or Distributed(device=device)
        progress = progress or TrainProgress(enabled=False)
        self.callbacks, self.profiler = build_callbacks(cfg, run_dir, device, progress, self.dist.is_main)
        # validation shows its own bar only on a terminal, and only rank 0's
        self.interactive = progress.interactive and self.dist.is_main
        torch.manual_seed(cfg.train.seed)
        if device.type == "cuda":
            torch.backends.cudnn.benchmark = cfg.train.cudnn_benchmark
        self.memory_format = torch.channels_last if cfg.train.channels_last else torch.contiguous_format
        # Module.to accepts memory_format at run time; torch's overloads of it do not list it
        self.model = build_model(cfg.model).to(device, memory_format=self.memory_format)  # type: ignore[call-overload]
        # a new run's starting weights, before the EMA copies them
        if init_state is not None:
            self.say(load_weights(self.model, init_state[0], init_state[1], cfg.model))
        elif pretrained is not None:
            self.say(load_pretrained_backbone(self.model, pretrained))
        self.net = self._wrap_for_processes(self.model)  # what the training forward runs through
        self.loss_fn = DBLoss(cfg.loss, k=cfg.model.k)
        # `ocrkit train` resolves (and reports) an auto precision before; benches build trainers directly
        if cfg.train.precision == "auto":
            chosen = resolve_precision(cfg, device)
            assert chosen is not None  # only 32-true goes without a probe
            decision, _ = chosen
            cfg.train.precision = decision.mode
            self.say(f"precision: {decision.reason}")
        self.policy = PrecisionPolicy(cfg.train.precision, device, cfg.train.scaler)
        self.steps_per_epoch = data.steps_per_epoch
        self.nominal_steps = cfg.train.max_steps or cfg.train.epochs * self.steps_per_epoch
        self.set_total_steps(self.nominal_steps)
        self.optimizer = build_optimizer(self.model.parameters(), self._train_settings())
        self.scheduler = build_scheduler(self.optimizer, cfg.train, self.total_steps)
        self.guard = HealthGuard(
            cfg.health,
            run_dir,
            cfg.train.precision,
            uses_scaler=self.policy.scaler is not None,
            writes_files=self.dist.is_main,
        )
        self.update_probe = UpdateProbe(self.model, cfg.health.track_updates)
        self.ema = ModelEma(self.model, cfg.train.ema) if cfg.train.ema.enabled else None
        self.budget = TimeBudget(cfg.train, has_validation=bool(data.val))
        self.result = TrainResult(run_dir, TrainState(), cfg.train.precision, self.policy.scaler is not None)
        self.state = self.result.state
        self.state.world_size = self.dist.world_size
        self.resumed = resume_state is not None
        if resume_state is not None:
            self.load_state_dict(*resume_state)
        self._clock_start = time.perf_counter()
        self._elapsed_before = self.state.elapsed_s
        self.checkpoint_s = 0.0  # what the last checkpoint write cost (the budget plans with it)
        self._tick = self._clock_start  # when the previous step ended (a step's time includes its data wait)
        self._steps_this_epoch = 0

    # ------------------------------------------------------------------ several processes
    def _wrap_for_processes(self, model: torch.nn.Module) -> torch.nn.Module:
        """DistributedDataParallel around the model (SyncBatchNorm first with ``train.sync_bn``);
        the model itself with one process. ``self.model`` stays the plain module: checkpoints,
        the EMA and validation use it."""
        if not self.dist.enabled:
            return model
        if self.cfg.train.sync_bn:
            if self.device.type != "cuda":
                raise OcrkitError(
                    "train.sync_bn needs CUDA: torch's SyncBatchNorm does not run on CPU; set train.sync_bn = false"
                )
            self.model = model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
        device_ids = [self.device.index] if self.device.type == "cuda" else None
        return torch.nn.parallel.DistributedDataParallel(model, device_ids=device_ids)

    def _train_settings(self) -> Any:
        """``train`` with the learning rate this run uses: times the number of processes with
        ``train.scale_lr`` (the linear scaling rule), else as configured."""
        train = self.cfg.train
        if not (train.scale_lr and self.dist.enabled):
            return train
        return train.model_copy(update={"lr": train.lr * self.dist.world_size})

    def _gradient_sync(self, last_micro_batch: bool) -> contextlib.AbstractContextManager:
        if self.net is self.model or last_micro_batch:
            return contextlib.nullcontext()
        return self.net.no_sync()  # type: ignore[operator]  # DistributedDataParallel

    def _losses_of_all_ranks(
        self, values: list[float], terms: dict[str, torch.Tensor], batch: Batch, lr: float
    ) -> list[float]:
        """This micro-batch's losses averaged over the ranks (what the global batch scored); a
        non-finite loss on any rank stops every rank, the first such rank writing the diagnostic."""
        if not self.dist.enabled:
            if not all(math.isfinite(v) for v in values):
                self._stop_on_nonfinite_loss(terms, batch, lr)
            return values
        ranks = self.dist.gather_floats(values)
        bad = [r for r, row in enumerate(ranks) if not all(math.isfinite(v) for v in row)]
        if bad and bad[0] == self.dist.rank:
            self._stop_on_nonfinite_loss(terms, batch, lr, writes_files=True)
        if bad:
            path = self.guard.diagnostic_path("nonfinite_loss", self.state.step + 1)
            raise HealthStop(
                f"rank {bad[0]} met a non-finite loss at step {self.state.step + 1}: every rank stops "
                f"(its diagnostic: {path})"
            )
        return [sum(column) / len(ranks) for column in zip(*ranks, strict=True)]

    def global_batch_line(self) -> str:
        """How many images one optimizer step takes, and the learning rate it uses."""
        train, world = self.cfg.train, self.dist.world_size
        lr = self.optimizer.param_groups[0].get("initial_lr", self.optimizer.param_groups[0]["lr"])
        scaled = f" (train.scale_lr: {train.lr:g} x {world} processes)" if lr != train.lr else ""
        return (
            f"global batch {train.batch_size * world * train.accumulate} = {train.batch_size} per process x "
            f"{world} process{'es' if world > 1 else ''} x {train.accumulate} micro-batch"
            f"{'es' if train.accumulate > 1 else ''}; lr {lr:g}{scaled}"
        )

    # ------------------------------------------------------------------ the loop
    def fit(self) -> TrainResult:
        """Epochs of optimizer steps until the schedule (or the time budget) ends, or a pause
        (``train.stop_at_step``) is due. Per step: forward, loss and backward over the
        micro-batches → optimizer step (skipped on overflow) → LR schedule → EMA → health, logs
        and the time budget. Per epoch: summaries → validate? → re-plan → checkpoint?"""
        self._clock_start = time.perf_counter()
        self.callbacks.fit_start(self.state.step, self.resumed)
        try:
            if not self.finished():
                self._say_all(
                    self.guard.check_overflow_path(
                        self.state.step, self.policy, self.model, self.optimizer, self.cfg.train.grad_clip
                    )
                )
            while not self.finished():
                self.begin_epoch()
                for micro_batches in self.data.step_groups(self.state.epoch, self.state.batch_in_epoch, self.device):
                    self.callbacks.stage("data")
                    step = self.optimizer_step(micro_batches)
                    if step.outcome.stepped:
                        self.scheduler.step()  # the schedule follows real steps, not skipped ones
                        if self.ema is not None:
                            self.ema.update(self.model)  # after the raw model's update was measured
                    self.after_step(step, len(micro_batches))
                    if self.pause_due() or self.finished() or self.epoch_done():
                        break
                self.callbacks.epoch_end(self.state.epoch, self.state.step)
                if self.pause_due() and not self.finished():
                    self.save("last.pt")  # mid-epoch: batch_in_epoch says where to pick up
                    self.say(f"paused at step {self.state.step}: resume with --resume {self.run_dir}")
                    break
                self.end_epoch()
                if self.validation_due():
                    self.result.last_metrics, self.result.last_ema_metrics = self.validate()
                self.log_epoch_cache()  # after validation, whose tensor lookups count too
                self.budget.at_epoch_end(self)
                self._follow_rank0_budget()
                if self.checkpoint_due():
                    self.save("last.pt")
        except HealthStop as stop:
            stop.result = self.result  # the benches report a stopped run's figures
            raise
        finally:
            self.close()
        return self.result

    def optimizer_step(self, micro_batches: list[Batch]) -> _StepTaken:
        """Forward, loss and backward over each micro-batch, then one optimizer step through the
        precision policy (unscale → clip → step, skipped on non-finite gradients)."""
        started = time.perf_counter()
        lr = self.optimizer.param_groups[0]["lr"]
        totals = dict.fromkeys(LOSS_TAGS, 0.0)
        for i, batch in enumerate(micro_batches):
            batch = batch_to_device(batch, self.device, self.cfg.data, self.cfg.maps)
            # several processes: gradients are averaged across ranks once per optimizer step, in
            # the last micro-batch's backward; the others only accumulate locally
            last = i == len(micro_batches) - 1
            with self._gradient_sync(last), self.policy.autocast():
                outputs = self.net(batch["image"].contiguous(memory_format=self.memory_format))
            self.callbacks.stage("forward")  # the host-to-device copy counts as forward
            terms = self.loss_fn(outputs, batch)  # float32 whatever autocast did
            self.callbacks.stage("loss")
            with self._gradient_sync(last):
                self.policy.backward(terms["loss"], micro_batches=len(micro_batches))
            # One host sync per micro-batch, after backward is queued, so that on a GPU the host
            # does not wait between forward and backward. A non-finite loss still stops the run
            # before any optimizer step: the weights saved in the diagnostic are untouched.
            values = torch.stack([terms[k].detach() for k in LOSS_TAGS]).tolist()
            values = self._losses_of_all_ranks(values, terms, batch, lr)
            for k, v in zip(LOSS_TAGS, values, strict=True):
                totals[k] += v / len(micro_batches)
            self.callbacks.stage("backward")
        self.update_probe.before_step()
        outcome = self.policy.step(self.optimizer, self.model.parameters(), self.cfg.train.grad_clip)
        if outcome.nonfinite and self.cfg.health.nonfinite_grad == "stop":  # no scaler: never routine
            self._stop_on_nonfinite_grad(totals, micro_batches, lr, outcome)
        update_ratio = self.update_probe.after_step()  # raw model, before the EMA moves
        self.state.step += 1
        images = sum(b["image"].shape[0] for b in micro_batches) * self.dist.world_size  # the global batch
        return _StepTaken(totals, lr, outcome, update_ratio, images, started)

    def after_step(self, step: _StepTaken, batches: int) -> None:
        """Health checks, the step's figures to every sink, and the time budget."""
        self.state.skipped_steps += not step.outcome.stepped
        health = StepHealth(
            self.state.step,
            step.lr,
            step.outcome.scale,
            not step.outcome.stepped,
            step.outcome.grad_norm,
            step.update_ratio,
        )
        self._say_all(self.guard.record(health))
        values = self.guard.step_values(health, self.state.skipped_steps)
        self.callbacks.stage("optimizer")  # the step, schedule, EMA and health checks
        now = time.perf_counter()
        images_per_s = step.images / max(now - self._tick, 1e-9)
        self.result.step_images_per_s.append(step.images / max(now - step.started, 1e-9))
        self.budget.record_step(now - self._tick)
        self._tick = now
        self.state.batch_in_epoch += batches
        self._steps_this_epoch += 1
        values = {**{f"train/{k}": v for k, v in step.losses.items()}, **values, "train/img_per_s": images_per_s}
        self.result.images_per_s.append(images_per_s)
        self.result.losses.append(step.losses["loss"])
        self.result.last_losses = step.losses
        self.callbacks.step_end(StepReport(self.state.step, self.state.epoch, step.losses, values, images_per_s))
        self.budget.after_step(self)
        self._follow_rank0_budget()

    # ------------------------------------------------------------------ epochs
    def begin_epoch(self) -> None:
        self.model.train()
        self.data.begin_epoch()
        self._steps_this_epoch = self.state.batch_in_epoch // self.cfg.train.accumulate
        self.callbacks.epoch_start(self.state.epoch, self.epochs, self.steps_per_epoch, self._steps_this_epoch)
        self._tick = time.perf_counter()

    def end_epoch(self) -> None:
        self.state.epoch += 1
        self.state.batch_in_epoch = 0
        values, line = self.guard.end_epoch(self.state.epoch)
        self.callbacks.scalars(values, self.state.step, self.state.epoch)
        self.say(line)

    def log_epoch_cache(self) -> None:
        """The epoch's store hit rates, reported by rank 0 for its machine's store, after every
        rank there has added its counts to it."""
        if self.dist.enabled:
            self.data.flush_stats()
            self.dist.barrier()
            if not self.dist.is_main:
                return
        values, line, problems = self.data.end_epoch(self.state.epoch)
        self.callbacks.scalars(values, self.state.step, self.state.epoch)
        self.say(line)
        for problem in problems:
            warnings.warn(problem, stacklevel=2)

    def epoch_done(self) -> bool:
        return self._steps_this_epoch >= self.steps_per_epoch

    def finished(self) -> bool:
        return self.state.step >= self.total_steps

    def pause_due(self) -> bool:
        stop = self.cfg.train.stop_at_step
        return stop is not None and self.state.step >= stop

    def checkpoint_due(self) -> bool:
        return self.finished() or self.state.epoch % self.cfg.train.checkpoint_every == 0

    def validation_due(self) -> bool:
        return bool(self.data.val) and (self.finished() or self.state.epoch % self.cfg.train.val_every == 0)

    def _follow_rank0_budget(self) -> None:
        """Several processes, a time limit: every rank takes rank 0's plan (each rank's clock
        sees slightly different step times; the ranks must agree on where the schedule ends)."""
        if not (self.dist.enabled and self.cfg.train.time_limit is not None):
            return
        state = self.state
        plan = [self.total_steps, state.planned_steps or -1, state.planned_warmup or -1]
        total, planned, warmup = (int(v) for v in self.dist.broadcast_floats(plan))
        if planned >= 0 and (planned, warmup) != (state.planned_steps, state.planned_warmup):
            state.planned_steps, state.planned_warmup = planned, warmup
            reschedule(self.scheduler, planned, warmup)
        if total != self.total_steps:
            self.set_total_steps(total)

    def set_total_steps(self, total: int) -> None:
        self.total_steps = total
        self.epochs = math.ceil(total / self.steps_per_epoch)

    def close(self) -> None:
        self.data.close()
        self.result.health = self.guard.summary()
        self.result.budget = self.budget.costs
        self.result.profile = self.profiler.summaries
        if self.dist.is_main:
            health = json.dumps(self.result.health.to_dict(), indent=2)
            write_text_atomic(self.run_dir / "health.json", health, fsync=True)
        self.callbacks.fit_end()

    # ------------------------------------------------------------------ validation
    def validate(self) -> tuple[DetectionMetrics, DetectionMetrics | None]:
        """Raw model (selects best.pt) and, with EMA on, the EMA weights beside it."""
        start = time.perf_counter()
        self._take_rank0_buffers()
        # wall time of the loop when this model was ready: time-to-accuracy reads it off metrics.csv
        self.callbacks.scalars({"time/elapsed_min": self.elapsed_s() / 60}, self.state.step, self.state.epoch)
        metrics = self._evaluate(self.model, "val")
        ema_metrics = self._evaluate(self.ema.module, "val_ema") if self.ema is not None else None
        if metrics.hmean > self.state.best_hmean:
            self.state.best_hmean, self.state.best_step = metrics.hmean, self.state.step
            self.save("best.pt")
        ema_text = (
            f"  | EMA P {ema_metrics.precision:.4f}  R {ema_metrics.recall:.4f}  H {ema_metrics.hmean:.4f}"
            if ema_metrics
            else ""
        )
        self.say(
            f"validation at step {self.state.step}: P {metrics.precision:.4f}  R {metrics.recall:.4f}  "
            f"H {metrics.hmean:.4f}  (best {self.state.best_hmean:.4f} at step {self.state.best_step}){ema_text}"
        )
        self.model.train()
        self.state.validation_s = time.perf_counter() - start
        return metrics, ema_metrics

    def _evaluate(self, model: torch.nn.Module, tag: str) -> DetectionMetrics:
        out_dir = self.run_dir / tag / f"step{self.state.step:07d}"
        metrics = evaluate_model(
            model,
            self.data.val,
            self.cfg.data,
            self.cfg.postprocess,
            self.device,
            batch_size=self.cfg.train.eval_batch_size,
            out_dir=out_dir,
            overlays=self.cfg.train.overlays,
            progress=self.interactive,
            store=self.data.store,
            dist=self.dist,
        )
        values = {f"{tag}/precision": metrics.precision, f"{tag}/recall": metrics.recall, f"{tag}/hmean": metrics.hmean}
        self.callbacks.scalars(values, self.state.step, self.state.epoch)
        return metrics

    def measure_validation_s(self) -> float:
        """One validation pass, estimated from one timed batch after a warm-up batch (the EMA
        model, when on, is validated too)."""
        val = self.data.val
        if not val:
            return 0.0
        n = self.cfg.train.eval_batch_size
        warm, timed = val[:n], val[n : 2 * n] or val[:n]

        def evaluate(samples: list) -> None:
            evaluate_model(
                self.model,
                samples,
                self.cfg.data,
                self.cfg.postprocess,
                self.device,
                batch_size=n,
                store=self.data.store,
            )

        evaluate(warm)
        start = time.perf_counter()
        evaluate(timed)
        per_image = (time.perf_counter() - start) / len(timed)
        self.model.train()
        return per_image * len(val) * (2 if self.ema is not None else 1)

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        """Everything a checkpoint holds: resuming from it continues the run exactly."""
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.policy.state_dict(),
            "train_state": asdict(self.state),
            "best_metric": {"val/hmean": self.state.best_hmean},
            "config": self.cfg.model_dump(mode="json"),
            "torch_rng": torch.get_rng_state(),
            **({"ema": self.ema.state_dict()} if self.ema else {}),
        }

    def load_state_dict(self, state: dict[str, Any], source: Path) -> None:
        """Continue from a checkpoint (``source`` names it in errors)."""
        missing = [key for key in RESUME_KEYS if key not in state]
        if missing:
            raise InputError(
                source,
                f"cannot resume from this checkpoint: it has no {', '.join(missing)} "
                "(a weights-only file? use --init-from to start a new run from its weights)",
            )
        trained_with = int(state["train_state"].get("world_size", 1))
        if trained_with != self.dist.world_size:
            raise InputError(
                source,
                f"this run trained with {trained_with} process{'es' if trained_with > 1 else ''} and is resumed with "
                f"{self.dist.world_size}: resume it with {trained_with} (ocrkit train --devices {trained_with} "
                f"--resume ..., or torchrun --nproc-per-node {trained_with}); each rank's share of an epoch and the "
                "step counters depend on the number of processes",
            )
        load_weights(self.model, state, source, self.cfg.model)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.policy.load_state_dict(state.get("scaler", {}))
        self.state = self.result.state = TrainState(**state["train_state"])
        if self.state.planned_steps is not None:  # the budget's plan (the scheduler state holds it too)
            self.set_total_steps(self.state.planned_steps)
        torch.set_rng_state(state["torch_rng"])
        if self.ema is not None and "ema" in state:
            self.ema.load_state_dict(state["ema"])

    def save(self, name: str) -> Path:
        """Write ``<run>/<name>`` atomically (the one place checkpoints are written)."""
        start = time.perf_counter()
        self._refuse_nonfinite_weights(name)
        self._take_rank0_buffers()
        if self.dist.enabled:
            self.dist.check_same("the model weights", fingerprint(self.model))
        self.state.elapsed_s = self.elapsed_s()
        path = self.run_dir / name
        if self.dist.is_main:
            save_checkpoint(path, self.state_dict())
        self.checkpoint_s = time.perf_counter() - start
        return path

    def _take_rank0_buffers(self) -> None:
        self.dist.sync_buffers(self.model, *([self.ema.module] if self.ema is not None else []))

    def elapsed_s(self) -> float:
        return self._elapsed_before + time.perf_counter() - self._clock_start

    # ------------------------------------------------------------------ messages and health
    def say(self, text: str | None) -> None:
        self.callbacks.message(text)

    def _say_all(self, lines: list[str]) -> None:
        for line in lines:
            self.say(line)

    def _stems(self, batch: Batch) -> list[str]:
        return [self.data.dataset.samples[int(i)].stem for i in batch["index"].tolist()] if "index" in batch else []

    def _stop_on_nonfinite_loss(
        self, terms: dict[str, torch.Tensor], batch: Batch, lr: float, writes_files: bool = False
    ) -> None:
        stems = self._stems(batch)
        # which samples brought inf/NaN in (a corrupt image or label map), looked at only now
        poisoned = [
            stem
            for i, stem in enumerate(stems)
            if any(
                v.is_floating_point() and v.dim() and not bool(torch.isfinite(v[i]).all())
                for v in batch.values()
                if isinstance(v, torch.Tensor) and v.shape[:1] == (len(stems),)
            )
        ]
        self.guard.stop_on_nonfinite_loss(
            self.state.step + 1, terms, batch, stems, lr, self.policy.scale, self.model, poisoned, writes_files
        )

    def _stop_on_nonfinite_grad(
        self, losses: dict[str, float], micro_batches: list[Batch], lr: float, outcome: StepOutcome
    ) -> None:
        names = [name for name, _ in self.model.named_parameters()]  # the order step() was given
        self.guard.stop_on_nonfinite_grad(
            self.state.step + 1,
            losses,
            micro_batches,
            [stem for batch in micro_batches for stem in self._stems(batch)],
            lr,
            outcome,
            [names[i] for i in outcome.nonfinite],
            self.model,
        )

    def _refuse_nonfinite_weights(self, name: str) -> None:
        """Stop rather than write a checkpoint of inf/NaN weights over the last good one."""
        modules = {"": self.model, **({"ema.": self.ema.module} if self.ema is not None else {})}
        tensors = [
            (prefix + key, value)
            for prefix, module in modules.items()
            for key, value in module.state_dict().items()
            if value.is_floating_point()
        ]
        if not tensors:
            return
        finite = torch.stack([torch.isfinite(value).all() for _, value in tensors]).tolist()  # one sync
        bad = [key for (key, _), ok in zip(tensors, finite, strict=True) if not ok]
        if bad:
            self.guard.stop_on_nonfinite_weights(self.state.step, name, bad, self.policy.scale)

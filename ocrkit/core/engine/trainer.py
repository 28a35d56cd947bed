"""The training loop. The CLI parses; this builds, runs and closes.

Exact resume: data order is a pure function of (seed, epoch), augmentation of (seed, epoch,
index), and a checkpoint holds model, optimizer, scheduler, scaler, RNG and the step counters
(including how many batches of the current epoch were already trained), so N steps + resume N
equals 2N straight. With gradient accumulation an optimizer step consumes ``train.accumulate``
micro-batches and a pause only happens between optimizer steps.

Health (engine/health.py): every step's scale, skip, unscaled grad norm and raw-model update
are recorded before the EMA is touched; a non-finite loss stops the run at once with a
diagnostic file; the monitor's other checks stop or warn per ``health.action``.
"""

from __future__ import annotations

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
from ocrkit.core.data.dataset import (
    TrainDataset,
    batch_to_device,
    build_train_loader,
    default_workers,
    pin_memory_for,
)
from ocrkit.core.data.sample import Sample
from ocrkit.core.engine.budget import BudgetCosts, plan_total_steps, scaled_warmup
from ocrkit.core.engine.checkpoint import load_weights, save_checkpoint
from ocrkit.core.engine.ema import ModelEma
from ocrkit.core.engine.health import HealthMonitor, HealthStop, HealthSummary, StepHealth, UpdateProbe, probe_overflow_path
from ocrkit.core.engine.inference import evaluate_model
from ocrkit.core.engine.logger import RunLogger
from ocrkit.core.engine.precision import PrecisionPolicy
from ocrkit.core.engine.probe import resolve_precision
from ocrkit.core.engine.profiling import StageTimer, summary_line, summary_scalars, trace_window
from ocrkit.core.engine.schedule import build_optimizer, build_scheduler, reschedule
from ocrkit.core.errors import OcrkitError
from ocrkit.core.geometry.metric import DetectionMetrics
from ocrkit.core.model import DBLoss, build_model
from ocrkit.core.progress import TrainProgress
from ocrkit.core.data.cached import ImageLayer, open_data_store
from ocrkit.core.data.preload import preload_images
from ocrkit.core.data.store_size import estimate_store_bytes
from ocrkit.core.store.stats import EpochCacheStats

LOSS_TAGS = ("loss", "loss_prob", "loss_thresh", "loss_binary")


@dataclass
class TrainState:
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


@dataclass
class TrainResult:
    run_dir: Path
    state: TrainState
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


class Trainer:
    def __init__(
        self,
        cfg: OcrkitConfig,
        run_dir: Path,
        train_samples: list[Sample],
        val_samples: list[Sample],
        device: torch.device,
        resume_state: tuple[dict[str, Any], Path] | None = None,
        init_state: tuple[dict[str, Any], Path] | None = None,
        progress: TrainProgress | None = None,
    ):
        if len(train_samples) == 0:
            raise OcrkitError("the training set is empty")
        self.cfg, self.run_dir, self.device = cfg, run_dir, device
        self.val_samples = val_samples
        self.progress = progress or TrainProgress(enabled=False)
        torch.manual_seed(cfg.train.seed)
        if device.type == "cuda":
            torch.backends.cudnn.benchmark = cfg.train.cudnn_benchmark
        self.memory_format = torch.channels_last if cfg.train.channels_last else torch.contiguous_format
        self.model = build_model(cfg.model).to(device, memory_format=self.memory_format)
        if init_state is not None:
            load_weights(self.model, init_state[0], init_state[1], cfg.model)
        self.loss_fn = DBLoss(cfg.loss, k=cfg.model.k)
        if cfg.train.precision == "auto":  # `ocrkit train` resolves (and reports) it before; benches build trainers directly
            decision, _ = resolve_precision(cfg, device)
            cfg.train.precision = decision.mode
            self.progress.message(f"precision: {decision.reason}")
        self.policy = PrecisionPolicy(cfg.train.precision, device, cfg.train.scaler)
        self.store = open_data_store(cfg.cache)
        self.dataset = TrainDataset(train_samples, cfg.data, cfg.maps, cfg.train.seed, self.store,
                                    self._preload(train_samples))
        self.cache_stats = EpochCacheStats(self.store) if self.store is not None else None
        self._warn_if_store_too_small(train_samples)
        self.drop_last = len(train_samples) >= cfg.train.batch_size
        self.steps_per_epoch = steps_per_epoch(len(train_samples), cfg.train.batch_size, cfg.train.accumulate)
        self.nominal_steps = cfg.train.max_steps or cfg.train.epochs * self.steps_per_epoch
        self._set_total_steps(self.nominal_steps)
        self.optimizer = build_optimizer(self.model.parameters(), cfg.train)
        self.scheduler = build_scheduler(self.optimizer, cfg.train, self.total_steps)
        self.health = HealthMonitor(cfg.health, uses_scaler=self.policy.scaler is not None)
        self.update_probe = UpdateProbe(self.model, cfg.health.track_updates)
        self.ema = ModelEma(self.model, cfg.train.ema) if cfg.train.ema.enabled else None
        self.result = TrainResult(run_dir, TrainState())
        self.state = self.result.state
        if resume_state is not None:
            self._restore(resume_state)
        resumed_at = self.state.step if resume_state is not None else None
        self.logger = RunLogger(run_dir, cfg.log.tensorboard, resume_step=resumed_at)
        self._warned_this_epoch: set[str] = set()
        self.timer = StageTimer(device, enabled=cfg.train.profile)
        self._trace = None  # the torch.profiler of the trace window, while it is open
        self._clock_start = time.perf_counter()
        self._elapsed_before = self.state.elapsed_s
        self._step_seconds: list[float] = []  # this process's optimizer steps, data wait included
        self._checkpoint_s = 0.0

    def _set_total_steps(self, total: int) -> None:
        self.total_steps = total
        self.epochs = math.ceil(total / self.steps_per_epoch)

    # ------------------------------------------------------------------ store
    def _preload(self, samples: list[Sample]) -> dict | None:
        cap = self.cfg.cache.preload_bytes
        if not cap:
            return None
        preload = preload_images(samples, ImageLayer(self.store), cap)
        self.progress.message(preload.describe())
        return preload.images

    def _warn_if_store_too_small(self, samples: list[Sample]) -> None:
        if self.store is None:
            return
        need = estimate_store_bytes(samples, self.val_samples, self.cfg.data, self.dataset.stored_maps is not None)
        if need > self.store.size_limit_bytes:
            warnings.warn(
                f"[cache] this data needs about {need / 1e9:.2f} GB in the store but cache.size_limit_gb is "
                f"{self.cfg.cache.size_limit_gb}: entries will be evicted and remade; raise the limit to keep them",
                stacklevel=2,
            )

    def _log_epoch_cache(self) -> None:
        if self.cache_stats is None:
            return
        values, line, problems = self.cache_stats.end(self.state.epoch)
        if values:
            self.logger.scalars(values, self.state.step, self.state.epoch)
        if line:
            self.progress.message(line)
        for problem in problems:
            warnings.warn(problem, stacklevel=2)

    # ------------------------------------------------------------------ state
    def checkpoint_state(self) -> dict[str, Any]:
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

    def _restore(self, resume: tuple[dict[str, Any], Path]) -> None:
        state, path = resume
        load_weights(self.model, state, path, self.cfg.model)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.policy.load_state_dict(state.get("scaler", {}))
        self.state = self.result.state = TrainState(**state["train_state"])
        if self.state.planned_steps is not None:  # the budget's plan (the scheduler state holds it too)
            self._set_total_steps(self.state.planned_steps)
        torch.set_rng_state(state["torch_rng"])
        if self.ema is not None and "ema" in state:
            self.ema.load_state_dict(state["ema"])

    def save(self, name: str) -> Path:
        start = time.perf_counter()
        self.state.elapsed_s = self.elapsed_s()
        path = save_checkpoint(self.run_dir / name, self.checkpoint_state())
        self._checkpoint_s = time.perf_counter() - start
        return path

    def elapsed_s(self) -> float:
        return self._elapsed_before + time.perf_counter() - self._clock_start

    # ------------------------------------------------------------------ time budget
    def _follow_budget(self) -> None:
        """After each step: make the plan once enough steps are timed; then stop early if the
        steps run slower than planned and one more would overrun the budget."""
        if self.cfg.train.time_limit is None:
            return
        if self.state.planned_steps is None:
            if len(self._step_seconds) >= self.cfg.train.time_plan_steps:
                self._plan_budget()
            return
        step_s = self._step_seconds[-1] if self._step_seconds else 0.0
        left = self.cfg.train.time_limit * 60 - self.elapsed_s()
        if not self._finished() and step_s + self.state.validation_s + self._checkpoint_s > left:
            self.progress.message(f"time budget: stopping at step {self.state.step} of the planned "
                                  f"{self.total_steps}: the steps ran slower than planned")
            self._set_total_steps(self.state.step)

    def _plan_budget(self) -> None:
        """The first plan: from the steps timed so far (the first includes the loader's start), a
        measured validation pass and a checkpoint."""
        self.state.validation_s = self._measure_validation_s()
        self.save("last.pt")  # measures what a checkpoint costs
        timed = self._step_seconds[1:] or self._step_seconds
        costs = self._apply_plan(sum(timed) / len(timed))
        self.save("last.pt")  # with the plan, so that a resume from here keeps it
        self.progress.message(
            f"time budget {self.cfg.train.time_limit:g} min: {costs.step_s:.2f} s/step, validation "
            f"{costs.validation_s:.1f} s, checkpoint {costs.checkpoint_s:.2f} s -> {self.total_steps} steps "
            f"({self.total_steps / self.steps_per_epoch:.1f} epochs; warm-up {self.state.planned_warmup}); the LR "
            f"schedule now ends at step {self.total_steps} (configured: {self.nominal_steps})"
        )

    def _replan_budget(self) -> None:
        """At each epoch end after the first plan: the same rule with the last three epochs' step
        times (a cold store or a busy machine at the start no longer decides the whole run; three
        epochs smooth the epoch-to-epoch noise) and the last real validation. The schedule's end
        moves by what the estimate moved, usually a few percent."""
        if self.cfg.train.time_limit is None or self.state.planned_steps is None or self._finished():
            return
        recent = self._step_seconds[-3 * self.steps_per_epoch:]
        if not recent:
            return
        before = self.total_steps
        self._apply_plan(sum(recent) / len(recent))
        if abs(self.total_steps - before) > max(1, before // 50):
            self.progress.message(f"time budget: re-planned {before} -> {self.total_steps} steps "
                                  f"({sum(recent) / len(recent):.2f} s/step recently)")

    def _apply_plan(self, step_s: float) -> BudgetCosts:
        train = self.cfg.train
        costs = BudgetCosts(
            budget_s=train.time_limit * 60, elapsed_s=self.elapsed_s(), steps_done=self.state.step,
            step_s=step_s, validation_s=self.state.validation_s, checkpoint_s=self._checkpoint_s,
            steps_per_epoch=self.steps_per_epoch, epochs_done=self.state.epoch, val_every=train.val_every,
            checkpoint_every=train.checkpoint_every, has_validation=bool(self.val_samples),
        )
        total = min(plan_total_steps(costs), train.max_steps or 2**62)  # max_steps stays a ceiling
        warmup = self.state.planned_warmup
        if warmup is None or self.state.step < warmup:  # a warm-up already over stays as it was
            warmup = scaled_warmup(train.warmup_steps, total, self.nominal_steps)
        self.state.planned_steps, self.state.planned_warmup = total, warmup
        reschedule(self.scheduler, total, warmup)
        self._set_total_steps(total)
        self.result.budget = costs
        return costs

    def _measure_validation_s(self) -> float:
        """One validation pass, estimated from one timed batch after a warm-up batch (the EMA
        model, when on, is validated too)."""
        if not self.val_samples:
            return 0.0
        n = self.cfg.train.eval_batch_size
        warm, timed = self.val_samples[:n], self.val_samples[n: 2 * n] or self.val_samples[:n]
        def evaluate(samples: list[Sample]) -> None:
            evaluate_model(self.model, samples, self.cfg.data, self.cfg.postprocess, self.device, batch_size=n,
                           store=self.store)

        evaluate(warm)
        start = time.perf_counter()
        evaluate(timed)
        per_image = (time.perf_counter() - start) / len(timed)
        self.model.train()
        return per_image * len(self.val_samples) * (2 if self.ema is not None else 1)

    # ------------------------------------------------------------------ loop
    def fit(self) -> TrainResult:
        result = self.result
        train = self.cfg.train
        self._clock_start = time.perf_counter()
        try:
            self._probe_overflow_path()
            with trace_window(self.run_dir / "profile", train.profile_trace_start, train.profile_trace_steps,
                              self.device) as self._trace:
                self._fit_epochs()
        finally:
            if self.store is not None:
                self.store.flush_stats()
            result.health = self.health.summary()
            write_text_atomic(self.run_dir / "health.json", json.dumps(result.health.to_dict(), indent=2))
            self.logger.close()
            self.progress.close()
        return result

    def _fit_epochs(self) -> None:
        result = self.result
        while not self._finished():
            if self.cache_stats is not None:
                self.cache_stats.begin()
            result.last_losses = self._train_epoch()
            self._log_epoch_profile()
            if self._pause_due() and not self._finished():
                self.save("last.pt")  # mid-epoch: batch_in_epoch says where to pick up
                self.progress.message(f"paused at step {self.state.step}: resume with --resume {self.run_dir}")
                break
            self._end_epoch()

    def _log_epoch_profile(self) -> None:
        summary = self.timer.epoch_summary()
        if not summary:
            return
        self.result.profile.append(summary)
        self.progress.message(summary_line(self.state.epoch + 1, summary))
        self.logger.scalars(summary_scalars(summary), self.state.step, self.state.epoch)

    def _finished(self) -> bool:
        return self.state.step >= self.total_steps

    def _end_epoch(self) -> None:
        self.state.epoch += 1
        self.state.batch_in_epoch = 0
        self._log_epoch_health()
        if self._validation_due():
            self.result.last_metrics, self.result.last_ema_metrics = self.validate()
        self._log_epoch_cache()
        self._replan_budget()
        if self._checkpoint_due():
            self.save("last.pt")

    def _pause_due(self) -> bool:
        stop = self.cfg.train.stop_at_step
        return stop is not None and self.state.step >= stop

    def _checkpoint_due(self) -> bool:
        return self._finished() or self.state.epoch % self.cfg.train.checkpoint_every == 0

    def _validation_due(self) -> bool:
        return bool(self.val_samples) and (self._finished() or self.state.epoch % self.cfg.train.val_every == 0)

    def _train_epoch(self) -> dict[str, float]:
        cfg = self.cfg.train
        self.model.train()
        self.dataset.set_epoch(self.state.epoch)
        data = self.cfg.data
        loader = build_train_loader(
            self.dataset, cfg.batch_size, default_workers() if data.num_workers is None else data.num_workers,
            cfg.seed, self.state.epoch, skip_batches=self.state.batch_in_epoch, drop_last=self.drop_last,
            pin_memory=pin_memory_for(data, self.device),
            prefetch_factor=data.prefetch_factor,
        )
        steps_done = self.state.batch_in_epoch // cfg.accumulate
        self.progress.start_epoch(self.state.epoch, self.epochs, self.steps_per_epoch, steps_done)
        losses: dict[str, float] = {}
        group: list[dict[str, torch.Tensor]] = []
        tick = time.perf_counter()
        self.timer.start()
        for batch in loader:
            self.timer.mark("data")
            group.append(batch)
            if len(group) < cfg.accumulate:
                continue
            step_start = time.perf_counter()
            losses, step_values = self._train_step(group)  # ends on a host sync (loss values)
            now = time.perf_counter()
            images = sum(b["image"].shape[0] for b in group)
            images_per_s = images / max(now - tick, 1e-9)
            self.result.step_images_per_s.append(images / max(now - step_start, 1e-9))
            self._step_seconds.append(now - tick)
            tick = now
            self.state.batch_in_epoch += len(group)
            steps_done += 1
            group = []
            values = {f"train/{k}": v for k, v in losses.items()}
            values.update(step_values)
            values["train/img_per_s"] = images_per_s
            self.result.images_per_s.append(images_per_s)
            self.result.losses.append(losses["loss"])
            self.logger.scalars(values, self.state.step, self.state.epoch)
            self.progress.batch_done(self.state.step, losses["loss"], images_per_s, values["train/lr"])
            self.timer.mark("logging")
            self.timer.step_done()
            if self._trace is not None:
                self._trace.step()
            self._follow_budget()
            if self._pause_due() or self._finished() or steps_done >= self.steps_per_epoch:
                break
        return losses

    def _train_step(self, group: list[dict[str, torch.Tensor]]) -> tuple[dict[str, float], dict[str, float]]:
        """One optimizer step over ``len(group)`` accumulated micro-batches."""
        lr = self.optimizer.param_groups[0]["lr"]
        totals = dict.fromkeys(LOSS_TAGS, 0.0)
        for batch in group:
            batch = batch_to_device(batch, self.device, self.cfg.data)
            with self.policy.autocast():
                outputs = self.model(batch["image"].contiguous(memory_format=self.memory_format))
            self.timer.mark("forward")  # the host-to-device copy counts as forward
            terms = self.loss_fn(outputs, batch)  # float32 whatever autocast did
            self.timer.mark("loss")
            self.policy.backward(terms["loss"], micro_batches=len(group))
            # One host sync per micro-batch, after backward is queued, so that on a GPU the host
            # does not wait between forward and backward. A non-finite loss still stops the run
            # before any optimizer step: the weights saved in the diagnostic are untouched.
            values = torch.stack([terms[k].detach() for k in LOSS_TAGS]).tolist()
            if not all(math.isfinite(v) for v in values):
                self._stop_on_nonfinite_loss(terms, batch, lr)
            for k, v in zip(LOSS_TAGS, values):
                totals[k] += v / len(group)
            self.timer.mark("backward")
        self.update_probe.before_step()
        outcome = self.policy.step(self.optimizer, self.model.parameters(), self.cfg.train.grad_clip)
        update_ratio = self.update_probe.after_step()  # raw model, before the EMA moves
        self.state.step += 1
        if outcome.stepped:
            self.scheduler.step()
            if self.ema is not None:
                self.ema.update(self.model)
        else:
            self.state.skipped_steps += 1
        record = StepHealth(self.state.step, lr, outcome.scale, not outcome.stepped, outcome.grad_norm, update_ratio)
        self._act_on(self.health.record(record))
        values = self._health_values(record)
        self.timer.mark("optimizer")  # the step, schedule, EMA and health checks
        return totals, values

    def _health_values(self, h: StepHealth) -> dict[str, float]:
        values = {
            "train/lr": h.lr,
            "health/grad_norm": h.grad_norm,
            "health/skipped": float(h.skipped),
            "health/skipped_total": float(self.state.skipped_steps),
            "health/skip_rate": self.health.current_skip_rate(),
        }
        if h.update_ratio is not None:
            values["health/update_ratio"] = h.update_ratio
        if self.policy.scaler is not None:
            values["health/loss_scale"] = h.scale
        return values

    # ------------------------------------------------------------------ health
    def _probe_overflow_path(self) -> None:
        if self.cfg.health.enabled and self.cfg.health.overflow_probe and not self._finished():
            problem = probe_overflow_path(self.policy, self.model, self.optimizer, self.cfg.train.grad_clip)
            if problem:
                self._act_on([("overflow_masked", problem)])

    def _act_on(self, problems: list[tuple[str, str]]) -> None:
        """Stop (health.action = stop) or warn once per check and epoch."""
        if not problems:
            return
        text = "; ".join(message for _, message in problems)
        self.health.reported.append(f"step {self.state.step}: {text}")
        if self.cfg.health.action == "stop":
            path = self._write_diagnostic("health", {"problems": [m for _, m in problems]})
            raise HealthStop(f"training health check failed at step {self.state.step}: {text} (details: {path})")
        for check, message in problems:
            if check not in self._warned_this_epoch:
                self._warned_this_epoch.add(check)
                self.progress.message(f"warning: step {self.state.step}: {message}")

    def _stop_on_nonfinite_loss(self, terms: dict[str, torch.Tensor], batch: dict[str, torch.Tensor], lr: float):
        step = self.state.step + 1
        terms = {k: v.detach() for k, v in terms.items()}
        shown = ", ".join(f"{k}={float(v):.4g}" for k, v in terms.items())
        stems = [self.dataset.samples[int(i)].stem for i in batch["index"].tolist()] if "index" in batch else []
        info = {"loss_terms": {k: float(v) for k, v in terms.items()}, "lr": lr, "scale": self.policy.scale,
                "samples": stems}
        path = self._write_diagnostic("nonfinite_loss", info, step)
        save_checkpoint(path.with_suffix(".pt"), {
            "model": self.model.state_dict(), "batch": {k: v.cpu() for k, v in batch.items()}, **info,
        })
        self.health.reported.append(f"step {step}: non-finite loss ({shown})")
        raise HealthStop(
            f"non-finite loss at step {step} ({shown}); samples {', '.join(stems[:8])}; "
            f"diagnostic saved to {path} and {path.with_suffix('.pt').name}; "
            "lower train.lr, set train.grad_clip, or use bf16-mixed instead of 16-mixed"
        )

    def _write_diagnostic(self, kind: str, info: dict, step: int | None = None) -> Path:
        step = self.state.step if step is None else step
        path = self.run_dir / "diagnostics" / f"{kind}_step{step:07d}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        recent = [asdict(h) for h in self.health.run.records[-self.cfg.health.window:]]
        body = {"step": step, "precision": self.cfg.train.precision, **info, "recent_steps": recent}
        write_text_atomic(path, json.dumps(body, indent=2, default=str))
        return path

    def _log_epoch_health(self) -> None:
        self._warned_this_epoch = set()
        h = self.health.end_epoch()
        if not h.steps:
            return
        values = {"health_epoch/skip_rate": h.skip_rate, "health_epoch/skipped": float(h.skipped_steps),
                  "health_epoch/nonfinite_grad_steps": float(h.nonfinite_grad_steps)}
        if h.median_grad_norm is not None:
            values["health_epoch/grad_norm_median"] = h.median_grad_norm
        if h.median_update_ratio is not None:
            values["health_epoch/update_ratio_median"] = h.median_update_ratio
        if self.policy.scaler is not None:
            values["health_epoch/min_scale"] = h.min_scale
        self.logger.scalars(values, self.state.step, self.state.epoch)
        scale = f", scale {h.min_scale:g}..{h.max_scale:g}" if self.policy.scaler is not None else ""
        ratio = f", update {h.median_update_ratio:.2e}" if h.median_update_ratio is not None else ""
        norm = f"{h.median_grad_norm:.3g}" if h.median_grad_norm is not None else "n/a"
        self.progress.message(
            f"health epoch {self.state.epoch}: skipped {h.skipped_steps}/{h.steps} ({h.skip_rate:.1%}){scale}, "
            f"grad norm median {norm}{ratio}, non-finite grads {h.nonfinite_grad_steps}"
        )

    def validate(self) -> tuple[DetectionMetrics, DetectionMetrics | None]:
        """Raw model (selects best.pt) and, with EMA on, the EMA weights beside it."""
        start = time.perf_counter()
        # wall time of the loop when this model was ready: time-to-accuracy reads it off metrics.csv
        self.logger.scalars({"time/elapsed_min": self.elapsed_s() / 60}, self.state.step, self.state.epoch)
        metrics = self._evaluate(self.model, "val")
        ema_metrics = self._evaluate(self.ema.module, "val_ema") if self.ema is not None else None
        if metrics.hmean > self.state.best_hmean:
            self.state.best_hmean, self.state.best_step = metrics.hmean, self.state.step
            self.save("best.pt")
        ema_text = f"  | EMA P {ema_metrics.precision:.4f}  R {ema_metrics.recall:.4f}  H {ema_metrics.hmean:.4f}" if ema_metrics else ""
        self.progress.message(
            f"validation at step {self.state.step}: P {metrics.precision:.4f}  R {metrics.recall:.4f}  "
            f"H {metrics.hmean:.4f}  (best {self.state.best_hmean:.4f} at step {self.state.best_step}){ema_text}"
        )
        self.model.train()
        self.state.validation_s = time.perf_counter() - start
        return metrics, ema_metrics

    def _evaluate(self, model: torch.nn.Module, tag: str) -> DetectionMetrics:
        out_dir = self.run_dir / tag / f"step{self.state.step:07d}"
        metrics = evaluate_model(
            model, self.val_samples, self.cfg.data, self.cfg.postprocess, self.device,
            batch_size=self.cfg.train.eval_batch_size, out_dir=out_dir,
            overlays=self.cfg.train.overlays, progress=self.progress.interactive, store=self.store,
        )
        values = {f"{tag}/precision": metrics.precision, f"{tag}/recall": metrics.recall, f"{tag}/hmean": metrics.hmean}
        self.logger.scalars(values, self.state.step, self.state.epoch)
        return metrics


def steps_per_epoch(n_samples: int, batch_size: int, accumulate: int = 1) -> int:
    """Optimizer steps per epoch: full batches only (drop_last), except that a set smaller than
    one batch is one batch; a step takes ``accumulate`` of them."""
    batches = max(1, n_samples // batch_size)
    if batches < accumulate:
        raise OcrkitError(
            f"train.accumulate={accumulate} needs at least {accumulate} batches per epoch; "
            f"{n_samples} training images at batch size {batch_size} make {batches}"
        )
    return batches // accumulate

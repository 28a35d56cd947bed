"""The training loop. The CLI parses; this builds, runs and closes.

Exact resume: data order is a pure function of (seed, epoch), augmentation of (seed, epoch,
index), and a checkpoint holds model, optimizer, scheduler, scaler, RNG and the step counters
(including how many batches of the current epoch were already trained), so N steps + resume N
equals 2N straight.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from ocrkit.core.config import OcrkitConfig
from ocrkit.core.data.dataset import TrainDataset, build_train_loader
from ocrkit.core.data.sample import Sample
from ocrkit.core.engine.checkpoint import load_weights, save_checkpoint
from ocrkit.core.engine.inference import evaluate_model
from ocrkit.core.engine.logger import RunLogger
from ocrkit.core.engine.precision import PrecisionPolicy
from ocrkit.core.engine.schedule import build_optimizer, build_scheduler
from ocrkit.core.errors import OcrkitError
from ocrkit.core.geometry.metric import DetectionMetrics
from ocrkit.core.model import DBLoss, build_model
from ocrkit.core.progress import TrainProgress

LOSS_TAGS = ("loss", "loss_prob", "loss_thresh", "loss_binary")


@dataclass
class TrainState:
    step: int = 0  # optimizer steps taken: the one counter every log sink uses
    epoch: int = 0  # epochs completed
    batch_in_epoch: int = 0  # batches of the current epoch already trained
    best_hmean: float = -1.0
    best_step: int = -1
    skipped_steps: int = 0


@dataclass
class TrainResult:
    run_dir: Path
    state: TrainState
    last_losses: dict[str, float] = field(default_factory=dict)
    last_metrics: DetectionMetrics | None = None

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
        self.model = build_model(cfg.model).to(device)
        if init_state is not None:
            load_weights(self.model, init_state[0], init_state[1], cfg.model)
        self.loss_fn = DBLoss(cfg.loss, k=cfg.model.k)
        self.policy = PrecisionPolicy(cfg.train.precision, device)
        self.dataset = TrainDataset(train_samples, cfg.data, cfg.maps, cfg.train.seed)
        self.drop_last = len(train_samples) >= cfg.train.batch_size
        self.steps_per_epoch = steps_per_epoch(len(train_samples), cfg.train.batch_size)
        self.total_steps = cfg.train.epochs * self.steps_per_epoch
        self.optimizer = build_optimizer(self.model.parameters(), cfg.train)
        self.scheduler = build_scheduler(self.optimizer, cfg.train, self.total_steps)
        self.state = TrainState()
        if resume_state is not None:
            self._restore(resume_state)
        resumed_at = self.state.step if resume_state is not None else None
        self.logger = RunLogger(run_dir, cfg.log.tensorboard, resume_step=resumed_at)

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
        }

    def _restore(self, resume: tuple[dict[str, Any], Path]) -> None:
        state, path = resume
        load_weights(self.model, state, path, self.cfg.model)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.policy.load_state_dict(state.get("scaler", {}))
        self.state = TrainState(**state["train_state"])
        torch.set_rng_state(state["torch_rng"])

    def save(self, name: str) -> Path:
        return save_checkpoint(self.run_dir / name, self.checkpoint_state())

    # ------------------------------------------------------------------ loop
    def fit(self) -> TrainResult:
        result = TrainResult(self.run_dir, self.state)
        try:
            while self.state.epoch < self.cfg.train.epochs:
                result.last_losses = self._train_epoch()
                if self._pause_due():
                    self.save("last.pt")  # mid-epoch: batch_in_epoch says where to pick up
                    self.progress.message(f"paused at step {self.state.step}: resume with --resume {self.run_dir}")
                    break
                self.state.epoch += 1
                self.state.batch_in_epoch = 0
                if self._validation_due():
                    result.last_metrics = self.validate()
                if self._checkpoint_due():
                    self.save("last.pt")
        finally:
            self.logger.close()
            self.progress.close()
        return result

    def _pause_due(self) -> bool:
        stop = self.cfg.train.stop_at_step
        return stop is not None and self.state.step >= stop

    def _checkpoint_due(self) -> bool:
        epoch = self.state.epoch
        return epoch == self.cfg.train.epochs or epoch % self.cfg.train.checkpoint_every == 0

    def _validation_due(self) -> bool:
        last = self.state.epoch == self.cfg.train.epochs
        return bool(self.val_samples) and (last or self.state.epoch % self.cfg.train.val_every == 0)

    def _train_epoch(self) -> dict[str, float]:
        cfg = self.cfg.train
        self.model.train()
        self.dataset.set_epoch(self.state.epoch)
        loader = build_train_loader(
            self.dataset, cfg.batch_size, self.cfg.data.num_workers, cfg.seed, self.state.epoch,
            skip_batches=self.state.batch_in_epoch, drop_last=self.drop_last,
        )
        self.progress.start_epoch(self.state.epoch, cfg.epochs, self.steps_per_epoch, self.state.batch_in_epoch)
        losses: dict[str, float] = {}
        tick = time.perf_counter()
        for batch in loader:
            losses, outcome_values = self._train_step(batch)
            now = time.perf_counter()
            images_per_s = batch["image"].shape[0] / max(now - tick, 1e-9)
            tick = now
            self.state.step += 1
            self.state.batch_in_epoch += 1
            values = {f"train/{k}": v for k, v in losses.items()}
            values.update(outcome_values)
            values["train/img_per_s"] = images_per_s
            self.logger.scalars(values, self.state.step, self.state.epoch)
            self.progress.batch_done(self.state.step, losses["loss"], images_per_s, values["train/lr"])
            if self._pause_due():
                break
        return losses

    def _train_step(self, batch: dict[str, torch.Tensor]) -> tuple[dict[str, float], dict[str, float]]:
        batch = {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}
        lr = self.optimizer.param_groups[0]["lr"]
        with self.policy.autocast():
            outputs = self.model(batch["image"])
        terms = self.loss_fn(outputs, batch)  # float32 whatever autocast did
        if not torch.isfinite(terms["loss"]):
            raise OcrkitError(
                f"non-finite loss at step {self.state.step + 1} "
                f"({', '.join(f'{k}={float(v):.4g}' for k, v in terms.items())}); "
                "lower train.lr or use train.grad_clip"
            )
        self.policy.backward(terms["loss"])
        outcome = self.policy.step(self.optimizer, self.model.parameters(), self.cfg.train.grad_clip)
        if outcome.stepped:
            self.scheduler.step()
        else:
            self.state.skipped_steps += 1
        values = {"train/lr": lr, "train/grad_norm": outcome.grad_norm, "train/skipped_steps": self.state.skipped_steps}
        if self.policy.scaler is not None:
            values["train/loss_scale"] = outcome.scale
        return {k: float(terms[k].detach()) for k in LOSS_TAGS}, values

    def validate(self) -> DetectionMetrics:
        out_dir = self.run_dir / "val" / f"step{self.state.step:07d}"
        metrics = evaluate_model(
            self.model, self.val_samples, self.cfg.data, self.cfg.postprocess, self.device,
            batch_size=self.cfg.train.eval_batch_size, out_dir=out_dir,
            overlays=self.cfg.train.overlays, progress=self.progress.interactive,
        )
        values = {"val/precision": metrics.precision, "val/recall": metrics.recall, "val/hmean": metrics.hmean}
        self.logger.scalars(values, self.state.step, self.state.epoch)
        if metrics.hmean > self.state.best_hmean:
            self.state.best_hmean, self.state.best_step = metrics.hmean, self.state.step
            self.save("best.pt")
        self.progress.message(
            f"validation at step {self.state.step}: P {metrics.precision:.4f}  R {metrics.recall:.4f}  "
            f"H {metrics.hmean:.4f}  (best {self.state.best_hmean:.4f} at step {self.state.best_step})"
        )
        self.model.train()
        return metrics


def steps_per_epoch(n_samples: int, batch_size: int) -> int:
    """Full batches only (drop_last), except that a set smaller than one batch is one batch."""
    return max(1, n_samples // batch_size)

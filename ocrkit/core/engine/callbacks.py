"""What the training loop tells the outside world, routed through a short list of callbacks.

The Trainer never writes a log line, a bar or a profiler lap itself: it calls ``scalars``,
``message``, ``stage`` and the epoch/step hooks on its ``Callbacks``, and each callback does its
one job. ``build_callbacks`` is the one place that decides which sinks a process gets: with
several training processes, only rank 0 gets the logger and the progress display.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ocrkit.core.config import OcrkitConfig
from ocrkit.core.engine.flops import Peak, device_peak, train_flops_per_image, utilisation, utilisation_line
from ocrkit.core.engine.logger import RunLogger
from ocrkit.core.engine.profiling import StageTimer, summary_line, summary_scalars, trace_window
from ocrkit.core.progress import TrainProgress


@dataclass
class StepReport:
    """One optimizer step, as the sinks see it."""

    step: int
    epoch: int
    losses: dict[str, float]
    values: dict[str, float] = field(default_factory=dict)  # every scalar of the step, losses included
    images_per_s: float = 0.0  # data wait included


class Callback:
    """Every hook does nothing unless a subclass overrides it."""

    def on_fit_start(self, step: int, resumed: bool) -> None: ...
    def on_epoch_start(self, epoch: int, epochs: int, steps: int, steps_done: int) -> None: ...
    def on_stage(self, stage: str) -> None: ...  # a profiler lap ends: data, forward, loss, backward, optimizer
    def on_step_end(self, report: StepReport) -> None: ...
    def on_epoch_end(self, epoch: int, step: int, sink: Callbacks) -> None: ...
    def on_scalars(self, values: dict[str, float], step: int, epoch: int) -> None: ...
    def on_message(self, text: str) -> None: ...
    def on_fit_end(self) -> None: ...


class Callbacks:
    """Calls each hook on every callback, in list order."""

    def __init__(self, callbacks: list[Callback]):
        self.callbacks = callbacks

    def fit_start(self, step: int, resumed: bool) -> None:
        for c in self.callbacks:
            c.on_fit_start(step, resumed)

    def epoch_start(self, epoch: int, epochs: int, steps: int, steps_done: int) -> None:
        for c in self.callbacks:
            c.on_epoch_start(epoch, epochs, steps, steps_done)

    def stage(self, stage: str) -> None:
        for c in self.callbacks:
            c.on_stage(stage)

    def step_end(self, report: StepReport) -> None:
        for c in self.callbacks:
            c.on_step_end(report)

    def epoch_end(self, epoch: int, step: int) -> None:
        for c in self.callbacks:
            c.on_epoch_end(epoch, step, self)

    def scalars(self, values: dict[str, float], step: int, epoch: int) -> None:
        if values:
            for c in self.callbacks:
                c.on_scalars(values, step, epoch)

    def message(self, text: str | None) -> None:
        if text:
            for c in self.callbacks:
                c.on_message(text)

    def fit_end(self) -> None:
        for c in self.callbacks:
            c.on_fit_end()


class LoggerCallback(Callback):
    """Scalars to metrics.csv and TensorBoard, opened at the start of ``fit`` (a resumed run first
    drops what was logged after its checkpoint's step).

    Per-step scalars are flushed to the OS; at an epoch end and after each epoch-level scalar
    (health, validation, cache) the logs are synced to disk, and the loop passes one of those
    before every checkpoint it writes: a checkpoint never gets ahead of the logs of its step."""

    def __init__(self, run_dir: Path, tensorboard: bool):
        self.run_dir, self.tensorboard = run_dir, tensorboard
        self.logger: RunLogger | None = None

    def on_fit_start(self, step: int, resumed: bool) -> None:
        self.logger = RunLogger(self.run_dir, self.tensorboard, resume_step=step if resumed else None)

    def on_step_end(self, report: StepReport) -> None:
        if self.logger is not None:
            self.logger.scalars(report.values, report.step, report.epoch)

    def on_epoch_end(self, epoch: int, step: int, sink: Callbacks) -> None:
        if self.logger is not None:
            self.logger.sync()

    def on_scalars(self, values: dict[str, float], step: int, epoch: int) -> None:
        if self.logger is not None:
            self.logger.scalars(values, step, epoch)
            self.logger.sync()

    def on_fit_end(self) -> None:
        if self.logger is not None:
            self.logger.close()
            self.logger = None


class ProgressCallback(Callback):
    """Bars on a terminal, log lines otherwise (``TrainProgress``)."""

    def __init__(self, progress: TrainProgress):
        self.progress = progress

    def on_epoch_start(self, epoch: int, epochs: int, steps: int, steps_done: int) -> None:
        self.progress.start_epoch(epoch, epochs, steps, steps_done)

    def on_step_end(self, report: StepReport) -> None:
        self.progress.batch_done(report.step, report.losses["loss"], report.images_per_s, report.values["train/lr"])

    def on_message(self, text: str) -> None:
        self.progress.message(text)

    def on_fit_end(self) -> None:
        self.progress.close()


class ProfilerCallback(Callback):
    """``train.profile``: milliseconds per step by stage, summed per epoch; and the torch.profiler
    trace window (``train.profile_trace_start``/``profile_trace_steps``). Goes last in the list,
    so that its ``logging`` lap covers the other sinks' work on each step."""

    def __init__(self, cfg: OcrkitConfig, run_dir: Path, device: torch.device):
        self.timer = StageTimer(device, enabled=cfg.train.profile)
        self.cfg, self.device = cfg, device
        self.flops_per_image = 0.0
        self.peak: Peak | None = None
        self.trace_args = (run_dir / "profile", cfg.train.profile_trace_start, cfg.train.profile_trace_steps, device)
        self.summaries: list[dict[str, float]] = []  # one per epoch
        self._stack = contextlib.ExitStack()
        self._trace = None

    def on_fit_start(self, step: int, resumed: bool) -> None:
        if self.timer.enabled:  # counted once: the step's FLOPs and the peak they are measured against
            self.flops_per_image = train_flops_per_image(self.cfg.model, self.cfg.data.train_size)
            self.peak = device_peak(self.device, self.cfg.train.precision)
        self._trace = self._stack.enter_context(trace_window(*self.trace_args))

    def on_epoch_start(self, epoch: int, epochs: int, steps: int, steps_done: int) -> None:
        self.timer.start()

    def on_stage(self, stage: str) -> None:
        self.timer.mark(stage)

    def on_step_end(self, report: StepReport) -> None:
        self.timer.mark("logging")
        self.timer.step_done()
        if self._trace is not None:
            self._trace.step()

    def on_epoch_end(self, epoch: int, step: int, sink: Callbacks) -> None:
        summary = self.timer.epoch_summary()
        if summary:
            self.summaries.append(summary)
            scalars = summary_scalars(summary)
            line = summary_line(epoch + 1, summary)
            if self.peak is not None and sum(summary.values()) > 0:
                images_per_s = self.cfg.train.batch_size * self.cfg.train.accumulate / (sum(summary.values()) / 1e3)
                achieved, mfu = utilisation(self.flops_per_image, images_per_s, self.peak)
                line += f"; {utilisation_line(images_per_s, self.flops_per_image, self.peak)} this process"
                scalars["profile/tflops"] = achieved
                if mfu is not None:
                    scalars["profile/mfu"] = mfu
            sink.message(line)
            sink.scalars(scalars, step, epoch)

    def on_fit_end(self) -> None:
        self._trace = None
        self._stack.close()


def build_callbacks(
    cfg: OcrkitConfig, run_dir: Path, device: torch.device, progress: TrainProgress, main_process: bool = True
) -> tuple[Callbacks, ProfilerCallback]:
    """The sinks of one training process: logger and progress on the main process only (several
    ranks would write the same files), the profiler on every process, last."""
    profiler = ProfilerCallback(cfg, run_dir, device)
    sinks: list[Callback] = (
        [LoggerCallback(run_dir, cfg.log.tensorboard), ProgressCallback(progress)] if main_process else []
    )
    return Callbacks([*sinks, profiler]), profiler

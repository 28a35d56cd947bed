"""``train --profile``: where a training step's time goes, at a cost too small to measure.

Each step is cut into laps (data wait, forward, loss, backward, optimizer step, logging); a lap
is the time since the previous mark. On a CPU a mark is one ``time.perf_counter()`` call, exact
because CPU kernels run synchronously. On CUDA a mark records an event in the stream instead
(no host sync, which would itself slow the step); the events are resolved once per epoch, after
one synchronisation, so each lap is the GPU timeline between two points of the step.

``profile_trace_steps`` adds a torch.profiler trace of a bounded window of steps (TensorBoard
plugin format, under ``<run>/profile``): detailed but costly, so only for the window.
"""

from __future__ import annotations

import time
from collections import defaultdict
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path

import torch

STAGES = ("data", "forward", "loss", "backward", "optimizer", "logging")


class StageTimer:
    """Laps per stage, summed over an epoch. ``mark(stage)`` closes the lap that ends now.
    Disabled (profiling off), every call returns at once and the summary is empty."""

    def __init__(self, device: torch.device, enabled: bool = True):
        self.enabled = enabled
        self.cuda = device.type == "cuda"
        self._last: float | torch.cuda.Event | None = None
        self._laps: list[tuple[str, object, object]] = []  # CUDA: (stage, start event, end event)
        self._totals: dict[str, float] = defaultdict(float)
        self.steps = 0

    def _now(self):
        if self.cuda:
            event = torch.cuda.Event(enable_timing=True)
            event.record()
            return event
        return time.perf_counter()

    def start(self) -> None:
        """Start the clock (at the top of an epoch, before the first batch is awaited)."""
        if self.enabled:
            self._last = self._now()

    def mark(self, stage: str) -> None:
        if not self.enabled:
            return
        now = self._now()
        if self._last is not None:
            if self.cuda:
                self._laps.append((stage, self._last, now))
            else:
                self._totals[stage] += now - self._last
        self._last = now

    def step_done(self) -> None:
        self.steps += 1

    def epoch_summary(self) -> dict[str, float]:
        """Milliseconds per step for each stage over the epoch, then reset."""
        if not self.enabled:
            return {}
        if self.cuda and self._laps:
            torch.cuda.synchronize()
            for stage, start, end in self._laps:
                assert isinstance(start, torch.cuda.Event) and isinstance(end, torch.cuda.Event)
                self._totals[stage] += start.elapsed_time(end) / 1000.0
        steps = max(self.steps, 1)
        summary = {stage: self._totals.get(stage, 0.0) * 1000.0 / steps for stage in STAGES}
        self._laps, self._totals, self.steps, self._last = [], defaultdict(float), 0, None
        return summary


def summary_line(epoch: int, summary: dict[str, float]) -> str:
    total = sum(summary.values()) or 1.0
    parts = ", ".join(f"{stage} {ms:.1f} ms ({ms / total:.0%})" for stage, ms in summary.items())
    return f"profile epoch {epoch}: {total:.1f} ms/step = {parts}"


def summary_scalars(summary: dict[str, float]) -> dict[str, float]:
    values = {f"profile/{stage}_ms": ms for stage, ms in summary.items()}
    if summary:
        values["profile/step_ms"] = sum(summary.values())
    return values


def trace_window(out_dir: Path, start_step: int, steps: int, device: torch.device) -> AbstractContextManager:
    """A torch.profiler over ``steps`` steps after skipping ``start_step`` (call ``.step()`` per
    optimizer step), writing TensorBoard traces to ``out_dir``; a null context when ``steps`` is 0."""
    if steps <= 0:
        return nullcontext(None)
    from torch.profiler import ProfilerActivity, profile, schedule, tensorboard_trace_handler

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    out_dir.mkdir(parents=True, exist_ok=True)
    return profile(
        activities=activities,
        schedule=schedule(wait=max(start_step - 1, 0), warmup=1, active=steps, repeat=1),
        on_trace_ready=tensorboard_trace_handler(str(out_dir)),
        record_shapes=False,
    )

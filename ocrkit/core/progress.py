"""Progress display shared by every command: rich bars on a terminal, nothing when quiet."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

T = TypeVar("T")

# Log lines written to a file or pipe are not wrapped at 80 columns.
stderr_console = Console(stderr=True, width=None if sys.stderr.isatty() else 200)


def track(items: Iterable[T], description: str, total: int | None = None, enabled: bool = True) -> Iterator[T]:
    """Yield ``items`` while showing a progress bar on stderr (when enabled and interactive)."""
    if not enabled or not stderr_console.is_terminal:
        yield from items
        return
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=stderr_console, transient=False) as bar:
        task = bar.add_task(description, total=total)
        for item in items:
            yield item
            bar.advance(task)


class TrainProgress:
    """Epoch and batch bars with loss and img/s on a terminal; plain log lines otherwise."""

    def __init__(self, enabled: bool = True, log_every: int = 10):
        self.enabled = enabled
        self.interactive = enabled and stderr_console.is_terminal
        self.log_every = log_every
        self._bar: Progress | None = None
        self._epoch_task: TaskID | None = None
        self._batch_task: TaskID | None = None
        self._epoch_label = ""

    def start_epoch(self, epoch: int, epochs: int, steps: int, done: int) -> None:
        self._epoch_label = f"epoch {epoch + 1}/{epochs}"
        if not self.interactive:
            return
        if self._bar is None:
            self._bar = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[info]}"),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                console=stderr_console,
            )
            self._bar.start()
            self._epoch_task = self._bar.add_task("epochs", total=epochs, info="")
            self._batch_task = self._bar.add_task("batches", total=steps, info="")
        assert self._epoch_task is not None and self._batch_task is not None  # added with the bar
        self._bar.update(self._epoch_task, completed=epoch, description=self._epoch_label)
        self._bar.reset(self._batch_task, total=steps, completed=done, info="")

    def batch_done(self, step: int, loss: float, images_per_s: float, lr: float) -> None:
        info = f"loss {loss:.4f}  {images_per_s:.1f} img/s"
        if self.interactive and self._bar is not None and self._batch_task is not None:
            self._bar.update(self._batch_task, advance=1, info=info)
        elif self.enabled and step % self.log_every == 0:
            stderr_console.print(f"{self._epoch_label} step {step}: {info}  lr {lr:.3g}", highlight=False)

    def message(self, text: str) -> None:
        if self.enabled:
            (self._bar.console if self._bar else stderr_console).print(text, highlight=False)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None

"""One global optimizer-step counter for every sink: TensorBoard, metrics.csv, the console.

On resume the TensorBoard writer purges events after the resumed step and metrics.csv drops its
rows after it, so every tag's steps strictly increase across interruptions.

Crash safety: rows are flushed to the OS after every call (a killed process loses nothing that
was logged), and ``sync`` (fsync of metrics.csv, flush of the TensorBoard events) runs at every
epoch end and after every epoch-level scalar (validation, health and cache summaries), which the
training loop always passes before it writes a checkpoint: whatever a checkpoint's step has
logged is on disk before the checkpoint is. A process killed mid-row leaves a torn last line;
``read_metrics`` (and so the truncation on resume) drops it.
"""

from __future__ import annotations

import contextlib
import csv
import io
import os
import time
from pathlib import Path

from torch.utils.tensorboard import SummaryWriter

from ocrkit.core.atomic import atomic_output

CSV_FIELDS = ("step", "epoch", "tag", "value")


def _well_formed(row: dict[str, str | None]) -> bool:
    try:
        int(row["step"] or "")
        int(row["epoch"] or "")
        float(row["value"] or "")
    except ValueError:
        return False
    return bool(row["tag"]) and None not in row  # None: more fields than the header


def read_metrics(path: str | Path) -> list[dict[str, str]]:
    """The rows of a metrics.csv (``step,epoch,tag,value`` as text). A torn last line (no newline:
    the writer was killed mid-row) and any malformed row are left out; a missing file has none."""
    try:
        text = Path(path).read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return []
    text = text[: text.rfind("\n") + 1]  # a line without its newline was cut short
    rows = csv.DictReader(io.StringIO(text, newline=""))
    return [row for row in rows if _well_formed(row)]


def truncate_csv_after(path: Path, step: int) -> None:
    """Keep only the rows at or before ``step`` (and none torn), written back durably."""
    if not path.exists():
        return
    rows = [row for row in read_metrics(path) if int(row["step"]) <= step]
    with atomic_output(path, fsync=True) as tmp, open(tmp, "w", newline="") as handle:
        writer = csv.DictWriter(handle, CSV_FIELDS)
        writer.writeheader()
        writer.writerows(rows)


def _after_previous_event_files(tb_dir: Path) -> None:
    """Wait, if need be, for the wall-clock second after the newest event file's: TensorBoard reads
    a run's event files in name order, ``events.out.tfevents.<whole seconds>.<host>.<pid>...``,
    so a resumed writer's file made in the same second as the one it continues could sort before
    it (by pid), and the purge of the steps after the checkpoint would come before them."""
    stamps = []
    for path in tb_dir.glob("events.out.tfevents.*"):
        with contextlib.suppress(IndexError, ValueError):
            stamps.append(int(path.name.split(".")[3]))
    if stamps:
        wait = max(stamps) + 1 - time.time()
        if wait > 0:
            time.sleep(wait)


class RunLogger:
    """Scalars to ``metrics.csv`` (``step,epoch,tag,value``) and TensorBoard under one global
    optimizer-step counter. ``resume_step`` drops what was logged after a resumed checkpoint.
    """

    def __init__(self, run_dir: Path, tensorboard: bool, resume_step: int | None = None):
        self.csv_path = run_dir / "metrics.csv"
        if resume_step is not None:
            truncate_csv_after(self.csv_path, resume_step)
        purge = resume_step + 1 if resume_step is not None else None
        if tensorboard and resume_step is not None:
            _after_previous_event_files(run_dir / "tb")
        self.tb = SummaryWriter(str(run_dir / "tb"), purge_step=purge) if tensorboard else None
        new_file = not self.csv_path.exists()
        self._csv_handle = open(self.csv_path, "a", newline="")
        self._csv = csv.DictWriter(self._csv_handle, CSV_FIELDS)
        if new_file:
            self._csv.writeheader()
        self.sync()  # the header, and a resumed run's purge marker, before any new step

    def scalars(self, values: dict[str, float], step: int, epoch: int) -> None:
        for tag, value in values.items():
            self._csv.writerow({"step": step, "epoch": epoch, "tag": tag, "value": f"{value:.6g}"})
            if self.tb is not None:
                self.tb.add_scalar(tag, value, step)
        self._csv_handle.flush()

    def sync(self) -> None:
        """Everything logged so far onto the disk: metrics.csv fsynced, TensorBoard flushed."""
        self._csv_handle.flush()
        os.fsync(self._csv_handle.fileno())
        if self.tb is not None:
            self.tb.flush()

    def close(self) -> None:
        if self._csv_handle.closed:
            return
        self.sync()
        self._csv_handle.close()
        if self.tb is not None:
            self.tb.close()

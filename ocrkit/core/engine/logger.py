"""One global optimizer-step counter for every sink: TensorBoard, metrics.csv, the console.

On resume the TensorBoard writer purges events after the resumed step and metrics.csv drops its
rows after it, so every tag's steps strictly increase across interruptions.
"""

from __future__ import annotations

import csv
from pathlib import Path

from torch.utils.tensorboard import SummaryWriter

from ocrkit.core.atomic import atomic_output

CSV_FIELDS = ("step", "epoch", "tag", "value")


def truncate_csv_after(path: Path, step: int) -> None:
    if not path.exists():
        return
    with open(path, newline="") as handle:
        rows = [row for row in csv.DictReader(handle) if int(row["step"]) <= step]
    with atomic_output(path) as tmp, open(tmp, "w", newline="") as handle:
        writer = csv.DictWriter(handle, CSV_FIELDS)
        writer.writeheader()
        writer.writerows(rows)


class RunLogger:
    """Scalars to ``metrics.csv`` (``step,epoch,tag,value``) and TensorBoard under one global
    optimizer-step counter. ``resume_step`` drops what was logged after a resumed checkpoint.
    """

    def __init__(self, run_dir: Path, tensorboard: bool, resume_step: int | None = None):
        self.csv_path = run_dir / "metrics.csv"
        if resume_step is not None:
            truncate_csv_after(self.csv_path, resume_step)
        new_file = not self.csv_path.exists()
        self._csv_handle = open(self.csv_path, "a", newline="")
        self._csv = csv.DictWriter(self._csv_handle, CSV_FIELDS)
        if new_file:
            self._csv.writeheader()
        purge = resume_step + 1 if resume_step is not None else None
        self.tb = SummaryWriter(str(run_dir / "tb"), purge_step=purge) if tensorboard else None

    def scalars(self, values: dict[str, float], step: int, epoch: int) -> None:
        for tag, value in values.items():
            self._csv.writerow({"step": step, "epoch": epoch, "tag": tag, "value": f"{value:.6g}"})
            if self.tb is not None:
                self.tb.add_scalar(tag, value, step)
        self._csv_handle.flush()

    def close(self) -> None:
        self._csv_handle.close()
        if self.tb is not None:
            self.tb.close()

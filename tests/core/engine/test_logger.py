"""metrics.csv on resume: RunLogger(resume_step=...) drops the rows logged after the resumed step
(truncate_csv_after), keeps those at or before it and the header, and appends after them.

End to end (a paused run resumed through the CLI, and a crash after the last checkpoint):
tests/cli/test_train_cmd.py."""

from __future__ import annotations

import csv
from pathlib import Path

from ocrkit.core.engine.logger import CSV_FIELDS, RunLogger, read_metrics, truncate_csv_after

ROWS = [(1, 1, "train/loss", "2.5"), (2, 1, "train/loss", "2"), (2, 1, "val/hmean", "0.1"), (3, 2, "train/loss", "1.5")]
ROWS += [(4, 2, "train/loss", "1.25"), (4, 2, "val/hmean", "0.3")]


def write_csv(path: Path, rows=ROWS) -> Path:
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(CSV_FIELDS)
        writer.writerows(rows)
    return path


def read_csv(path: Path) -> tuple[list[str], list[tuple[int, int, str, str]]]:
    with open(path, newline="") as handle:
        header, *rows = list(csv.reader(handle))
    return header, [(int(step), int(epoch), tag, value) for step, epoch, tag, value in rows]


def test_rows_after_the_step_are_dropped_and_those_at_or_before_it_kept_in_order(tmp_path):
    path = write_csv(tmp_path / "metrics.csv")
    truncate_csv_after(path, 2)
    header, rows = read_csv(path)
    assert header == list(CSV_FIELDS)
    assert rows == ROWS[:3]  # both step-2 rows kept, values untouched
    truncate_csv_after(path, 0)
    assert read_csv(path) == (list(CSV_FIELDS), [])  # nothing logged yet: only the header


def test_truncating_past_the_last_row_changes_nothing_and_a_missing_file_is_fine(tmp_path):
    path = write_csv(tmp_path / "metrics.csv")
    before = path.read_bytes()
    truncate_csv_after(path, 4)
    truncate_csv_after(path, 1000)
    assert path.read_bytes() == before
    truncate_csv_after(tmp_path / "absent.csv", 3)  # a run that never logged: no error, no file
    assert not (tmp_path / "absent.csv").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.csv"]  # no temporary file left


def test_a_resumed_logger_truncates_then_appends_below_one_header(tmp_path):
    write_csv(tmp_path / "metrics.csv")
    logger = RunLogger(tmp_path, tensorboard=False, resume_step=2)
    logger.scalars({"train/loss": 1.75, "train/lr": 0.007}, step=3, epoch=2)
    logger.close()
    header, rows = read_csv(tmp_path / "metrics.csv")
    assert header == list(CSV_FIELDS)
    assert rows == [*ROWS[:3], (3, 2, "train/loss", "1.75"), (3, 2, "train/lr", "0.007")]
    steps = [step for step, *_ in rows]
    assert steps == sorted(steps) and len({(r[0], r[2]) for r in rows}) == len(rows)  # monotonic, no repeat


def test_a_resumed_logger_without_a_metrics_file_starts_one(tmp_path):
    logger = RunLogger(tmp_path, tensorboard=False, resume_step=7)
    logger.scalars({"train/loss": 0.5}, step=8, epoch=3)
    logger.close()
    assert read_csv(tmp_path / "metrics.csv") == (list(CSV_FIELDS), [(8, 3, "train/loss", "0.5")])


def test_a_fresh_logger_writes_the_header_once_and_six_significant_digits(tmp_path):
    logger = RunLogger(tmp_path, tensorboard=False)
    logger.scalars({"train/loss": 1.23456789}, step=1, epoch=1)
    logger.scalars({"train/loss": 1e-9}, step=2, epoch=1)
    logger.close()
    assert read_csv(tmp_path / "metrics.csv")[1] == [(1, 1, "train/loss", "1.23457"), (2, 1, "train/loss", "1e-09")]
    assert not (tmp_path / "tb").exists()  # tensorboard=False writes no event files


def test_a_torn_last_line_is_dropped_even_when_its_step_reads_as_an_old_one(tmp_path):
    """A process killed mid-row leaves e.g. ``1`` of ``12,3,train/loss,...``: read as step 1 it
    would survive a truncation to step 4 as a row of empty fields."""
    path = write_csv(tmp_path / "metrics.csv")
    with open(path, "a", newline="") as handle:
        handle.write("12,3,train/lo")  # no newline: cut short
    assert [r["step"] for r in read_metrics(path)] == [str(r[0]) for r in ROWS]
    with open(path, "w", newline="") as handle:
        csv.writer(handle).writerows([CSV_FIELDS, *ROWS])
        handle.write("1")
    truncate_csv_after(path, 4)
    assert read_csv(path) == (list(CSV_FIELDS), ROWS)


def test_malformed_rows_are_left_out_and_a_resumed_logger_appends_on_a_clean_line(tmp_path):
    path = write_csv(tmp_path / "metrics.csv", [*ROWS[:2], (2, 1, "", "0.5"), ("x", 1, "a", "1"), (2, 1, "b", "nan?")])
    assert [(r["step"], r["tag"]) for r in read_metrics(path)] == [("1", "train/loss"), ("2", "train/loss")]
    with open(path, "a", newline="") as handle:
        handle.write("3,2,train/loss,1.")  # torn
    logger = RunLogger(tmp_path, tensorboard=False, resume_step=2)
    logger.scalars({"train/loss": 1.5}, step=3, epoch=2)
    logger.close()
    assert read_csv(path) == (list(CSV_FIELDS), [*ROWS[:2], (3, 2, "train/loss", "1.5")])
    assert read_metrics(tmp_path / "absent.csv") == []

"""ocrkit eval: score prediction files against ground truth (ICDAR-2015 protocol)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from ocrkit.cli.common import out_console
from ocrkit.core.geometry.metric import DetectionMetrics, evaluate_dirs


def print_metrics(metrics: DetectionMetrics, as_json: bool, title: str) -> None:
    if as_json:
        typer.echo(json.dumps(metrics.to_dict()))
        return
    table = Table(title=title)
    for column in ("precision", "recall", "hmean", "matched", "care gt", "care det", "invalid gt/det"):
        table.add_column(column, justify="right")
    table.add_row(
        f"{metrics.precision:.4f}",
        f"{metrics.recall:.4f}",
        f"{metrics.hmean:.4f}",
        str(metrics.matched),
        str(metrics.gt_care),
        str(metrics.det_care),
        f"{metrics.invalid_gt}/{metrics.invalid_det}",
    )
    out_console.print(table)


def eval_command(
    gt_dir: Annotated[Path, typer.Option("--gt-dir", help="gt_<stem>.txt files (or an ICDAR root with gts/).")],
    pred_dir: Annotated[Path, typer.Option("--pred-dir", help="res_<stem>.txt prediction files.")],
    json_out: Annotated[bool, typer.Option("--json", help="Print one JSON object (precision, recall, hmean, ...).")] = False,
) -> None:
    """Score existing prediction files without a model (ICDAR-2015 protocol)."""
    print_metrics(evaluate_dirs(gt_dir, pred_dir), json_out, title=f"{pred_dir} vs {gt_dir}")

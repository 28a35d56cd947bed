"""ocrkit eval: a checkpoint on a dataset, or existing prediction files (ICDAR-2015 protocol)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from ocrkit.cli.common import (
    ConfigOption,
    SetOption,
    SkipBadOption,
    WeightsOption,
    err_console,
    flag_values,
    out_console,
    resolve_config,
)
from ocrkit.core.errors import OcrkitError

if TYPE_CHECKING:
    from ocrkit.core.geometry.metric import DetectionMetrics


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
    checkpoint: Annotated[Path | None, typer.Option(help="Evaluate this checkpoint on --data.")] = None,
    model: Annotated[
        Path | None, typer.Option(help="Evaluate an exported ONNX model (ocrkit export) with onnxruntime instead.")
    ] = None,
    data: Annotated[str | None, typer.Option(help="ICDAR dir or JSON (default: the checkpoint's data.val).")] = None,
    out: Annotated[Path | None, typer.Option(help="Output dir (default runs/eval/<name>).")] = None,
    name: Annotated[str, typer.Option(help="Run name when --out is not given.")] = "exp",
    gt_dir: Annotated[
        Path | None, typer.Option("--gt-dir", help="Score files: gt_<stem>.txt (or an ICDAR root).")
    ] = None,
    pred_dir: Annotated[
        Path | None, typer.Option("--pred-dir", help="Score files: res_<stem>.txt predictions.")
    ] = None,
    json_out: Annotated[
        bool, typer.Option("--json", help="Print one JSON object (precision, recall, hmean, ...).")
    ] = False,
    report: Annotated[
        bool,
        typer.Option(
            "--report", help="Also write <out>/report.html: summary, per-image table (worst first), overlays."
        ),
    ] = False,
    report_images: Annotated[
        int | None,
        typer.Option("--report-images", min=0, help="With --report: overlays for the N worst images (default all)."),
    ] = None,
    device: Annotated[str | None, typer.Option(help="cpu | cuda | auto.")] = None,
    skip_bad: SkipBadOption = None,
    config: ConfigOption = None,
    weights: WeightsOption = "raw",
    set_: SetOption = None,
) -> None:
    """Evaluate a checkpoint (writes res_<stem>.txt, per-image JSON, overlays), or score existing
    prediction files without a model (--gt-dir/--pred-dir); --report adds an HTML page to look
    through (self-contained: open it in any browser, offline)."""
    if report_images is not None and not report:
        raise OcrkitError("--report-images sets how many overlays the report shows: add --report")
    if checkpoint is not None and model is not None:
        raise OcrkitError("give --checkpoint (a PyTorch checkpoint) or --model (an exported ONNX model), not both")
    if checkpoint is None and model is None:
        if gt_dir is None or pred_dir is None:
            raise OcrkitError("give --checkpoint or --model (and --data), or --gt-dir and --pred-dir to score files")
        from ocrkit.core.data.scoring import evaluate_dirs  # shapely, no model: neither torch nor numba

        cfg = resolve_config(config, set_, data__skip_bad=skip_bad)
        metrics = evaluate_dirs(gt_dir, pred_dir, cfg.data.skip_bad)
        print_metrics(metrics, json_out, title=f"{pred_dir} vs {gt_dir}")
        if report:
            from ocrkit.core.engine.report import files_report  # no torch either

            print_report(files_report(gt_dir, pred_dir, metrics, out, report_images, cfg.log.dir, name))
        return
    if gt_dir is not None or pred_dir is not None:
        raise OcrkitError(
            "--checkpoint evaluates a model on --data; --gt-dir/--pred-dir score existing files: pick one"
        )
    from ocrkit.core.engine.eval_job import ReportRequest, run_evaluation  # torch: only here

    flags = flag_values(data__val=data, train__device=device, data__skip_bad=skip_bad)
    request = ReportRequest(report_images, progress=not json_out) if report else None
    if model is not None and weights != "raw":
        raise OcrkitError("--weights chooses a checkpoint's weights; an ONNX export holds the ones it was made from")
    outcome = run_evaluation(checkpoint, config, set_, flags, weights, out, name, not json_out, request, model)
    if not outcome.main_process:
        return  # under torchrun, rank 0 reports
    print_metrics(outcome.metrics, json_out, title=f"{checkpoint or model} on {outcome.data}")
    if not json_out:
        err_console.print(f"predictions, per-image JSON and overlays: {outcome.out_dir}", soft_wrap=True)
    if outcome.report is not None:
        print_report(outcome.report)


def print_report(path: Path) -> None:
    """On stderr, so that --json's stdout stays one JSON object."""
    err_console.print(f"report: {path}", soft_wrap=True, markup=False)

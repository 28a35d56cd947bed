"""ocrkit export."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ocrkit.cli.common import ConfigOption, SetOption, WeightsOption, flag_values, out_console
from ocrkit.core.errors import OcrkitError


def export_command(
    checkpoint: Annotated[Path, typer.Option(help="A trained checkpoint (best.pt or last.pt).")],
    out: Annotated[Path, typer.Option(help="The model file to write (e.g. model.onnx); a <name>.json beside it.")],
    format_: Annotated[str, typer.Option("--format", help="Export format: onnx.")] = "onnx",
    dynamic: Annotated[
        bool, typer.Option("--dynamic", help="Free batch, height and width (else one image at the eval canvas).")
    ] = False,
    opset: Annotated[int | None, typer.Option(min=7, help="ONNX opset (default: the exporter's).")] = None,
    weights: WeightsOption = "raw",
    config: ConfigOption = None,
    set_: SetOption = None,
) -> None:
    """Export a checkpoint for deployment: ONNX with its inference settings, checked against PyTorch."""
    if format_ != "onnx":
        raise OcrkitError(f"--format {format_!r}: expected onnx")
    from ocrkit.core.engine.eval_job import load_for_inference  # torch: only here
    from ocrkit.core.engine.onnx_export import export_onnx

    loaded = load_for_inference(checkpoint, config, set_, flag_values(train__device="cpu"), weights)
    report = export_onnx(loaded.model, loaded.cfg, out, checkpoint, weights, dynamic, opset)
    shape = "x".join(str(d) for d in report.input_shape)
    out_console.print(
        f"wrote {report.path} (opset {report.opset}, input {shape}) and {report.sidecar.name} "
        f"in {report.seconds:.1f} s; onnxruntime matches PyTorch within {report.max_prob_difference:.1e}",
        soft_wrap=True,
    )

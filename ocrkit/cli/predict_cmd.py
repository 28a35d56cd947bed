"""ocrkit predict."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ocrkit.cli.common import ConfigOption, SetOption, SkipBadOption, WeightsOption, flag_values, out_console


def predict_command(
    images: Annotated[list[Path], typer.Argument(help="Image files or directories of images.")],
    checkpoint: Annotated[Path | None, typer.Option(help="A trained checkpoint (best.pt or last.pt).")] = None,
    model: Annotated[
        Path | None, typer.Option(help="An exported ONNX model (ocrkit export), run with onnxruntime.")
    ] = None,
    out: Annotated[Path | None, typer.Option(help="Output dir (default runs/predict/<name>).")] = None,
    name: Annotated[str, typer.Option(help="Run name when --out is not given.")] = "exp",
    device: Annotated[str | None, typer.Option(help="cpu | cuda | auto.")] = None,
    skip_bad: SkipBadOption = None,
    config: ConfigOption = None,
    weights: WeightsOption = "raw",
    set_: SetOption = None,
) -> None:
    """Detect text: boxes as JSON and ICDAR txt (original image coordinates), and overlay PNGs."""
    from ocrkit.core.engine.detectors import load_detector
    from ocrkit.core.engine.eval_job import predict_images  # torch: only here

    flags = flag_values(train__device=device, data__skip_bad=skip_bad)
    loaded = load_detector(checkpoint, model, config, set_, flags, weights)
    predictions, out_dir = predict_images(loaded, images, out, name, progress=True)
    for prediction in predictions:
        out_console.print(f"{prediction.path}: {len(prediction.detections)} text regions")
    out_console.print(f"boxes (JSON, res_*.txt) and overlays: {out_dir}")

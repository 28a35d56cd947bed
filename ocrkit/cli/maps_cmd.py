"""ocrkit maps show | check."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ocrkit.cli.common import ConfigOption, SetOption, SkipBadOption, out_console, resolve_config
from ocrkit.cli.eval_cmd import print_metrics
from ocrkit.core.errors import OcrkitError

app = typer.Typer(
    help="DB label maps: look at them, check what they can represent, precompute them.", no_args_is_help=True
)


@app.command("show")
def show(
    image: Annotated[Path, typer.Argument(help="Image file.")],
    gt: Annotated[Path, typer.Option("--gt", help="Its ICDAR ground-truth file.")],
    out: Annotated[Path, typer.Option("--out", help="Output directory.")],
    size: Annotated[tuple[int, int] | None, typer.Option(help="Resize to H W first (default: own size).")] = None,
    config: ConfigOption = None,
    set_: SetOption = None,
) -> None:
    """Write the four DB maps as .npz and PNG overlays."""
    from ocrkit.core.engine.inspect_maps import export_maps  # torch, numba: only here

    cfg = resolve_config(config, set_)
    for path in export_maps(image, gt, size, cfg.maps, out):
        out_console.print(str(path))


@app.command("check")
def check(
    data: Annotated[Path | None, typer.Option(help="ICDAR dir or JSON file (default: data.val).")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    skip_bad: SkipBadOption = None,
    config: ConfigOption = None,
    set_: SetOption = None,
) -> None:
    """Score a perfect model: ground truth → maps → post-processing → metric.

    Anything below 1.0 is lost before training starts (text too small at eval_size, boxes the
    unclip does not restore).
    """
    from ocrkit.core.data.formats import load_dataset
    from ocrkit.core.engine.label_check import perfect_model_metrics  # torch, numba: only here

    cfg = resolve_config(config, set_, data__val=str(data) if data else None, data__skip_bad=skip_bad)
    if cfg.data.val is None:
        raise OcrkitError("no data to check: give --data (or set data.val)")
    loaded = load_dataset(cfg.data.val, cfg.data.skip_bad)
    metrics = perfect_model_metrics(loaded.samples, cfg.data, cfg.maps, cfg.postprocess, progress=not json_out)
    print_metrics(metrics, json_out, title=f"perfect-model ceiling on {cfg.data.val}")


@app.command("precompute")
def precompute(
    data: Annotated[Path | None, typer.Option(help="ICDAR dir or JSON file (default: data.train).")] = None,
    workers: Annotated[int, typer.Option("--workers", min=0, help="Worker processes (0: this one).")] = 2,
    skip_bad: SkipBadOption = None,
    config: ConfigOption = None,
    set_: SetOption = None,
) -> None:
    """Fill the store with the DB maps of a dataset at the training size (no augmentation).

    Present entries are skipped, so an interrupted run is completed by running it again. Training
    reads these maps when augmentation is off (data.augment.enabled = false, --overfit-batches).
    """
    from ocrkit.core.data.precompute import precompute_job  # torch, numba, diskcache: only here

    cfg = resolve_config(config, set_, data__train=str(data) if data else None, data__skip_bad=skip_bad)
    if cfg.data.train is None:
        raise OcrkitError("no data to precompute: give --data (or set data.train)")
    report = precompute_job(cfg, workers)
    out_console.print(
        f"maps for {report.total} samples: {report.computed} computed, {report.present} already present, "
        f"{report.failed_writes} failed writes, {len(report.errors)} errors"
    )
    for error in report.errors[:10]:
        out_console.print(f"  {error}", soft_wrap=True)
    if report.failed_writes or report.errors:
        raise typer.Exit(1)

"""ocrkit data synth | check."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ocrkit.cli.common import ConfigOption, SetOption, SkipBadOption, out_console, resolve_config

app = typer.Typer(help="Datasets: synthetic text rendering, checking a dataset.", no_args_is_help=True)


@app.command("synth")
def synth(
    out: Annotated[Path, typer.Argument(help="Output directory (train/ and val/ in ICDAR layout).")],
    train: Annotated[int, typer.Option(help="Training images.")] = 200,
    val: Annotated[int, typer.Option(help="Validation images.")] = 50,
    size: Annotated[tuple[int, int], typer.Option(help="Image size H W.")] = (640, 640),
    seed: Annotated[int, typer.Option(help="Same seed, same bytes.")] = 0,
    font: Annotated[
        list[Path] | None, typer.Option(help="TTF font file (repeatable); default: Pillow's built-in.")
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Render random words on varied backgrounds with exact polygon ground truth."""
    from ocrkit.core.data.synth import generate_synthetic  # Pillow, shapely: only here

    summary = generate_synthetic(out, train, val, size=size, seed=seed, fonts=font, progress=not quiet)
    for split in (summary.train, summary.val):
        out_console.print(
            f"{split.root}: {split.images} images, {split.care_words} words, {split.dont_care_words} don't-care (###)"
        )
    out_console.print(f"{summary.images} images in {summary.seconds:.1f} s ({summary.images_per_second:.1f} img/s)")


@app.command("check")
def check(
    data: Annotated[str, typer.Argument(help="ICDAR dir (images/, gts/) or JSON file.")],
    skip_bad: SkipBadOption = None,
    config: ConfigOption = None,
    set_: SetOption = None,
) -> None:
    """Read a dataset as training and evaluation would (every annotation and image rule, README's
    data formats) and say what it holds; the first bad sample stops it (--skip-bad: all listed)."""
    from ocrkit.core.data.formats import load_dataset  # Pillow, shapely: only here

    cfg = resolve_config(config, set_, data__skip_bad=skip_bad)
    loaded = load_dataset(data, cfg.data.skip_bad)
    regions = sum(len(s.polygons) for s in loaded.samples)
    dont_care = sum(sum(s.ignore) for s in loaded.samples)
    out_console.print(
        f"{data}: {len(loaded.samples)} samples, {regions} text regions ({dont_care} don't-care), "
        f"{len(loaded.skipped)} bad samples skipped, {len(loaded.notices)} kinds of warnings",
        soft_wrap=True,
    )

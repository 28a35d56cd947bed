"""ocrkit bench maps."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from ocrkit.cli.common import ConfigOption, SetOption, out_console, resolve_config
from ocrkit.core.bench.maps import results_as_dicts, run_maps_bench
from ocrkit.core.bench.timing import machine_info

app = typer.Typer(help="Benchmarks: compared variants side by side in one process.", no_args_is_help=True)


@app.command("maps")
def maps(
    sample_dir: Annotated[Path | None, typer.Option(help="ICDAR dir for the sparse case (skipped if absent).")] = None,
    size: Annotated[tuple[int, int], typer.Option(help="Map size H W.")] = (640, 640),
    images: Annotated[int, typer.Option(min=1, help="Random layouts in the dense case.")] = 10,
    repeats: Annotated[int, typer.Option(min=1, help="Timed repeats (median reported).")] = 5,
    json_file: Annotated[Path | None, typer.Option("--json", help="Write the results here as JSON.")] = None,
    config: ConfigOption = None,
    set_: SetOption = None,
) -> None:
    """Label maps: production vs the plain per-edge reference (time per image, max difference).

    Cases: dense = 100 random rotated quads per image; sparse = the real ICDAR-2015 sample.
    """
    cfg = resolve_config(config, set_)
    results = run_maps_bench(sample_dir, size, images, repeats, cfg.maps)
    table = Table(title=f"DB label maps at {size[0]}×{size[1]}, ms per image (median of {repeats})")
    for column in ("case", "images", "ref ms", "prod ms", "speed-up", "max Δthresh", "masks equal"):
        table.add_column(column, justify="right")
    for r in results:
        table.add_row(r.case, str(r.images), f"{r.reference_ms:.2f}", f"{r.production_ms:.2f}",
                      f"{r.speedup:.2f}×", f"{r.max_thresh_diff:.1e}", str(r.binary_maps_identical))
    out_console.print(table)
    if json_file:
        json_file.write_text(json.dumps({"machine": machine_info(), "results": results_as_dicts(results)}, indent=2))
        out_console.print(f"wrote {json_file}")

"""The ``ocrkit`` entry point: one Typer app; each command group is a thin adapter over core."""

from __future__ import annotations

import typer

from ocrkit import __version__
from ocrkit.cli import (
    bench_cmd,
    cache_cmd,
    config_cmd,
    data_cmd,
    doctor_cmd,
    eval_cmd,
    export_cmd,
    maps_cmd,
    predict_cmd,
    train_cmd,
)
from ocrkit.cli.common import OcrkitGroup, install_warning_format

app = typer.Typer(
    cls=OcrkitGroup,
    name="ocrkit",
    help="Train, evaluate and benchmark DBNet scene-text detectors.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"ocrkit {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Show the version."),
) -> None:
    install_warning_format()


app.add_typer(config_cmd.app, name="config")
app.add_typer(data_cmd.app, name="data")
app.add_typer(maps_cmd.app, name="maps")
app.add_typer(cache_cmd.app, name="cache")
app.add_typer(bench_cmd.app, name="bench")
app.command("train")(train_cmd.train_command)
app.command("eval")(eval_cmd.eval_command)
app.command("predict")(predict_cmd.predict_command)
app.command("export")(export_cmd.export_command)
app.command("doctor")(doctor_cmd.doctor_command)


def main() -> None:
    app()

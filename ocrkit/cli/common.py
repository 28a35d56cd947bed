"""What every command shares: the config options, one-line user errors, output helpers."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from typer.core import TyperGroup

from ocrkit.core.errors import OcrkitError

if TYPE_CHECKING:
    from ocrkit.core.config import OcrkitConfig

err_console = Console(stderr=True, highlight=False)
# Piped or captured output is not squeezed into 80 columns: benchmark tables stay readable.
out_console = Console(highlight=False, width=None if sys.stdout.isatty() else 200)

ConfigOption = Annotated[Path | None, typer.Option("--config", "-c", help="TOML config file (overrides defaults).")]
SetOption = Annotated[
    list[str] | None,
    typer.Option("--set", help="Override any config key: --set train.lr=0.01 (repeatable; wins over all)."),
]

WeightsOption = Annotated[
    str, typer.Option("--weights", help="raw: the trained model; ema: its moving average (train.ema.enabled).")
]
SkipBadOption = Annotated[
    bool | None,
    typer.Option("--skip-bad", help="Warn about each malformed sample, skip it, and report the count."),
]


class OcrkitGroup(TyperGroup):
    """Turns user errors into one line on stderr and a non-zero exit code, never a traceback."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except OcrkitError as err:
            err_console.print(f"[bold red]error:[/] {err}", soft_wrap=True)
            raise typer.Exit(err.exit_code) from None


def _one_line_warning(message, category, filename, lineno, file=None, line=None) -> None:
    err_console.print(f"[yellow]warning:[/] {message}", soft_wrap=True)


def install_warning_format() -> None:
    warnings.showwarning = _one_line_warning


def flag_values(**flags: Any) -> dict[str, Any]:
    """Dedicated CLI options as dotted config keys (``train__lr`` → ``train.lr``)."""
    return {key.replace("__", "."): value for key, value in flags.items()}


def resolve_config(config: Path | None, sets: list[str] | None, **flags: Any) -> OcrkitConfig:
    """The config every command runs with; ``flags`` are dotted keys from dedicated options."""
    from ocrkit.core.config import load_config  # pydantic: not for --version and --help

    return load_config(config, sets, flag_values(**flags))

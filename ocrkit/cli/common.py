"""What every command shares: the config options, one-line user errors, output helpers."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from typer.core import TyperGroup

try:  # typer vendors its own copy of click since 0.2x: its commands raise that copy's exceptions
    from typer._click.exceptions import ClickException, NoArgsIsHelpError
except ImportError:  # pragma: no cover - an older typer on the real click
    from click.exceptions import ClickException, NoArgsIsHelpError  # type: ignore[assignment]

from ocrkit.core.errors import OcrkitError
from ocrkit.core.ranks import rank_prefix

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
    """Turns user errors into one line on stderr and a non-zero exit code, never a traceback: ours
    (OcrkitError) and the command line's (an unknown command or option, a value of the wrong type,
    a missing argument), which Click would print as a usage block and a framed message."""

    def make_context(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().make_context(*args, **kwargs)
        except ClickException as err:  # the root's own options
            _usage_error(err)

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except OcrkitError as err:
            err_console.print(f"[bold red]error:[/] {escape(rank_prefix() + str(err))}", soft_wrap=True)
            raise typer.Exit(err.exit_code) from None
        except ClickException as err:  # parsing a command's arguments
            _usage_error(err)


def _usage_error(err: ClickException) -> Any:
    """One line for a command-line error, naming the command and the option; help stays help."""
    if isinstance(err, NoArgsIsHelpError):
        raise err  # `ocrkit config` alone prints its help
    ctx = getattr(err, "ctx", None)
    where = f"{ctx.command_path}: " if ctx is not None else ""
    hint = f" (see {ctx.command_path} --help)" if ctx is not None else ""
    message = " ".join(err.format_message().split())
    err_console.print(f"[bold red]error:[/] {escape(where + message + hint)}", soft_wrap=True, markup=True)
    raise typer.Exit(err.exit_code) from None


def _one_line_warning(message, category, filename, lineno, file=None, line=None) -> None:
    err_console.print(f"[yellow]warning:[/] {escape(rank_prefix() + str(message))}", soft_wrap=True)


def install_warning_format() -> None:
    warnings.showwarning = _one_line_warning


def flag_values(**flags: Any) -> dict[str, Any]:
    """Dedicated CLI options as dotted config keys (``train__lr`` → ``train.lr``)."""
    return {key.replace("__", "."): value for key, value in flags.items()}


def resolve_config(config: Path | None, sets: list[str] | None, **flags: Any) -> OcrkitConfig:
    """The config every command runs with; ``flags`` are dotted keys from dedicated options."""
    from ocrkit.core.config import load_config  # pydantic: not for --version and --help

    return load_config(config, sets, flag_values(**flags))

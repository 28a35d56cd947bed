"""ocrkit config show."""

from __future__ import annotations

import typer

from ocrkit.cli.common import ConfigOption, SetOption, out_console, resolve_config

app = typer.Typer(help="Inspect the resolved configuration.", no_args_is_help=True)


@app.command("show")
def show(config: ConfigOption = None, set_: SetOption = None) -> None:
    """Print the resolved config (defaults < TOML < OCRKIT_* env < --set) as TOML."""
    from ocrkit.core.config import config_to_toml

    out_console.print(config_to_toml(resolve_config(config, set_)), markup=False, end="")

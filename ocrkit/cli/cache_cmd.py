"""ocrkit cache status | health | validate | clear | export."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from ocrkit.cli.common import ConfigOption, SetOption, out_console, resolve_config
from ocrkit.core.atomic import write_text_atomic
from ocrkit.core.data.kinds import KINDS
from ocrkit.core.errors import OcrkitError
from ocrkit.core.store.events import EVENTS

if TYPE_CHECKING:
    from ocrkit.core.config import OcrkitConfig
    from ocrkit.core.store.store import Store

app = typer.Typer(help="The store of decoded images, DB maps and eval tensors.", no_args_is_help=True)

JsonFlag = Annotated[bool, typer.Option("--json", help="Print one JSON object instead of tables.")]


def _store(config, set_) -> tuple[Store, OcrkitConfig]:
    from ocrkit.core.data.cached import open_data_store  # diskcache: only when a command opens the store

    cfg = resolve_config(config, set_)
    store = open_data_store(cfg.cache)
    if store is None:
        raise OcrkitError("the store is disabled (cache.enabled = false): there is nothing to inspect")
    return store, cfg


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB"


@app.command("status")
def status_command(config: ConfigOption = None, set_: SetOption = None, json_out: JsonFlag = False) -> None:
    """Location, size, entries per kind and version, and the version this config maps to."""
    from ocrkit.core.data import store_commands as jobs  # torch, numba, diskcache: only when a command runs

    store, cfg = _store(config, set_)
    info = jobs.status(store, cfg)
    if json_out:
        out_console.print_json(json.dumps(info))
        return
    out_console.print(f"store: {info['location']}")
    out_console.print(f"size: {_mb(info['size_bytes'])} of {_mb(info['size_limit_bytes'])}, {info['entries']} entries")
    table = Table(title="entries by kind, version and config")
    for column in ("kind", "version", "config", "entries", "size", "this config?"):
        table.add_column(column, justify="right")
    for g in info["groups"]:
        mark = (
            "yes"
            if g["current_version"] and g["current_config"]
            else "older version"
            if not g["current_version"]
            else "other config"
        )
        table.add_row(g["kind"], g["version"], g["config"], str(g["entries"]), _mb(g["bytes"]), mark)
    out_console.print(table)
    now = ", ".join(f"{kind} {v['version']}/{v['config']}" for kind, v in info["current"].items())
    out_console.print(f"this config maps to: {now}")


@app.command("health")
def health_command(config: ConfigOption = None, set_: SetOption = None, json_out: JsonFlag = False) -> None:
    """Hit rates, stale share, failed writes, size vs limit; exit 0 HEALTHY, 1 WARN, 2 FAIL."""
    from ocrkit.core.data import store_commands as jobs  # torch, numba, diskcache: only when a command runs

    store, cfg = _store(config, set_)
    report = jobs.health(store, cfg)
    if json_out:
        out_console.print_json(json.dumps(report))
    else:
        table = Table(title=f"store health: {report['location']}")
        for column in ("kind", "entries", "lookups", "hit rate", *EVENTS):
            table.add_column(column, justify="right")
        for kind in KINDS:
            k = report["kinds"][kind]
            rate = "—" if k["hit_rate"] is None else f"{k['hit_rate']:.1%}"
            table.add_row(kind, str(k["entries"]), str(k["lookups"]), rate, *(str(k[e]) for e in EVENTS))
        out_console.print(table)
        out_console.print(
            f"size {_mb(report['size_bytes'])} of {_mb(report['size_limit_bytes'])} "
            f"({report['fill']:.0%}); stale entries {report['stale_entries']} ({report['stale_share']:.0%})"
        )
        for problem in report["problems"]:
            out_console.print(f"{problem['level']}: {problem['message']}", soft_wrap=True)
        out_console.print(f"verdict: {report['verdict']}")
    raise typer.Exit(jobs.EXIT_CODES[report["verdict"]])


@app.command("validate")
def validate_command(
    sample: Annotated[int | None, typer.Option("--sample", min=1, help="Check this many random entries.")] = None,
    full: Annotated[
        bool, typer.Option("--full", help="Check every entry (the default when --sample is not given).")
    ] = False,
    fix: Annotated[bool, typer.Option("--fix", help="Delete corrupt, stale and mismatched entries.")] = False,
    config: ConfigOption = None,
    set_: SetOption = None,
    json_out: JsonFlag = False,
) -> None:
    """Recompute entries and compare: checksum and shapes, version, source digest, exact values.
    Exit 1 when bad entries remain (not fixed)."""
    from ocrkit.core.data import store_commands as jobs  # torch, numba, diskcache: only when a command runs

    if sample is not None and full:
        raise OcrkitError("give --sample N or --full, not both")
    store, _ = _store(config, set_)
    report = jobs.validate(store, sample, fix, progress=not json_out)
    if json_out:
        out_console.print_json(json.dumps(report.to_dict()))
    else:
        out_console.print(
            f"checked {report.checked} of {report.total} entries: {report.ok} ok, "
            f"{len(report.corrupt)} corrupt, {len(report.stale)} stale, {len(report.mismatched)} mismatched"
            + (f"; deleted {report.deleted}" if fix else "")
        )
        if report.orphans:
            out_console.print(
                f"{report.orphans} value files no entry names ({_mb(report.orphan_bytes)}, left by interrupted writes)"
                + (f": deleted {report.orphans_deleted}" if fix else ": --fix deletes them")
            )
        for label, keys in (("corrupt", report.corrupt), ("stale", report.stale), ("mismatched", report.mismatched)):
            for key in keys[:20]:
                out_console.print(f"  {label}: {key}")
    if report.bad and not fix:
        raise typer.Exit(1)


@app.command("clear")
def clear_command(
    all_: Annotated[bool, typer.Option("--all", help="Every entry and the statistics.")] = False,
    stale: Annotated[bool, typer.Option("--stale", help="Entries of older versions.")] = False,
    kind: Annotated[str | None, typer.Option("--kind", help=f"One kind: {', '.join(KINDS)}.")] = None,
    config: ConfigOption = None,
    set_: SetOption = None,
) -> None:
    """Delete entries."""
    from ocrkit.core.data import store_commands as jobs  # torch, numba, diskcache: only when a command runs

    store, _ = _store(config, set_)
    removed = jobs.clear(store, all_, stale, kind)
    if removed < 0:
        out_console.print(f"rebuilt the damaged store at {store.root}: it is empty")
    else:
        out_console.print(f"removed {removed} entries from {store.root}")


@app.command("export")
def export_command(
    output: Annotated[Path, typer.Option("--output", "-o", help="JSON file to write.")],
    config: ConfigOption = None,
    set_: SetOption = None,
) -> None:
    """Status, statistics and the health verdict as one JSON file."""
    from ocrkit.core.data import store_commands as jobs  # torch, numba, diskcache: only when a command runs

    store, cfg = _store(config, set_)
    write_text_atomic(output, json.dumps(jobs.export(store, cfg), indent=2) + "\n")
    out_console.print(f"wrote {output}")

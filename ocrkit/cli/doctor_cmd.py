"""ocrkit doctor."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from ocrkit.cli.common import ConfigOption, SetOption, out_console, resolve_config


def doctor_command(
    json_out: Annotated[bool, typer.Option("--json", help="Print the report as one JSON object.")] = False,
    device: Annotated[
        str | None, typer.Option(help="cpu | cuda | auto (the device the rates are measured on).")
    ] = None,
    config: ConfigOption = None,
    set_: SetOption = None,
) -> None:
    """What decides speed and correctness here: versions, CPU features, GPUs, the store's disk,
    measured rates of the configured model per precision, label maps and the data pipeline, and advice."""
    from ocrkit.core.bench.doctor import run_doctor  # torch, numba: only here

    cfg = resolve_config(config, set_, train__device=device)
    report = run_doctor(cfg)
    if json_out:
        out_console.print_json(json.dumps(report))
        return
    for line in report_lines(report):
        out_console.print(line, soft_wrap=True, markup=False)


def report_lines(report: dict[str, Any]) -> list[str]:
    lines = ["ocrkit doctor"]
    for section in ("versions", "cpu", "gpus", "store"):
        lines.append(f"{section}: {_flat(report[section])}")
    rates = report["rates"]
    lines.append(f"rates on {rates.get('device', 'the configured device')}:")
    precision = rates["precision"]
    if "error" in precision:
        lines.append(f"  precision probe: error: {precision['error']}")
    else:
        probe = precision["probe"]
        n, _, h, w = probe["shape"]
        for mode, t in probe["timings"].items():
            if t["error"]:
                lines.append(f"  {mode}: error: {t['error']}")
            elif t["full_s"] is None:
                lines.append(
                    f"  {mode}: {t['slowdown_vs_32']:.1f}x slower than 32-true at 1x128x128 (not timed further)"
                )
            else:
                lines.append(
                    f"  {mode}: {t['full_s'] * 1e3:.0f} ms per {n}x{h}x{w} training step, "
                    f"{t['images_per_s']:.1f} img/s, {1 / t['slowdown_vs_32']:.2f}x the 32-true rate"
                )
    for key, label in (("maps", "label maps"), ("sample", "one training sample")):
        value = rates[key]
        lines.append(
            f"  {label}: "
            + (
                f"error: {value['error']}"
                if "error" in value
                else f"{value['ms_per_image']} ms "
                f"per image ({value.get('layout') or 'train size ' + str(value['train_size'])})"
            )
        )
    advice = report["advice"]
    lines.append("advice:")
    lines += [f"  - {a}" for a in advice] if isinstance(advice, list) else [f"  error: {advice['error']}"]
    return lines


def _flat(value: Any) -> str:
    if isinstance(value, dict):
        if "error" in value:
            return f"error: {value['error']}"
        return ", ".join(f"{k} {_flat(v)}" for k, v in value.items())
    if isinstance(value, list):
        return "; ".join(_flat(v) for v in value) or "none"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)

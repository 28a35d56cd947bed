"""Tables more than one command prints."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.table import Table

if TYPE_CHECKING:
    from ocrkit.core.engine.probe import ProbeResult


def probe_table(probe: ProbeResult) -> Table:
    """The precision probe's figures: one forward + backward of the configured model per mode."""
    n, _, h, w = probe.shape
    source = "cached" if probe.cached else "measured"
    table = Table(
        title=f"precision probe on {probe.device} ({source} {probe.measured_at}): "
        f"one training step (forward + backward)"
    )
    for column in ("mode", "1x128x128 ms", f"{n}x{h}x{w} ms", "img/s", "vs 32-true", "note"):
        table.add_column(column, justify="right")
    for mode, timing in probe.timings.items():
        slowdown = probe.slowdown(mode)
        ips = probe.images_per_s(mode)
        if not timing.ok:
            note = f"failed: {timing.error}"
        elif timing.full_s is None and mode != "32-true":
            note = "screened out (too slow to time at full size)"
        else:
            note = ""
        table.add_row(
            mode,
            "—" if timing.screen_s is None else f"{timing.screen_s * 1e3:.0f}",
            "—" if timing.full_s is None else f"{timing.full_s * 1e3:.0f}",
            "—" if ips is None else f"{ips:.1f}",
            _versus(mode, slowdown),
            note,
        )
    return table


def _versus(mode: str, slowdown: float | None) -> str:
    if slowdown is None:
        return "—"
    if mode == "32-true":
        return "1.00×"
    return f"{1 / slowdown:.2f}× faster" if slowdown < 1 else f"{slowdown:.2f}× slower"

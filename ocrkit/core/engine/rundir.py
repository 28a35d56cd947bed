"""Run directories: runs/<kind>/<name>, auto-incremented (name, name2, name3, ...)."""

from __future__ import annotations

from pathlib import Path


def create_run_dir(root: str | Path, kind: str, name: str) -> Path:
    base = Path(root) / kind
    base.mkdir(parents=True, exist_ok=True)
    for index in range(1, 10_000):
        candidate = base / (name if index == 1 else f"{name}{index}")
        try:
            candidate.mkdir()  # atomic: two runs started together never share a directory
            return candidate
        except FileExistsError:
            continue
    raise RuntimeError(f"no free run directory under {base}")

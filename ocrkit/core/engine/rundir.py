"""Run directories: runs/<kind>/<name>, auto-incremented (name, name2, name3, ...)."""

from __future__ import annotations

from pathlib import Path, PurePath

from ocrkit.core.errors import OcrkitError


def create_run_dir(root: str | Path, kind: str, name: str) -> Path:
    """A new directory ``root/kind/name`` (``name2``, ``name3``, ... when taken). ``name`` may
    group runs in sub-folders (``ablation/lr-0.01``) but cannot leave ``root/kind``."""
    parts = PurePath(name).parts
    if not name or PurePath(name).is_absolute() or ".." in parts:
        raise OcrkitError(
            f"--name {name!r}: expected a run name, optionally in sub-folders (group/exp), "
            "not an absolute path or one with '..'"
        )
    base = Path(root) / kind
    for index in range(1, 10_000):
        candidate = base / (name if index == 1 else f"{name}{index}")
        candidate.parent.mkdir(parents=True, exist_ok=True)
        try:
            candidate.mkdir()  # atomic: two runs started together never share a directory
            return candidate
        except FileExistsError:
            continue
    raise RuntimeError(f"no free run directory under {base}")

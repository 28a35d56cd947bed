"""Where ocrkit keeps what it makes for a user (the store, the built-in dataset, probe results)."""

from __future__ import annotations

import os
from pathlib import Path

from ocrkit.core.config import CacheConfig


def user_cache_dir(cfg: CacheConfig) -> Path:
    """``cache.dir``, else $XDG_CACHE_HOME/ocrkit, else ~/.cache/ocrkit."""
    if cfg.dir:
        return Path(cfg.dir).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "ocrkit"

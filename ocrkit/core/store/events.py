"""The store's statistics events: plain names, no diskcache, so the CLI can list them without
loading the store."""

EVENTS = ("hits", "misses", "stale", "corrupt", "fallbacks", "failed_writes")

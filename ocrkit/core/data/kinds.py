"""The kinds of entry ocrkit's data keeps in the store (data/cached.py makes them), and their
versions: plain names, no diskcache, so the CLI can list them (``ocrkit cache clear --kind``
help) without loading the store."""

from __future__ import annotations

# Bump a kind's version whenever the code that produces its values changes what they hold.
KIND_VERSIONS = {"image": 1, "maps": 1, "tensor": 2}  # tensor 2: uint8 resized content (was float32)
KINDS = tuple(KIND_VERSIONS)

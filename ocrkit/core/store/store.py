"""The versioned, checksummed entry store on diskcache, and its persisted statistics.

An entry is a pure function of its *fields*: everything that shapes the value (the source
image's content digest, the sample's annotation, every config field the producer reads) plus the
kind's version. Its key is ``<kind>/<version>/<xxh3-128 of the canonical fields>`` and the fields
are stored inside the entry and compared on read, so a changed input can only ever miss: a
mismatch counts as ``stale``, a damaged entry as ``corrupt`` (and is deleted), and both fall
through to regeneration. See docs/store.md.

Processes: each process opens its own diskcache handle the first time it needs one (a handle
must not cross a fork), under a file lock with retries because concurrent first-time creation
of the SQLite files can fail with "database is locked". Statistics are counted in memory and
added to a second, never-evicted diskcache with atomic ``incr`` every ``flush_every`` events, at
epoch ends, and when a process (DataLoader workers included) exits.

Faults (docs/store.md, "Faults"): an entry's value file is written whole under a fresh name
before its index row is committed, so a writer killed mid-write leaves at worst an unreferenced
file (``orphan_files``; ``cache validate --fix`` removes it), and a value damaged later is caught
by its checksum. An index SQLite cannot open is rebuilt empty at once (the store holds nothing
that is not recomputed on a miss), with a warning; one found damaged while in use stops this
process using the store with one line naming ``ocrkit cache clear --all``, which rebuilds it. A
failed write (disk full, read-only, lock timeout) is counted and said once per process.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import mmap
import multiprocessing.util
import os
import queue
import shutil
import sqlite3
import sys
import threading
import time
import warnings
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import diskcache
import numpy as np
import xxhash

from ocrkit.core.config import CacheConfig
from ocrkit.core.errors import OcrkitError
from ocrkit.core.paths import user_cache_dir
from ocrkit.core.store.codec import CorruptEntry, decode, encode_chunks
from ocrkit.core.store.events import EVENTS

if sys.platform != "win32":
    import fcntl
else:  # pragma: no cover - Windows has no fcntl: creation is guarded by the retries alone
    fcntl = None

FORMAT_VERSION = 1  # the byte format (codec.py) and key scheme

Arrays = dict[str, np.ndarray]
Check = Callable[[Arrays, dict[str, Any]], "str | None"]


class StoreUnavailable(OcrkitError):
    """The store directory cannot be opened (permissions, a damaged database, ...)."""


class StoreDamaged(StoreUnavailable):
    """The store's SQLite index is damaged (found while in use)."""


RECOVERY = "`ocrkit cache clear --all` rebuilds it (same --config/--set; it only holds recomputable data)"


def _is_damage(exc: BaseException) -> bool:
    """A damaged SQLite file ("file is not a database", "database disk image is malformed"), as
    opposed to a busy one (OperationalError: locked, I/O) that retrying or waiting may fix."""
    return isinstance(exc, sqlite3.DatabaseError) and not isinstance(exc, sqlite3.OperationalError)


def canonical(fields: dict[str, Any]) -> str:
    return json.dumps(fields, sort_keys=True, separators=(",", ":"))


def digest(fields: dict[str, Any]) -> str:
    return xxhash.xxh3_128_hexdigest(canonical(fields).encode())


def entry_key(kind: str, version: str, fields: dict[str, Any]) -> str:
    return f"{kind}/{version}/{digest(fields)}"


def entry_tag(kind: str, version: str, config_id: str) -> str:
    """Groups entries by kind, version and the config that shaped them (for status and clear)."""
    return f"{kind}/{version}/{config_id}"


def parse_tag(tag: str | None) -> tuple[str, str, str]:
    """(kind, version, config id); "?" for parts an untagged or foreign entry lacks."""
    parts = (tag or "").split("/", 2) + ["?", "?", "?"]
    return parts[0] or "?", parts[1], parts[2]


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    with open(path, "a+b") as handle:
        if fcntl is not None:
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            if fcntl is not None:
                fcntl.flock(handle, fcntl.LOCK_UN)


class _EntryDisk(diskcache.Disk):
    """diskcache's file storage, with two changes measured on the hot path (docs/store.md):

    - one level of 256 sub-directories instead of two levels of random ones (65,536
      directories): almost every early write made two new directories (0.5 ms here). Files
      already stored keep their recorded names.
    - an entry file is read by mapping it (read-only) rather than into a fresh buffer: no 1 MB
      allocation to zero and copy into per read. Arrays decoded from it are views that keep the
      mapping alive; diskcache never rewrites a file in place (a replaced entry is a new file,
      and an unlinked file stays readable while mapped).
    """

    def filename(self, key=diskcache.core.UNKNOWN, value=diskcache.core.UNKNOWN):
        hex_name = os.urandom(16).hex()
        filename = os.path.join(hex_name[:2], hex_name[2:] + ".val")
        return filename, os.path.join(self._directory, filename)

    def fetch(self, mode, filename, value, read):
        if mode != diskcache.core.MODE_BINARY or read:
            return super().fetch(mode, filename, value, read)
        with open(os.path.join(self._directory, filename), "rb") as file:
            if os.fstat(file.fileno()).st_size == 0:  # an empty file cannot be mapped
                return b""
            return memoryview(mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ))

    def _write(self, full_path, iterator, mode, encoding=None):
        """diskcache's write, minus the partial file it leaves when a write fails (disk full,
        read-only): the index never names it, so it would only take space."""
        try:
            return super()._write(full_path, iterator, mode, encoding)
        except BaseException:
            with contextlib.suppress(OSError):
                os.remove(full_path)
            raise


class _Pieces:
    """A reader over an entry's pieces for ``Cache.set(..., read=True)``: diskcache then writes
    each piece as it is. Handed plain bytes, it would iterate them as *lines* of a BytesIO
    (about 2,000 small writes for a 1 MB entry) after our own join copy."""

    def __init__(self, pieces: list):
        self._pieces = iter([p for p in pieces if len(p)])  # an empty read means the end

    def read(self, size: int = -1):
        return next(self._pieces, b"")


def _open_cache(directory: Path, **settings: Any) -> diskcache.Cache:
    """A diskcache handle, created under a lock and retried: concurrent first-time creation
    races on SQLite ("database is locked"). An index SQLite cannot read (damaged: "file is not a
    database", "database disk image is malformed") is rebuilt empty, with a warning: everything
    in it is recomputed on a miss, and every value is checked on read anyway."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with _file_lock(directory.parent / f".{directory.name}.lock"):
            rebuilt = False
            for attempt in range(20):
                try:
                    return diskcache.Cache(str(directory), **settings)
                except sqlite3.OperationalError as exc:
                    if "locked" not in str(exc) or attempt == 19:
                        raise
                    time.sleep(0.05 * (attempt + 1))
                except sqlite3.DatabaseError as exc:
                    if rebuilt:  # an empty directory that SQLite still cannot use: not damage
                        raise
                    _set_aside(directory, str(exc))
                    rebuilt = True
    except (OSError, sqlite3.Error) as exc:
        raise StoreUnavailable(
            f"cannot open the store at {directory}: {exc} (check that path, its permissions and free space, "
            "or run without the store: --set cache.enabled=false)"
        ) from None
    raise AssertionError("unreachable")


def _set_aside(directory: Path, reason: str) -> None:
    """Replace a damaged store directory by an empty one (the caller holds its lock). A process
    still holding the old index reads misses from then on (its files are gone), never values."""
    aside = directory.with_name(f"{directory.name}.damaged-{os.getpid()}-{time.time_ns()}")
    os.replace(directory, aside)
    directory.mkdir()
    shutil.rmtree(aside, ignore_errors=True)
    warnings.warn(f"the store index at {directory} was damaged ({reason}): rebuilt empty", stacklevel=3)


class Store:
    """A versioned, checksummed key-value store of numpy arrays: entries in ``<root>/entries``
    (size-limited, evicted least-recently-used), statistics in ``<root>/stats``.

    The store knows nothing of what it holds: its user names the *kinds* of entry and their
    versions (``kinds``: name -> version; data/kinds.py for ocrkit's image, maps and tensor
    entries) and passes the fields that identify an entry. Bumping a kind's version makes every
    old entry of that kind miss. Safe to share between processes (DataLoader workers, precompute
    pools, several training ranks on one machine): each process opens its own handles.
    """

    def __init__(
        self,
        root: str | Path,
        size_limit_bytes: int,
        kinds: dict[str, int],
        timeout_s: float = 10.0,
        flush_every: int = 64,
        write_behind: bool = True,
        queue_size: int = 16,
    ):
        self.root = Path(root)
        self.kinds = dict(kinds)
        self.size_limit_bytes = int(size_limit_bytes)
        self.timeout_s = timeout_s
        self.flush_every = flush_every
        self.write_behind = write_behind
        self.queue_size = queue_size
        self._reset_process_state(None)

    def version_of(self, kind: str) -> str:
        """``<byte format>.<kind version>``: the version part of the kind's keys and tags."""
        if kind not in self.kinds:
            raise KeyError(f"the store has no kind {kind!r} (known: {', '.join(self.kinds)})")
        return f"{FORMAT_VERSION}.{self.kinds[kind]}"

    def _reset_process_state(self, pid: int | None) -> None:
        self._pid = pid
        self._entries: diskcache.Cache | None = None
        self._stats: diskcache.Cache | None = None
        self._pending: Counter[str] = Counter()
        self._last_flush = time.monotonic()
        self._lock = threading.Lock()
        self._queue: queue.Queue | None = None
        self._writer: threading.Thread | None = None
        # problems already said by this process, or by the parent it was forked from (DataLoader
        # workers are forked anew every epoch: a failing disk is said once, not once an epoch)
        self._said: set[str] = set(getattr(self, "_said", ()))

    # ---------------------------------------------------------------- handles (one per process)
    def __getstate__(self) -> dict[str, Any]:  # a spawned worker opens its own handles
        state = {k: v for k, v in self.__dict__.items() if not k.startswith("_")}
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._reset_process_state(None)

    def _own_process(self) -> None:
        pid = os.getpid()
        if self._pid == pid:
            return
        # A forked child inherits the parent's handles, unflushed counts and (dead) writer
        # thread: drop them all (the parent finishes its own), and finish ours when we exit.
        self._reset_process_state(pid)
        if multiprocessing.parent_process() is None:
            atexit.register(self.finish)
        else:
            multiprocessing.util.Finalize(self, self.finish, exitpriority=10)

    @property
    def entries(self) -> diskcache.Cache:
        self._own_process()
        with self._lock:
            if self._entries is None:
                self._entries = _open_cache(
                    self.root / "entries",
                    size_limit=self.size_limit_bytes,
                    timeout=self.timeout_s,
                    eviction_policy="least-recently-stored",
                    tag_index=True,
                    disk=_EntryDisk,
                )
            return self._entries

    @property
    def stats(self) -> diskcache.Cache:
        self._own_process()
        with self._lock:
            if self._stats is None:
                self._stats = _open_cache(self.root / "stats", eviction_policy="none", timeout=self.timeout_s)
            return self._stats

    def finish(self) -> None:
        """Wait for queued writes, then record the statistics (also run at process exit)."""
        self.drain()
        self.flush_stats()

    def close(self) -> None:
        self.finish()
        for handle in (self._entries, self._stats):
            if handle is not None:
                handle.close()
        self._entries = self._stats = None

    # ---------------------------------------------------------------- entries
    def lookup(
        self, kind: str, fields: dict[str, Any], check: Check | None = None
    ) -> tuple[dict[str, Any], Arrays] | None:
        """The stored (header, arrays) for exactly these fields, or None (counted). ``check``
        returns a problem with well-formed arrays of the wrong shape or dtype (then: corrupt)."""
        key = entry_key(kind, self.version_of(kind), fields)
        try:
            blob = self.entries.get(key, default=None, retry=True)
        except (diskcache.Timeout, sqlite3.Error, OSError) as exc:
            self.count(kind, "fallbacks")
            if _is_damage(exc):
                raise self._damaged(exc) from None
            return None
        if blob is None:
            self.count(kind, "misses")
            self._drop_dangling_row(key)
            return None
        try:
            header, arrays = decode(blob)
            problem = check(arrays, header.get("meta", {})) if check is not None else None
        except (CorruptEntry, KeyError, TypeError, ValueError):
            problem = "undecodable"
        if problem is not None:
            self.count(kind, "corrupt")
            self.delete(key)
            return None
        if (
            header.get("kind") != kind
            or header.get("version") != self.version_of(kind)
            or header.get("fields") != fields
        ):
            self.count(kind, "stale")  # only a digest collision or a key-scheme bug gets here
            return None
        self.count(kind, "hits")
        return header, arrays

    def _drop_dangling_row(self, key: str) -> None:
        """A row whose value file is gone (deleted by hand, lost by the disk) reads as a miss;
        remove the row, or the first-writer-wins ``add`` in ``_write_now`` would never store the
        value again. A row a concurrent writer just committed may go too: it is only rewritten."""
        with contextlib.suppress(diskcache.Timeout, sqlite3.Error, OSError):
            if key in self.entries:
                self.entries.delete(key, retry=True)

    def write(
        self,
        kind: str,
        config_id: str,
        fields: dict[str, Any],
        arrays: Arrays,
        meta: dict[str, Any] | None = None,
        bit_arrays: tuple[str, ...] = (),
        sync: bool = False,
    ) -> bool:
        """Store an entry. By default the encoding and the disk write happen on a writer thread
        (write-behind), off the data path: True then means queued, and a failure is counted by
        the writer. ``sync`` writes now and returns whether it worked. The arrays are handed
        over: the caller must not modify them afterwards."""
        if sync or not self.write_behind:
            return self._write_now(kind, config_id, fields, arrays, meta, bit_arrays)
        self._writer_queue().put((kind, config_id, fields, arrays, meta, bit_arrays))
        return True

    def _writer_queue(self) -> queue.Queue:
        self._own_process()
        with self._lock:
            if self._writer is None or not self._writer.is_alive():
                self._queue = queue.Queue(maxsize=self.queue_size)  # bounded: a slow disk slows the producer
                self._writer = threading.Thread(
                    target=self._write_loop, args=(self._queue,), daemon=True, name="ocrkit-store-writer"
                )
                self._writer.start()
            assert self._queue is not None  # made with the writer
            return self._queue

    def _write_loop(self, jobs: queue.Queue) -> None:
        while True:
            job = jobs.get()
            try:
                if job is None:
                    return
                self._write_now(*job)
            except Exception:  # noqa: BLE001 - never lose the writer; the failure is counted
                self.count(job[0], "failed_writes")
            finally:
                jobs.task_done()

    def drain(self) -> None:
        """Block until every queued write of this process is done."""
        writer, jobs = self._writer, self._queue
        if self._pid == os.getpid() and writer is not None and writer.is_alive() and jobs is not None:
            jobs.join()

    def _write_now(
        self,
        kind: str,
        config_id: str,
        fields: dict[str, Any],
        arrays: Arrays,
        meta: dict[str, Any] | None,
        bit_arrays: tuple[str, ...],
    ) -> bool:
        header = {"kind": kind, "version": self.version_of(kind), "fields": fields, "meta": meta or {}}
        pieces = _Pieces(encode_chunks(header, arrays, bit_arrays))
        try:
            # `add`, not `set`: one writer per key. Processes sharing the store (loader workers,
            # the ranks of a distributed run) that miss the same key at once all make the value,
            # but only the first commits it; the others' files are removed in the same transaction.
            # Their values are the same: an entry is a pure function of its fields.
            self.entries.add(
                entry_key(kind, self.version_of(kind), fields),
                pieces,
                read=True,
                tag=entry_tag(kind, self.version_of(kind), config_id),
                retry=True,
            )
        except (diskcache.Timeout, sqlite3.Error, OSError, StoreUnavailable) as exc:
            self.count(kind, "failed_writes")
            self._say_write_failure(exc)
            return False
        return True

    def say_once(self, what: str, message: str) -> None:
        """Warn ``message`` unless this process (or the one it was forked from) said ``what``."""
        with self._lock:
            if what in self._said:
                return
            self._said.add(what)
        warnings.warn(message, stacklevel=3)

    def _damaged(self, exc: BaseException) -> StoreDamaged:
        return StoreDamaged(f"the store index at {self.root / 'entries'} is damaged ({exc}): {RECOVERY}")

    def _say_write_failure(self, exc: BaseException) -> None:
        if isinstance(exc, StoreUnavailable):
            reason = str(exc)
        elif _is_damage(exc):
            reason = str(self._damaged(exc))
        elif isinstance(exc, diskcache.Timeout | sqlite3.OperationalError):
            reason = f"store busy ({exc or 'lock timeout'}): raise cache.timeout_s"
        else:
            reason = f"{exc.__class__.__name__}: {exc}: free space or fix the permissions of {self.root}"
        self.say_once(
            "write",
            f"could not write to the store ({reason}); going on without storing what fails "
            "(values are recomputed, never wrong; cache.enabled=false turns the store off)",
        )

    def fetch(
        self,
        kind: str,
        config_id: str,
        fields: dict[str, Any],
        produce: Callable[[], tuple[Arrays, dict[str, Any]]],
        bit_arrays: tuple[str, ...] = (),
        check: Check | None = None,
    ) -> tuple[Arrays, dict[str, Any]]:
        """The stored value, or ``produce()`` written back: (arrays, meta)."""
        found = self.lookup(kind, fields, check)
        if found is not None:
            header, arrays = found
            return arrays, header.get("meta", {})
        arrays, meta = produce()
        self.write(kind, config_id, fields, arrays, meta, bit_arrays)
        return arrays, meta

    @contextlib.contextmanager
    def _index(self, which: str = "entries") -> Iterator[None]:
        """A damaged SQLite index found by a query: StoreDamaged, one line naming the fix."""
        try:
            yield
        except sqlite3.DatabaseError as exc:
            if not _is_damage(exc):
                raise
            raise StoreDamaged(f"the store index at {self.root / which} is damaged ({exc}): {RECOVERY}") from None

    def contains(self, kind: str, fields: dict[str, Any]) -> bool:
        with self._index():
            return entry_key(kind, self.version_of(kind), fields) in self.entries

    def has_key(self, key: str) -> bool:
        with self._index():
            return key in self.entries

    def read_raw(self, key: str) -> bytes | None:
        """The entry's bytes; None when it is not there (or its value file is gone)."""
        with self._index():
            return self.entries.get(key, default=None, retry=True)

    def delete(self, key: str) -> bool:
        try:
            return bool(self.entries.delete(key, retry=True))
        except (diskcache.Timeout, sqlite3.Error, OSError):
            return False

    def keys(self) -> list[str]:
        with self._index():
            return list(self.entries.iterkeys())

    def tag_of(self, key: str) -> str | None:
        with self._index():
            found = self.entries.get(key, default=None, read=True, tag=True, retry=True)
        if isinstance(found, tuple):
            handle, tag = found
            if hasattr(handle, "close"):
                handle.close()
            return tag
        return None

    def evict(self, tag: str) -> int:
        with self._index():
            return int(self.entries.evict(tag, retry=True))

    def clear_entries(self) -> int:
        """Delete every entry (and any file the index does not know); a damaged index is
        rebuilt empty instead (then: -1, the count is unknown)."""
        try:
            removed = int(self.entries.clear(retry=True))
        except sqlite3.DatabaseError as exc:
            if not _is_damage(exc):
                raise
            self.rebuild("entries", str(exc))
            return -1
        for path in self.orphan_files(min_age_s=0.0):
            path.unlink(missing_ok=True)
        return removed

    def rebuild(self, which: str, reason: str) -> None:
        """Replace the ``entries`` or ``stats`` directory by an empty one (a damaged index)."""
        self.drain()
        with self._lock:
            handle = self._entries if which == "entries" else self._stats
            if handle is not None:
                handle.close()
            if which == "entries":
                self._entries = None
            else:
                self._stats = None
        directory = self.root / which
        with _file_lock(directory.parent / f".{directory.name}.lock"):
            _set_aside(directory, reason)

    def orphan_files(self, min_age_s: float = 60.0) -> list[Path]:
        """Value files no index row names: left by a writer killed between writing a value and
        committing its row (or by a failed write). Files younger than ``min_age_s`` are left out:
        another process may be about to commit them."""
        directory = self.root / "entries"
        with self._index():
            known = {
                os.path.normpath(name)
                for (name,) in self.entries._sql(  # noqa: SLF001 - diskcache offers no filename listing
                    "SELECT filename FROM Cache WHERE filename IS NOT NULL"
                ).fetchall()
            }
        now, orphans = time.time(), []
        for path in directory.rglob("*.val"):
            try:
                old = now - path.stat().st_mtime >= min_age_s
            except FileNotFoundError:
                continue
            if old and os.path.normpath(path.relative_to(directory)) not in known:
                orphans.append(path)
        return orphans

    def volume(self) -> int:
        with self._index():
            return int(self.entries.volume())

    def tag_summary(self) -> dict[str, tuple[int, int]]:
        """{tag: (entries, bytes)} straight from diskcache's SQLite table (no entry is read).
        Values below diskcache's file threshold live inline: their bytes are length(value)."""
        cache = self.entries
        with self._index():
            rows = cache._sql(  # noqa: SLF001 - diskcache offers no per-tag count/size query
                "SELECT tag, COUNT(*), SUM(size + COALESCE(LENGTH(value), 0)) FROM Cache GROUP BY tag"
            ).fetchall()
        return {tag: (int(n), int(size or 0)) for tag, n, size in rows}

    # ---------------------------------------------------------------- statistics
    def count(self, kind: str, event: str, n: int = 1) -> None:
        self._own_process()
        with self._lock:
            self._pending[f"{kind}/{event}"] += n
            due = sum(self._pending.values()) >= self.flush_every or time.monotonic() - self._last_flush > 5.0
        if due:
            self.flush_stats()

    def flush_stats(self) -> None:
        if self._pid != os.getpid():
            return
        with self._lock:
            pending, self._pending = self._pending, Counter()
            self._last_flush = time.monotonic()
        if not pending:
            return
        try:
            stats = self.stats
            with stats.transact(retry=True):
                for name, n in pending.items():
                    stats.incr(name, n, default=0, retry=True)
        except (diskcache.Timeout, sqlite3.Error, OSError, StoreUnavailable) as exc:
            self.say_once("stats", f"could not record cache statistics in {self.root / 'stats'} ({exc})")

    def read_stats(self) -> dict[str, dict[str, int]]:
        """{kind: {event: count}} as persisted, after this process's queued writes and counts."""
        self.finish()
        out = {kind: dict.fromkeys(EVENTS, 0) for kind in self.kinds}
        with self._index("stats"):
            for name in self.stats.iterkeys():
                kind, _, event = str(name).partition("/")
                if kind in out and event in out[kind]:
                    out[kind][event] = int(self.stats.get(name, default=0, retry=True))
        return out

    def reset_stats(self) -> None:
        self.drain()
        with self._lock:
            self._pending = Counter()
        try:
            self.stats.clear(retry=True)
        except sqlite3.DatabaseError as exc:
            if not _is_damage(exc):
                raise
            self.rebuild("stats", str(exc))


def open_store(cfg: CacheConfig, kinds: dict[str, int]) -> Store | None:
    """The store a config speaks about (None when ``cache.enabled`` is false). Opening is lazy:
    nothing touches the disk until the first lookup."""
    if not cfg.enabled:
        return None
    return Store(user_cache_dir(cfg) / "store", int(cfg.size_limit_gb * 1e9), kinds, cfg.timeout_s)

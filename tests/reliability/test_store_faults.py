"""Store faults: whatever happens to the store, training gets the values it would get without one.

Each fault ends in one of two ways, never in a wrong value:

- repaired on the spot, said in one line: a truncated, zeroed or bit-flipped value file is counted
  corrupt, deleted and recomputed; an index SQLite cannot read is rebuilt empty ("rebuilt empty");
- one line naming the way out, and the run goes on without the store (or the command stops): an
  index found damaged while in use (``ocrkit cache clear --all`` rebuilds it), a store that cannot
  be opened (``--set cache.enabled=false``), writes that fail (disk full, read-only: said once per
  process, counted, nothing half written left behind), a size limit too small for the data.

A deleted value file is a miss (recomputed, and ``cache validate`` calls its entry corrupt). A
``maps precompute`` killed mid-write is finished by running it again, and ``cache validate --full``
then finds nothing corrupt; the file the killed write left is an orphan that ``--fix`` removes.
Two trainings sharing one store at once both finish with the uninterrupted run's weights.

In-process tests compare every training item (with and without augmentation, so the image and
maps entries) and every eval input (tensor entries) read through the faulty store with the same
read without a store; the command tests run `ocrkit` itself through the fork server.
"""

from __future__ import annotations

import errno
import json
import os
import sqlite3
import time
import warnings
from pathlib import Path

import numpy as np
import pytest

if not hasattr(os, "fork") or not hasattr(os, "killpg"):
    pytest.skip("the command tests need fork and process groups (POSIX)", allow_module_level=True)

from crashkit import KILLED, ForkServer  # noqa: E402
from runkit import (  # noqa: E402
    Reference,
    assert_same_run,
    assert_store_sound,
    one_line_error,
    record,
    shared_reference,
    shared_server,
    train_settings,
)

from conftest import new_store  # noqa: E402
from ocrkit.core.config import load_config  # noqa: E402
from ocrkit.core.data.cached import TensorLayer  # noqa: E402
from ocrkit.core.data.dataset import TrainDataset  # noqa: E402
from ocrkit.core.data.formats import load_dataset  # noqa: E402
from ocrkit.core.data.store_commands import validate  # noqa: E402
from ocrkit.core.store.store import Store  # noqa: E402


@pytest.fixture(scope="module")
def server() -> ForkServer:
    return shared_server()


@pytest.fixture(scope="module")
def reference(server: ForkServer, synth: Path, tmp_path_factory) -> Reference:
    return shared_reference(server, synth, tmp_path_factory.mktemp("reference"))


# ---------------------------------------------------------------- in process: every value checked

CFG = load_config(overrides=["data.train_size=[64,64]", "data.eval_size=[128,160]"])
PLAIN = load_config(overrides=["data.train_size=[64,64]", "data.eval_size=[128,160]", "data.augment.enabled=false"])


def read_everything(synth: Path, store: Store | None) -> list[dict[str, np.ndarray]]:
    """Every training item (augmented: image entries; plain: image and maps entries) and every
    eval input (tensor entries) of ``synth``, read through ``store``."""
    train = load_dataset(str(synth / "train")).samples
    items = []
    for cfg in (CFG, PLAIN):
        dataset = TrainDataset(train, cfg.data, cfg.maps, seed=3, store=store)
        dataset.set_epoch(1)
        items += [{k: v.numpy() for k, v in dataset[i].items()} for i in range(len(dataset))]
    tensors = TensorLayer(store, CFG.data)
    for sample in load_dataset(str(synth / "val")).samples:
        content, transform = tensors.prepare(sample.image_path)
        items.append({"content": np.array(content), "size": np.array(transform.content_size)})
    return items


def assert_same_values(got: list[dict[str, np.ndarray]], want: list[dict[str, np.ndarray]]) -> None:
    assert len(got) == len(want)
    for a, b in zip(got, want, strict=True):
        assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in b)


@pytest.fixture(scope="module")
def truth(synth: Path) -> list[dict[str, np.ndarray]]:
    return read_everything(synth, None)


def filled_store(synth: Path, root: Path) -> Store:
    store = new_store(root)
    read_everything(synth, store)
    assert len(store.keys()) == 8 + 8 + 4  # images, maps, eval tensors
    return store


def events(store: Store) -> dict[str, int]:
    """The store's counters, summed over the kinds."""
    totals: dict[str, int] = {}
    for counts in store.read_stats().values():
        for event, n in counts.items():
            totals[event] = totals.get(event, 0) + n
    return totals


def value_files(root: Path) -> list[Path]:
    return sorted((root / "entries").rglob("*.val"))


def _damage_value_files(root: Path, how: str) -> None:
    for index, path in enumerate(value_files(root)):
        if index % 3:  # a third of the entries
            continue
        data = path.read_bytes()
        if how == "delete":
            path.unlink()
        elif how == "truncate":
            path.write_bytes(data[: len(data) // 2])
        elif how == "zero":
            path.write_bytes(b"")
        elif how == "bitflip":
            path.write_bytes(data[:-1] + bytes([data[-1] ^ 0x01]))


@pytest.mark.parametrize("how", ["truncate", "zero", "bitflip", "delete"])
def test_damaged_value_files_are_recomputed_never_served(synth, truth, tmp_path, how):
    filled_store(synth, tmp_path / "store").close()  # 20 misses, 8 hits (the plain pass's images)
    _damage_value_files(tmp_path / "store", how)
    report = validate(new_store(tmp_path / "store"), None, fix=False, progress=False)
    assert len(report.corrupt) == 7 and report.bad == 7  # every third of 20 entries; a lost file too
    store = new_store(tmp_path / "store")
    assert_same_values(read_everything(synth, store), truth)
    counts = events(store)
    assert (counts["corrupt"], counts["misses"]) == ((0, 20 + 7) if how == "delete" else (7, 20))
    assert_same_values(read_everything(synth, store), truth)  # recomputed and stored again: all hits
    assert events(store)["hits"] - counts["hits"] == 28
    assert validate(store, None, fix=False, progress=False).bad == 0
    assert len(value_files(tmp_path / "store")) == 20


def _overwrite_header(db: Path) -> None:
    data = bytearray(db.read_bytes())
    data[:100] = b"\xab" * 100
    db.write_bytes(bytes(data))


@pytest.mark.parametrize("index", ["entries", "stats"])
def test_an_unreadable_index_is_rebuilt_empty_with_a_warning(synth, truth, tmp_path, index):
    filled_store(synth, tmp_path / "store").close()
    _overwrite_header(tmp_path / "store" / index / "cache.db")
    store = new_store(tmp_path / "store")
    with pytest.warns(UserWarning, match=rf"store index at .*{index} was damaged \(file is not a database\): rebuilt"):
        assert_same_values(read_everything(synth, store), truth)
        store.read_stats()
    assert len(store.keys()) == 20  # stored again (entries) or untouched (stats)
    assert not list((tmp_path / "store").glob("*.damaged-*"))
    assert validate(store, None, fix=False, progress=False).bad == 0


def test_an_index_damaged_in_use_stops_the_store_in_one_line_and_clear_rebuilds_it(synth, truth, tmp_path, monkeypatch):
    import diskcache

    from ocrkit.core.data.store_commands import clear

    filled_store(synth, tmp_path / "store").close()

    def malformed(*args, **kwargs):
        raise sqlite3.DatabaseError("database disk image is malformed")

    monkeypatch.setattr(diskcache.Cache, "get", malformed)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert_same_values(read_everything(synth, new_store(tmp_path / "store")), truth)
    said = [str(w.message) for w in caught]
    assert said and all("damaged (database disk image is malformed)" in m for m in said)
    assert all("`ocrkit cache clear --all` rebuilds it" in m and "\n" not in m for m in said)
    assert len(said) == 1  # once, not once per layer or read

    monkeypatch.setattr(diskcache.Cache, "clear", malformed)
    store = new_store(tmp_path / "store")
    with pytest.warns(UserWarning, match="rebuilt empty"):
        assert clear(store, everything=True, stale=False, kind=None) == -1  # count unknown: rebuilt
    monkeypatch.undo()
    assert store.keys() == [] and value_files(tmp_path / "store") == []
    assert_same_values(read_everything(synth, store), truth)
    assert len(store.keys()) == 20


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EROFS])
def test_failing_writes_are_said_once_counted_and_leave_nothing_half_written(synth, truth, tmp_path, monkeypatch, code):
    from ocrkit.core.store import store as store_module

    original = store_module._EntryDisk._write

    def fails_after_a_piece(self, full_path, iterator, mode, encoding=None):
        def pieces():
            yield next(iter(iterator))
            raise OSError(code, os.strerror(code))

        return original(self, full_path, pieces(), mode, encoding)

    monkeypatch.setattr(store_module._EntryDisk, "_write", fails_after_a_piece)
    store = new_store(tmp_path / "store")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert_same_values(read_everything(synth, store), truth)
    said = [str(w.message) for w in caught]
    assert len(said) == 1 and os.strerror(code) in said[0] and "cache.enabled=false" in said[0]
    assert events(store)["failed_writes"] == 28  # images twice (no hit), maps, eval tensors
    assert value_files(tmp_path / "store") == [] and store.keys() == []


def test_a_store_too_small_for_the_data_only_costs_recomputation(synth, truth, tmp_path):
    store = new_store(tmp_path / "store", limit=20_000)  # about two of the 20 entries
    for _ in range(2):
        assert_same_values(read_everything(synth, store), truth)
    assert len(store.keys()) < 20  # evicted as written (diskcache culls after the write that passes the limit)
    assert events(store)["hits"] < 56  # and so recomputed: of 2 x 28 lookups, few hit
    assert validate(store, None, fix=False, progress=False).bad == 0


# ---------------------------------------------------------------- commands (fork server)


def precompute_args(synth: Path, cache: Path, workers: int) -> list[str]:
    sets = ["--set", f"cache.dir={cache}", "--set", "data.train_size=[64,64]"]
    return ["maps", "precompute", "--data", str(synth / "train"), "--workers", str(workers), *sets]


def validate_json(server: ForkServer, cache: Path, root: Path, *flags: str) -> tuple[int, dict]:
    args = ["cache", "validate", "--json", *flags, "--set", f"cache.dir={cache}", "--set", "data.train_size=[64,64]"]
    code = server.run(args, root / "validate.log", out=root / "validate.json")
    return code, json.loads((root / "validate.json").read_text())


@pytest.mark.parametrize(("variant", "workers"), [("torn", 2), ("unrecorded", 0)])
def test_killed_precompute_is_finished_by_rerunning_and_validates_clean(server, synth, tmp_path, variant, workers):
    cache = tmp_path / "cache"
    kill = {"phase": "store", "nth": 3, "variant": variant}
    assert server.run(precompute_args(synth, cache, workers), tmp_path / "a.log", kill=kill) == KILLED
    assert server.run(precompute_args(synth, cache, workers), tmp_path / "b.log") == 0
    counts = next(line for line in (tmp_path / "b.log").read_text().splitlines() if line.startswith("maps for"))
    assert counts.startswith("maps for 8 samples:") and "0 failed writes, 0 errors" in counts
    computed, present = (int(counts.split(": ")[1].split()[i]) for i in (0, 2))
    assert computed + present == 8 and present >= 2  # the entries recorded before the kill were kept
    code, report = validate_json(server, cache, tmp_path, "--full")
    assert code == 0 and report["corrupt"] == [] and report["bad"] == 0 and report["checked"] == 8
    for path in (cache / "store" / "entries").rglob("*.val"):  # as if an hour had passed
        os.utime(path, (time.time() - 3600, time.time() - 3600))
    code, report = validate_json(server, cache, tmp_path, "--full", "--fix")
    assert code == 0 and report["orphans"] >= 1 and report["orphans_deleted"] == report["orphans"]
    code, report = validate_json(server, cache, tmp_path, "--full")
    assert code == 0 and report["orphans"] == 0 and report["ok"] == 8


def test_two_trainings_share_one_store_at_once(server, synth, reference, tmp_path):
    cache, runs = tmp_path / "cache", tmp_path / "runs"
    args = [train_settings(synth, cache, runs, w) + ["--name", f"run{w}"] for w in (0, 1)]
    pids = [server.start(args[w], tmp_path / f"{w}.log") for w in (0, 1)]
    assert [server.wait(pid) for pid in pids] == [0, 0], [(tmp_path / f"{w}.log").read_text()[-2000:] for w in (0, 1)]
    for workers in (0, 1):
        assert "Traceback" not in (tmp_path / f"{workers}.log").read_text()
        assert_same_run(record(runs / "train" / f"run{workers}"), reference.run)
    assert_store_sound(cache)


def _train(server: ForkServer, synth: Path, root: Path, *extra: str, kill=None, name="exp") -> tuple[Path, str]:
    args = train_settings(synth, root / "cache", root / "runs", 1, *extra) + ["--name", name]
    code = server.run(args, root / f"{name}.log", kill=kill)
    text = (root / f"{name}.log").read_text()
    assert code == 0 and "Traceback" not in text, text[-3000:]
    return root / "runs" / "train" / name, text


def _warnings(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("warning:")]


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EROFS])
def test_training_on_a_full_or_read_only_store_trains_the_same(server, synth, reference, tmp_path, code):
    run_dir, text = _train(server, synth, tmp_path, kill={"phase": "fail-writes", "errno": code})
    assert_same_run(record(run_dir), reference.run)
    said = [line for line in _warnings(text) if "could not write to the store" in line]
    assert 1 <= len(said) <= 2 and all(os.strerror(code) in line for line in said)  # once per process writing
    assert not list((tmp_path / "cache" / "store" / "entries").rglob("*.val"))


def test_training_with_a_store_that_cannot_be_opened_trains_the_same(server, synth, reference, tmp_path):
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / "store").write_text("a file where the store's directory should be\n")
    run_dir, text = _train(server, synth, tmp_path)
    assert_same_run(record(run_dir), reference.run, without=("cache/",))  # no hit rates without a store
    said = _warnings(text)
    assert said and all("cannot open the store" in line or "no store hit rates" in line for line in said)
    assert len(said) <= 3  # the worker of epoch 1, the main process, the hit rates: not once an epoch
    assert any("--set cache.enabled=false" in line for line in said)
    code = server.run(["cache", "status", "--set", f"cache.dir={tmp_path / 'cache'}"], tmp_path / "status.log")
    assert code == 2
    one_line_error(tmp_path / "status.log", "cannot open the store")


def test_training_with_a_tiny_size_limit_trains_the_same(server, synth, reference, tmp_path):
    run_dir, text = _train(server, synth, tmp_path, "cache.size_limit_gb=0.00002")  # 20 kB
    assert_same_run(record(run_dir), reference.run)
    assert any("size_limit_gb" in line for line in _warnings(text))


def test_training_after_the_index_was_damaged_rebuilds_it_and_trains_the_same(server, synth, reference, tmp_path):
    _train(server, synth, tmp_path, name="first")
    _overwrite_header(tmp_path / "cache" / "store" / "entries" / "cache.db")
    run_dir, text = _train(server, synth, tmp_path, name="second")
    assert_same_run(record(run_dir), reference.run)
    said = [line for line in _warnings(text) if "was damaged" in line]
    assert len(said) == 1 and "rebuilt empty" in said[0]
    assert_store_sound(tmp_path / "cache")

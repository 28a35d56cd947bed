"""The store: keys that miss whenever the source changes, corruption regenerated, concurrent readers
and a writer, statistics across processes."""

from __future__ import annotations

import multiprocessing as mp
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import new_store, write_image
from ocrkit.core.config import DataConfig, MapsConfig
from ocrkit.core.data.cached import ImageLayer, TensorLayer
from ocrkit.core.data.formats import load_dataset
from ocrkit.core.data.image import eval_content, load_image
from ocrkit.core.store.codec import decode, encode
from ocrkit.core.store.store import Store

# ---------------------------------------------------------------- keys change with every input


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    return write_image(tmp_path_factory.mktemp("src") / "a.png", seed=1)


def test_an_edited_source_file_misses_even_with_the_same_size_and_mtime(tmp_path):
    store = new_store(tmp_path / "store")
    path = write_image(tmp_path / "img.png", seed=5)
    layer = ImageLayer(store)
    before = layer.load(path)
    stat = path.stat()
    image = cv2.imread(str(path))
    image[0, 0] = 255 - image[0, 0]  # one pixel: same dimensions
    assert cv2.imwrite(str(path), image)
    if path.stat().st_size == stat.st_size:
        import os

        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # and the old mtime
    after = layer.load(path)
    assert not np.array_equal(before, after)
    assert np.array_equal(after, cv2.cvtColor(image, cv2.COLOR_BGR2RGB))
    assert store.read_stats()["image"] == {**store.read_stats()["image"], "hits": 0, "misses": 2}


def test_a_new_kind_version_misses(tmp_path, monkeypatch, source):
    store = new_store(tmp_path / "store")
    ImageLayer(store).load(source)
    ImageLayer(store).load(source)
    store.kinds["image"] = 99
    ImageLayer(store).load(source)
    assert store.read_stats()["image"]["hits"] == 1 and store.read_stats()["image"]["misses"] == 2


# ---------------------------------------------------------------- corruption


def _entry_files(store: Store) -> list[Path]:
    return [p for p in (store.root / "entries").rglob("*.val")]


@pytest.mark.parametrize("damage", ["truncate", "flip", "wrong_shape"])
def test_a_corrupted_entry_is_regenerated_transparently(tmp_path, source, damage):
    store = new_store(tmp_path / "store")
    layer = TensorLayer(store, DataConfig(eval_size=(96, 128)))
    good, _ = layer.prepare(source)
    good = np.array(good)
    [file] = _entry_files(store)
    blob = bytearray(file.read_bytes())
    if damage == "truncate":
        blob = blob[: len(blob) // 2]
    elif damage == "flip":
        blob[len(blob) - 100] ^= 0xFF
    else:  # a well-formed entry whose array does not have the shape it claims: re-encode with a lie
        header, arrays = decode(bytes(blob))
        blob = bytearray(encode({**header}, {"content": arrays["content"].reshape(-1)}))
    file.write_bytes(bytes(blob))
    again, _ = TensorLayer(store, DataConfig(eval_size=(96, 128))).prepare(source)
    assert np.array_equal(again, good)
    stats = store.read_stats()["tensor"]
    if damage == "wrong_shape":
        # the checksum is right, the fields are right: the shape check in the layer catches it
        assert stats["corrupt"] == 1, stats
    else:
        assert stats["corrupt"] == 1 and stats["hits"] == 0, stats
    third, _ = TensorLayer(store, DataConfig(eval_size=(96, 128))).prepare(source)
    assert np.array_equal(third, good) and store.read_stats()["tensor"]["hits"] == 1


# ---------------------------------------------------------------- concurrency and statistics


def _reader(root: str, paths: list[str], rounds: int, queue) -> None:
    store = new_store(Path(root), flush_every=8, write_behind=True)  # the writer thread drains at exit
    images, tensors = ImageLayer(store), TensorLayer(store, DataConfig(eval_size=(96, 128)))
    wrong = 0
    for _ in range(rounds):
        for path in paths:
            wrong += not np.array_equal(images.load(path), load_image(path))
            content, transform = tensors.prepare(path)
            fresh, fresh_transform = eval_content(path, DataConfig(eval_size=(96, 128)))
            wrong += not (np.array_equal(content, fresh.transpose(2, 0, 1)) and transform == fresh_transform)
        store.drain()  # this round's writes land before the next: later rounds can only hit
    queue.put(wrong)  # statistics are flushed when the process exits


def _writer(root: str, data: str, queue) -> None:
    from ocrkit.core.data.precompute import precompute_maps

    store = new_store(Path(root), flush_every=8)
    samples = load_dataset(data).samples
    report = precompute_maps(samples, DataConfig(train_size=(64, 64)), MapsConfig(), store, workers=0, progress=False)
    queue.put(report.failed_writes + len(report.errors) + (report.computed + report.present != len(samples)))


@pytest.fixture
def small_set(tmp_path) -> Path:
    from ocrkit.core.data.synth import generate_synthetic

    generate_synthetic(tmp_path / "synth", n_train=8, n_val=2, size=(96, 128), seed=0, progress=False)
    return tmp_path / "synth"


def test_two_readers_and_a_precompute_writer_hammer_the_store_without_error_or_wrong_value(tmp_path, small_set):
    root = tmp_path / "store"
    paths = sorted(str(p) for p in (small_set / "train" / "images").iterdir())
    context = mp.get_context("fork")
    queue = context.Queue()
    procs = [context.Process(target=_reader, args=(str(root), paths, 3, queue)) for _ in range(2)]
    procs.append(context.Process(target=_writer, args=(str(root), str(small_set / "train"), queue)))
    for p in procs:
        p.start()
    results = [queue.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    assert results == [0, 0, 0]  # no wrong value anywhere, no failed write, every map in place
    stats = new_store(root).read_stats()
    # the counters of three processes add up: 2 readers x 3 rounds x 8 images per layer
    for kind in ("image", "tensor"):
        assert stats[kind]["hits"] + stats[kind]["misses"] == 48, stats[kind]
        assert 8 <= stats[kind]["misses"] <= 16 and stats[kind]["failed_writes"] == 0  # both may miss at first
    assert len([k for k in new_store(root).keys() if k.startswith("maps/")]) == 8


def _same_keys_writer(root: str, start, queue) -> None:
    store = new_store(Path(root))
    start.wait(timeout=60)
    ok = [
        store.write("image", "cfg", {"n": n}, {"image": np.full((64, 64, 3), n, dtype=np.uint8)}, sync=True)
        for n in range(24)
    ]
    queue.put(sum(ok))


def test_processes_writing_the_same_keys_at_once_leave_one_entry_and_one_file_each(tmp_path):
    """One writer per key: the ranks of a distributed run (or loader workers) that miss the same
    key together all write, the first commits and the others' files are removed."""
    root = tmp_path / "store"
    context = mp.get_context("fork")
    start, queue = context.Event(), context.Queue()
    procs = [context.Process(target=_same_keys_writer, args=(str(root), start, queue)) for _ in range(3)]
    for p in procs:
        p.start()
    start.set()
    assert [queue.get(timeout=120) for _ in procs] == [24, 24, 24]  # a lost race is not a failed write
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    store = new_store(root)
    assert len(store.keys()) == 24
    for n in range(24):
        _, arrays = store.lookup("image", {"n": n})
        assert int(arrays["image"][0, 0, 0]) == n
    value_files = [p for p in (root / "entries").rglob("*.val")]
    assert len(value_files) == 24 and store.orphan_files(min_age_s=0) == []
    assert store.read_stats()["image"]["failed_writes"] == 0


def test_the_first_write_of_a_key_stays_later_writers_do_not_replace_it(tmp_path):
    store = new_store(tmp_path / "store")
    first = {"image": np.full((8, 8, 3), 1, dtype=np.uint8)}
    second = {"image": np.full((8, 8, 3), 2, dtype=np.uint8)}
    assert store.write("image", "cfg", {"n": 0}, first, sync=True)
    assert store.write("image", "cfg", {"n": 0}, second, sync=True)  # not a failure: the key is stored
    _, arrays = store.lookup("image", {"n": 0})
    assert int(arrays["image"][0, 0, 0]) == 1
    assert len(list((tmp_path / "store" / "entries").rglob("*.val"))) == 1

"""The store: entry format, keys that miss whenever an input changes, corruption, concurrency,
statistics across processes, and the data paths that read through it."""

from __future__ import annotations

import multiprocessing as mp
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import random_quad
from ocrkit.core.config import DataConfig, MapsConfig
from ocrkit.core.data.cached import ImageLayer, MapsLayer, TensorLayer, produce_maps
from ocrkit.core.data.dataset import TrainDataset, build_train_loader
from ocrkit.core.data.formats import load_dataset
from ocrkit.core.data.image import eval_content, load_image
from ocrkit.core.data.kinds import KIND_VERSIONS
from ocrkit.core.data.sample import Sample
from ocrkit.core.engine.inference import prepared_batches
from ocrkit.core.store.codec import CorruptEntry, decode, encode
from ocrkit.core.store.store import Store


def new_store(root: Path, **kw) -> Store:
    """Synchronous writes unless asked: a read right after a write sees it."""
    return Store(
        root,
        size_limit_bytes=kw.pop("limit", 10**9),
        kinds=kw.pop("kinds", KIND_VERSIONS),
        flush_every=kw.pop("flush_every", 1),
        write_behind=kw.pop("write_behind", False),
        **kw,
    )


def write_image(path: Path, seed: int, size=(96, 128)) -> Path:
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), rng.integers(0, 255, (*size, 3), dtype=np.uint8))
    return path


# ---------------------------------------------------------------- codec


def test_codec_round_trips_exactly_and_packs_masks_to_bits():
    rng = np.random.default_rng(0)
    arrays = {
        "thresh": rng.random((64, 80), dtype=np.float32),
        "mask": (rng.random((64, 80)) > 0.5).astype(np.float32),
        "image": rng.integers(0, 255, (5, 7, 3), dtype=np.uint8),
    }
    blob = encode({"kind": "x"}, arrays, bit_arrays=("mask",))
    header, back = decode(blob)
    assert header == {"kind": "x"}
    for name, array in arrays.items():
        assert back[name].dtype == array.dtype and np.array_equal(back[name], array)
    assert len(blob) < arrays["thresh"].nbytes + arrays["image"].nbytes + 64 * 80 // 8 + 1000  # mask: 1 bit a value
    # declared binary but not 0/1: stored raw, still exact
    _, kept = decode(encode({}, {"m": arrays["thresh"]}, bit_arrays=("m",)))
    assert np.array_equal(kept["m"], arrays["thresh"])


@pytest.mark.parametrize("damage", ["truncate", "flip_body", "flip_header", "empty", "foreign"])
def test_codec_rejects_damaged_bytes(damage):
    blob = bytearray(encode({"kind": "x"}, {"a": np.arange(100, dtype=np.float32)}))
    if damage == "truncate":
        blob = blob[:-7]
    elif damage == "flip_body":
        blob[-5] ^= 0x10
    elif damage == "flip_header":
        blob[20] ^= 0x01
    elif damage == "empty":
        blob = bytearray()
    else:
        blob = bytearray(b"PNG\x00" + bytes(100))
    with pytest.raises(CorruptEntry):
        decode(bytes(blob))


# ---------------------------------------------------------------- keys change with every input


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    return write_image(tmp_path_factory.mktemp("src") / "a.png", seed=1)


DATA_FIELDS = {
    "eval_size": st.sampled_from([(64, 64), (96, 128), (128, 96)]),
    "keep_ratio": st.booleans(),
    "pad_multiple": st.sampled_from([1, 8, 32]),
    "mean": st.sampled_from([(0.485, 0.456, 0.406), (0.5, 0.5, 0.5)]),
    "std": st.sampled_from([(0.229, 0.224, 0.225), (0.25, 0.25, 0.25)]),
}


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(first=st.fixed_dictionaries(DATA_FIELDS), second=st.fixed_dictionaries(DATA_FIELDS))
def test_eval_tensors_never_serve_a_value_made_under_other_settings(tmp_path_factory, source, first, second):
    store = new_store(tmp_path_factory.mktemp("store"))
    for fields in (first, second, first):  # the third read may hit, and must equal a fresh computation
        cfg = DataConfig(**fields)
        content, transform = TensorLayer(store, cfg).prepare(source)
        fresh, fresh_transform = eval_content(source, cfg)
        assert np.array_equal(content, fresh.transpose(2, 0, 1)) and transform == fresh_transform
        # what the model receives (normalised on read with this setting's mean and std)
        [stored_batch] = prepared_batches([source], TensorLayer(store, cfg), 1)
        [fresh_batch] = prepared_batches([source], TensorLayer(None, cfg), 1)
        assert torch.equal(stored_batch.images, fresh_batch.images)
    resize = ("eval_size", "keep_ratio", "pad_multiple")  # mean and std are applied on read, not stored
    same_entry = all(first[k] == second[k] for k in resize)
    stats = store.read_stats()["tensor"]
    assert stats["stale"] == 0 and stats["misses"] == (1 if same_entry else 2)


MAPS_FIELDS = {
    "shrink_ratio": st.sampled_from([0.3, 0.4]),
    "thresh_min": st.sampled_from([0.2, 0.3]),
    "thresh_max": st.sampled_from([0.7, 0.8]),
    "min_text_size": st.sampled_from([4.0, 8.0]),
}


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    maps_a=st.fixed_dictionaries(MAPS_FIELDS),
    maps_b=st.fixed_dictionaries(MAPS_FIELDS),
    size_b=st.sampled_from([(64, 64), (96, 96)]),
    shift=st.sampled_from([0.0, 0.5]),
)
def test_maps_never_serve_a_value_made_from_other_settings_or_annotations(
    tmp_path_factory, source, maps_a, maps_b, size_b, shift
):
    store = new_store(tmp_path_factory.mktemp("store"))
    rng = np.random.default_rng(3)
    polygons = [random_quad(rng, 96, 128, 20, 60) for _ in range(3)]
    cases = [
        (DataConfig(train_size=(64, 64)), MapsConfig(**maps_a), polygons),
        (DataConfig(train_size=size_b), MapsConfig(**maps_b), [p + shift for p in polygons]),
    ]
    images = ImageLayer(store)
    for data_cfg, maps_cfg, polys in cases + cases[:1]:
        sample = Sample(source, polys, [False, False, True])
        image, maps = MapsLayer(store, data_cfg, maps_cfg).sample(sample, images)
        fresh_image, fresh = produce_maps(images.load(source), polys, sample.ignore, data_cfg.train_size, maps_cfg)
        assert np.array_equal(image, fresh_image)
        for key, value in fresh.items():
            assert np.array_equal(maps[key], value), key  # exact: masks as bits, threshold as float32
    assert store.read_stats()["maps"]["stale"] == 0


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


@pytest.mark.parametrize("augment", [True, False])
def test_a_dataset_reads_the_same_items_through_the_store_and_its_workers_counts_add_up(tmp_path, small_set, augment):
    samples = load_dataset(small_set / "train").samples
    data_cfg = DataConfig(train_size=(64, 64), augment={"enabled": augment})
    plain = TrainDataset(samples, data_cfg, MapsConfig(), seed=3)
    # write-behind, and counts reach the store only when each worker exits
    store = new_store(tmp_path / "store", flush_every=1000, write_behind=True)
    stored = TrainDataset(samples, data_cfg, MapsConfig(), seed=3, store=store)
    assert (stored.stored_maps is not None) == (not augment)
    for epoch in range(2):  # cold, then warm
        loader = build_train_loader(stored, batch_size=4, num_workers=2, seed=3, epoch=epoch)
        batches = list(loader)
        del loader
        reference = list(build_train_loader(plain, batch_size=4, num_workers=0, seed=3, epoch=epoch))
        for got, want in zip(batches, reference, strict=True):
            for key in want:
                assert torch.equal(got[key], want[key]), (epoch, key)
    stats = store.read_stats()
    assert stats["image"]["misses"] == 8 and stats["image"]["hits"] == 8
    assert stats["maps"]["misses"] + stats["maps"]["hits"] == (0 if augment else 16)


def test_ram_preload_stops_at_its_cap_and_serves_the_same_pixels(tmp_path, small_set):
    from ocrkit.core.data.preload import preload_images

    samples = load_dataset(small_set / "train").samples
    one = 96 * 128 * 3
    preload = preload_images(samples, ImageLayer(None), cap_bytes=3 * one + 10)
    assert preload.loaded == 3 and preload.bytes_used == 3 * one and preload.total == 8
    assert "3/8 images fit" in preload.describe()
    layer = ImageLayer(None, preload.images)
    for sample in samples:
        assert np.array_equal(layer.load(sample.image_path), load_image(sample.image_path))

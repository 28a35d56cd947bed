"""The up-front store-size estimate (estimate_store_bytes): hand-computed bytes for images of known
sizes, the probe of image headers, and agreement with what the data layers really write.

The estimate decides whether training warns that its data "will not fit" in the store: an eval
tensor counted as float32 (4x its uint8 size) once fired that warning spuriously."""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path

import cv2
import numpy as np

from conftest import new_store, random_quad
from ocrkit.core.config import DataConfig, MapsConfig
from ocrkit.core.data import store_size
from ocrkit.core.data.cached import ImageLayer, MapsLayer, TensorLayer
from ocrkit.core.data.sample import Sample
from ocrkit.core.data.store_size import estimate_store_bytes
from ocrkit.core.store.store import Store


def make_samples(folder: Path, sizes: list[tuple[int, int]]) -> list[Sample]:
    """One PNG per (height, width), two words on each (the maps need text to be non-trivial)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(len(sizes))
    samples = []
    for i, (h, w) in enumerate(sizes):
        path = folder / f"im{i}.png"
        cv2.imwrite(str(path), rng.integers(0, 255, (h, w, 3), dtype=np.uint8))
        samples.append(Sample(path, [random_quad(rng, h, w, 8, 40) for _ in range(2)], [False, True]))
    return samples


def stored_array_bytes(store: Store, kind: str) -> int:
    """The bytes of the arrays (as encoded: masks packed to bits) in every ``kind`` entry, read
    from each entry's header (MAGIC | checksum | header length | header JSON | body)."""
    total = 0
    for key in store.keys():
        if key.startswith(f"{kind}/"):
            blob = store.read_raw(key)
            assert blob is not None
            (head_len,) = struct.unpack_from("<I", blob, 12)
            header = json.loads(bytes(blob[16 : 16 + head_len]))
            total += sum(spec["nbytes"] for spec in header["arrays"])
    return total


def test_eval_tensors_are_counted_as_uint8_content_not_float32_or_padded(tmp_path):
    val = make_samples(tmp_path / "val", [(300, 200), (100, 400), (64, 64)])
    cfg = DataConfig(eval_size=(256, 256), keep_ratio=True, pad_multiple=32)
    # plan_resize into 256x256, aspect kept: 300x200 -> 256x171 (scale 256/300), 100x400 -> 64x256
    # (scale 0.64), 64x64 -> 256x256 (scale 4); each stored as uint8 RGB of that content size
    expected = 256 * 171 * 3 + 64 * 256 * 3 + 256 * 256 * 3
    assert expected == 377_088
    estimate = estimate_store_bytes([], val, cfg, stored_maps=False)
    assert estimate == expected
    assert estimate != 4 * expected  # float32 tensors: the old, 4x estimate
    padded = 256 * 192 * 3 + 64 * 256 * 3 + 256 * 256 * 3  # 171 padded to 192: padding is not stored
    assert estimate != padded
    stretched = DataConfig(eval_size=(256, 256), keep_ratio=False)
    assert estimate_store_bytes([], val, stretched, stored_maps=False) == 3 * 256 * 256 * 3


def test_train_images_are_counted_as_decoded_rgb_at_their_own_size(tmp_path):
    train = make_samples(tmp_path / "train", [(120, 160), (120, 160), (50, 70)])
    cfg = DataConfig(train_size=(64, 64), eval_size=(256, 256))
    assert estimate_store_bytes(train, [], cfg, stored_maps=False) == 2 * 120 * 160 * 3 + 50 * 70 * 3
    assert estimate_store_bytes([], [], cfg, stored_maps=True) == 0


def test_only_a_probe_of_image_headers_is_read_and_scaled_up(tmp_path, monkeypatch):
    train = make_samples(tmp_path / "train", [(40, 50)] * 10)
    val = make_samples(tmp_path / "val", [(64, 128)] * 5)
    read = []
    real_size = store_size.image_size
    monkeypatch.setattr(store_size, "image_size", lambda path: read.append(path) or real_size(path))
    cfg = DataConfig(eval_size=(128, 128), keep_ratio=True)
    estimate = estimate_store_bytes(train, val, cfg, stored_maps=False, probe=3)
    assert len(read) == 3 + 3
    assert estimate == 10 * 40 * 50 * 3 + 5 * 64 * 128 * 3  # every image the same size: exact
    assert estimate_store_bytes(train, val, cfg, stored_maps=False, probe=3) == estimate  # the same probe


def test_the_estimate_matches_what_the_image_and_tensor_layers_write(tmp_path):
    train = make_samples(tmp_path / "train", [(120, 160), (97, 61), (200, 150)])
    val = make_samples(tmp_path / "val", [(300, 200), (100, 400)])
    cfg = DataConfig(train_size=(64, 64), eval_size=(128, 160), keep_ratio=True)
    store = new_store(tmp_path / "store")
    for sample in train:
        ImageLayer(store).load(sample.image_path)
    for sample in val:
        TensorLayer(store, cfg).prepare(sample.image_path)
    written = stored_array_bytes(store, "image") + stored_array_bytes(store, "tensor")
    assert estimate_store_bytes(train, val, cfg, stored_maps=False) == written


def test_stored_maps_add_a_float32_threshold_and_three_bit_packed_masks_per_sample(tmp_path):
    train = make_samples(tmp_path / "train", [(120, 160), (90, 90)])
    cfg = DataConfig(train_size=(64, 96), eval_size=(128, 160))
    n = 64 * 96
    per_sample = n * 4 + 3 * math.ceil(n / 8)  # thresh as float32; shrink, shrink_mask, thresh_mask as bits
    images = 120 * 160 * 3 + 90 * 90 * 3
    store = new_store(tmp_path / "store")
    for sample in train:
        MapsLayer(store, cfg, MapsConfig()).sample(sample, ImageLayer(store))
    assert stored_array_bytes(store, "maps") == 2 * per_sample  # what the layer really writes
    assert estimate_store_bytes(train, [], cfg, stored_maps=True) == images + 2 * per_sample

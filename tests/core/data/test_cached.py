"""The cached data layers over the store: a stored value is never served for other settings or
annotations, and a dataset reads the same items through the store (and its workers' counts add up)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import new_store, random_quad, write_image
from ocrkit.core.config import DataConfig, MapsConfig
from ocrkit.core.data.cached import ImageLayer, MapsLayer, TensorLayer, produce_maps
from ocrkit.core.data.dataset import TrainDataset, build_train_loader
from ocrkit.core.data.formats import load_dataset
from ocrkit.core.data.image import eval_content
from ocrkit.core.data.sample import Sample
from ocrkit.core.engine.inference import prepared_batches


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


@pytest.fixture
def small_set(tmp_path) -> Path:
    from ocrkit.core.data.synth import generate_synthetic

    generate_synthetic(tmp_path / "synth", n_train=8, n_val=2, size=(96, 128), seed=0, progress=False)
    return tmp_path / "synth"


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

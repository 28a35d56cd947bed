"""RAM preload of training images: stops at its cap and serves the same pixels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ocrkit.core.data.cached import ImageLayer
from ocrkit.core.data.formats import load_dataset
from ocrkit.core.data.image import load_image


@pytest.fixture
def small_set(tmp_path) -> Path:
    from ocrkit.core.data.synth import generate_synthetic

    generate_synthetic(tmp_path / "synth", n_train=8, n_val=2, size=(96, 128), seed=0, progress=False)
    return tmp_path / "synth"


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

"""The lap timer behind bench data's breakdown: the stages of a sample add up to its whole."""

from __future__ import annotations

import time

import pytest

from conftest import data_cfg
from ocrkit.core.config import MapsConfig
from ocrkit.core.data.dataset import TrainDataset
from ocrkit.core.data.formats import load_icdar_dir
from ocrkit.core.data.stages import StageClock


def test_laps_add_up_to_the_whole():
    clock = StageClock()
    clock.start()
    for stage in ("a", "b", "a", "c"):
        time.sleep(0.002)
        clock.lap(stage)
    assert set(clock.seconds) == {"a", "b", "c"}
    assert sum(clock.seconds.values()) == pytest.approx(clock.whole, rel=1e-12)
    assert clock.seconds["a"] > clock.seconds["b"] > 0  # two laps against one


@pytest.mark.parametrize("pipeline", ["fused", "albumentations"])
def test_a_training_item_reports_every_stage(tiny_icdar, pipeline):
    samples = load_icdar_dir(tiny_icdar).samples
    dataset = TrainDataset(samples, data_cfg(pipeline=pipeline), MapsConfig(), seed=1)
    clock = StageClock()
    clock.start()
    for index in range(len(samples)):
        dataset.item(index, clock)
    assert list(clock.seconds) == ["read", "geometric", "photometric", "maps", "tensors"]
    assert all(seconds > 0 for seconds in clock.seconds.values())
    assert sum(clock.seconds.values()) == pytest.approx(clock.whole, rel=1e-12)

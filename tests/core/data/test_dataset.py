"""The training dataset, the epoch sampler, the train loader and its workers, batches on the device."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from conftest import STRONG_AUGMENT, data_cfg, make_icdar_dir, random_quad
from ocrkit.core.config import DataConfig, MapsConfig
from ocrkit.core.data.dataset import (
    MAP_KEYS,
    MAP_PLAN,
    EpochSampler,
    TrainDataset,
    batch_to_device,
    build_train_loader,
    collate_train,
    default_workers,
    pin_memory_for,
)
from ocrkit.core.data.formats import load_icdar_dir
from ocrkit.core.data.image import normalize
from ocrkit.core.geometry.maps import BINARY_MAP_KEYS

STRONG = STRONG_AUGMENT


# --- TrainDataset ---------------------------------------------------------------------------


@pytest.fixture
def dark_text(tmp_path: Path) -> list:
    """Non-square images, dark words on a light background, one don't-care region each."""
    rng = np.random.default_rng(11)
    images = {}
    for i, (h, w) in enumerate([(128, 160), (160, 128), (120, 200), (144, 144), (100, 160), (128, 128)]):
        image = np.full((h, w, 3), 210, np.uint8)
        words = [
            np.rint(random_quad(rng, h, w, 20, 60)).clip([3, 3], [w - 4, h - 4]).astype(np.float32) for _ in range(2)
        ]
        for word in words:
            cv2.fillPoly(image, [word.astype(np.int32)], (15, 15, 15))
        ignored = np.array([[2, 2], [30, 2], [30, 12], [2, 12]], np.float32)
        images[f"im{i}"] = (image, [*words, ignored], [False, False, True])
    return load_icdar_dir(make_icdar_dir(tmp_path / "dark", images)).samples


def pixels_0_255(tensor: torch.Tensor) -> np.ndarray:
    return tensor.numpy().astype(np.float32).mean(axis=0)


@pytest.mark.parametrize("enabled", [True, False])
def test_train_dataset_items_and_map_consistency(dark_text, enabled):
    cfg = DataConfig(train_size=(64, 96), augment=STRONG.model_copy(update={"enabled": enabled}))
    dataset = TrainDataset(dark_text, cfg, MapsConfig(), seed=3)
    assert len(dataset) == 6
    text_pixels = 0
    for index in range(len(dataset)):
        item = dataset[index]
        assert set(item) == {"image", "index", *MAP_KEYS}
        assert item["image"].shape == (3, 64, 96) and item["image"].dtype == torch.uint8
        for key in MAP_KEYS:
            dtype = torch.float32 if key == "thresh" else torch.uint8  # binary maps travel as uint8
            assert item[key].shape == (64, 96) and item[key].dtype == dtype, key
        shrink = item["shrink"].numpy() > 0
        gray = pixels_0_255(item["image"])
        text_pixels += shrink.sum()
        if shrink.any():
            assert (gray[shrink] < 110).mean() > 0.95, f"item {index}: shrink map off the dark text"
        assert item["thresh"].min() >= 0.3 - 1e-6 and item["thresh"].max() <= 0.7 + 1e-6
        assert ((item["thresh_mask"] > 0) | ~torch.from_numpy(shrink)).all()  # text is supervised
    assert text_pixels > 100


def test_train_dataset_is_a_function_of_seed_epoch_index(dark_text):
    dataset = TrainDataset(dark_text, data_cfg(train_size=(64, 96)), MapsConfig(), seed=5)
    dataset.set_epoch(2)
    first = dataset[1]
    dataset.set_epoch(3)
    other_epoch = dataset[1]
    dataset.set_epoch(2)
    np.random.seed(0), torch.manual_seed(0)
    again = dataset[1]
    twin = TrainDataset(dark_text, data_cfg(train_size=(64, 96)), MapsConfig(), seed=5)
    twin.set_epoch(2)
    for key in ("image", *MAP_KEYS):
        assert torch.equal(first[key], again[key]) and torch.equal(first[key], twin[1][key]), key
    assert not torch.equal(first["image"], other_epoch["image"])
    assert not torch.equal(dataset[1]["image"], dataset[2]["image"])


# --- EpochSampler ---------------------------------------------------------------------------


def test_epoch_sampler_permutation_deterministic_per_epoch():
    sampler = EpochSampler(23, seed=4)
    sampler.set_epoch(0)
    epoch0 = list(sampler)
    assert sorted(epoch0) == list(range(23)) and len(sampler) == 23
    assert list(sampler) == epoch0
    expected = torch.randperm(23, generator=torch.Generator().manual_seed(4)).tolist()
    assert epoch0 == expected
    sampler.set_epoch(1)
    assert list(sampler) != epoch0 and sorted(sampler) == list(range(23))
    twin = EpochSampler(23, seed=4)
    twin.set_epoch(1)
    assert list(twin) == list(sampler)
    assert list(EpochSampler(5, seed=0, shuffle=False)) == [0, 1, 2, 3, 4]


def test_epoch_sampler_skip_gives_the_remaining_tail():
    sampler = EpochSampler(17, seed=9)
    sampler.set_epoch(6)
    full = list(sampler)
    sampler.skip(10)
    assert list(sampler) == full[10:] and len(sampler) == 7
    sampler.set_epoch(7)  # a new epoch starts from its beginning
    assert len(list(sampler)) == 17


@pytest.mark.parametrize("n, world", [(20, 4), (23, 4), (3, 5)])
def test_epoch_sampler_rank_shares(n, world):
    shares = []
    for rank in range(world):
        sampler = EpochSampler(n, seed=1, rank=rank, world_size=world)
        sampler.set_epoch(2)
        shares.append(list(sampler))
    assert len({len(s) for s in shares}) == 1 and len(shares[0]) == -(-n // world)
    assert set().union(*shares) == set(range(n))
    flat = [i for s in shares for i in s]
    assert len(flat) - len(set(flat)) == len(shares[0]) * world - n  # only the padding repeats
    truncated = [list(EpochSampler(n, 1, rank=r, world_size=world, drop_last=True)) for r in range(world)]
    flat = [i for s in truncated for i in s]
    assert len(flat) == len(set(flat)) == (n // world) * world


# --- loader ---------------------------------------------------------------------------------


def batches(loader) -> list[dict[str, torch.Tensor]]:
    return [dict(batch) for batch in loader]


def test_train_loader_workers_match_single_process_and_resume(dark_text):
    cfg = data_cfg(train_size=(64, 64))
    dataset = TrainDataset(dark_text, cfg, MapsConfig(), seed=2)
    serial = batches(build_train_loader(dataset, batch_size=2, num_workers=0, seed=2, epoch=1))
    assert len(serial) == 3 and serial[0]["image"].shape == (2, 3, 64, 64)
    parallel = batches(build_train_loader(dataset, batch_size=2, num_workers=2, seed=2, epoch=1))
    resumed = batches(build_train_loader(dataset, batch_size=2, num_workers=0, seed=2, epoch=1, skip_batches=2))
    assert len(parallel) == 3 and len(resumed) == 1
    for got, want in zip(parallel + resumed, serial + serial[2:], strict=True):
        for key in ("image", *MAP_KEYS):
            assert torch.equal(got[key], want[key]), key
    sampler = EpochSampler(6, seed=2)
    sampler.set_epoch(1)
    first_index = next(iter(sampler))
    dataset.set_epoch(1)
    assert torch.equal(serial[0]["image"][0], dataset[first_index]["image"])
    other_epoch = batches(build_train_loader(dataset, batch_size=2, num_workers=0, seed=2, epoch=2))
    assert not torch.equal(other_epoch[0]["image"], serial[0]["image"])


def test_workers_do_not_deadlock_after_the_parent_used_opencv(tmp_path):
    """Regression: a worker forked after the parent used OpenCV hung forever on its thread pool."""
    import subprocess
    import sys
    import textwrap

    script = textwrap.dedent(
        f"""
        import numpy as np
        from ocrkit.core.config import DataConfig, MapsConfig
        from ocrkit.core.data.dataset import TrainDataset, build_train_loader
        from ocrkit.core.data.synth import generate_synthetic
        generate_synthetic({str(tmp_path)!r}, 4, 0, size=(160, 160), seed=1, progress=False)
        from ocrkit.core.data.formats import load_dataset
        samples = load_dataset({str(tmp_path / "train")!r}).samples
        dataset = TrainDataset(samples, DataConfig(train_size=(96, 96)), MapsConfig(), seed=0)
        dataset[0]  # the parent uses OpenCV before forking workers
        batches = list(build_train_loader(dataset, 2, 1, seed=0, epoch=0))
        print("batches", len(batches))
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "batches 2" in done.stdout


def test_batch_to_device_gives_the_model_what_the_numpy_path_gave(dark_text):
    """uint8 through the loader, float32 on the device: bit-identical to ``normalize``, and every
    map float32 with the same values."""
    cfg = DataConfig(train_size=(64, 96), augment=STRONG)
    dataset = TrainDataset(dark_text, cfg, MapsConfig(), seed=3)
    batch = torch.utils.data.default_collate([dataset[i] for i in range(3)])
    on_device = batch_to_device(batch, torch.device("cpu"), cfg)
    for i in range(3):
        hwc = batch["image"][i].permute(1, 2, 0).numpy().copy()
        assert torch.equal(on_device["image"][i], torch.from_numpy(normalize(hwc, cfg.mean, cfg.std)))
    for key in MAP_KEYS:
        assert on_device[key].dtype == torch.float32
        assert torch.equal(on_device[key], batch[key].float())
    assert set(on_device["shrink"].unique().tolist()) <= {0.0, 1.0}


def test_default_workers_leave_a_core_for_the_model():
    assert [default_workers(n) for n in (1, 2, 4, 16, 64)] == [0, 1, 3, 8, 8]
    assert default_workers() >= 0  # this machine's affinity


def test_train_dataset_loads_the_map_kernels_before_workers_fork(tmp_path):
    """Workers are re-forked every epoch: the parent must hold the compiled kernels, or each worker
    loads them again (~260 ms an epoch per worker, measured)."""
    import subprocess
    import sys

    code = (
        "from ocrkit.core.config import DataConfig, MapsConfig\n"
        "from ocrkit.core.data.dataset import TrainDataset\n"
        "from ocrkit.core.geometry.border_kernel import draw_border_closeness, polygon_measures\n"
        "assert not draw_border_closeness.signatures\n"
        "TrainDataset([], DataConfig(), MapsConfig(), seed=0)\n"
        "print(len(draw_border_closeness.signatures), len(polygon_measures.signatures))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["1", "1"]


def test_pin_memory_only_for_a_cuda_model_unless_set():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert pin_memory_for(DataConfig(), cpu) is False and pin_memory_for(DataConfig(), cuda) is True
    assert pin_memory_for(DataConfig(pin_memory=False), cuda) is False
    assert pin_memory_for(DataConfig(pin_memory=True), cpu) is True


def test_the_dataset_leaves_the_maps_to_the_device_and_gets_the_same_maps(dark_text):
    """The same samples with label_maps loader and device: identical masks, threshold within
    1e-3, identical images; the items of the device variant carry their plan instead of maps."""
    loader_cfg = DataConfig(train_size=(64, 96))
    device_cfg = loader_cfg.model_copy(update={"label_maps": "device"})
    loader = TrainDataset(dark_text, loader_cfg, MapsConfig(), seed=4)
    device = TrainDataset(dark_text, device_cfg, MapsConfig(), seed=4)
    items = [device[i] for i in range(len(dark_text))]
    assert MAP_PLAN in items[0] and "shrink" not in items[0]
    on_device = batch_to_device(collate_train(items), torch.device("cpu"), device_cfg, MapsConfig())
    reference = batch_to_device(
        collate_train([loader[i] for i in range(len(dark_text))]), torch.device("cpu"), loader_cfg
    )
    assert set(on_device) == set(reference)
    assert torch.equal(on_device["image"], reference["image"])
    for key in BINARY_MAP_KEYS:
        assert torch.equal(on_device[key], reference[key]), key
    assert (on_device["thresh"] - reference["thresh"]).abs().max() <= 1e-3
    assert reference["shrink"].sum() > 0  # the samples have text to compare

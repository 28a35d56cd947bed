"""Photometric jitter on the device (data/jitter.py) against albumentations' ColorJitter, the
CPU reference: each operation where it is deterministic, and the distribution of whole jitters."""

from __future__ import annotations

import albumentations.augmentations.pixel.functional as fpixel
import numpy as np
import pytest
import torch

from ocrkit.core.config import AugmentConfig, DataConfig
from ocrkit.core.data.augment import FusedAugmenter, JitterParams, build_augmenter, draw_jitter, jitter_on_loader
from ocrkit.core.data.dataset import batch_to_device
from ocrkit.core.data.image import normalize
from ocrkit.core.data.jitter import jitter_batch

OPS = {0: "brightness", 1: "contrast", 2: "saturation", 3: "hue"}


def photo(seed: int, h: int = 24, w: int = 32) -> np.ndarray:
    """Smooth colour gradients plus noise: every hue and grey level occurs."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    base = np.stack([x * 255 / w, y * 255 / h, (x + y) * 127 / (h + w) + 60], axis=-1)
    return np.clip(base + rng.normal(0, 25, base.shape), 0, 255).astype(np.uint8)


def on_device(image: np.ndarray, factors, order, content=None) -> np.ndarray:
    """One sample through ``jitter_batch``: float HWC in [0, 255]."""
    batch = torch.from_numpy(image.transpose(2, 0, 1).copy())[None].float()
    content = content or image.shape[:2]
    out = jitter_batch(
        batch, torch.tensor([factors], dtype=torch.float32), torch.tensor([order]), torch.tensor([content])
    )
    return out[0].permute(1, 2, 0).numpy()


def identity_except(op_id: int, value: float) -> list[float]:
    factors = [1.0, 1.0, 1.0, 0.0]
    factors[op_id] = value
    return factors


@pytest.mark.parametrize("op_id,value", [(0, 0.7), (0, 1.25), (1, 0.6), (1, 1.3), (2, 0.0), (2, 0.75), (2, 1.25)])
def test_brightness_contrast_saturation_equal_albumentations_up_to_its_rounding(op_id, value):
    image = photo(op_id)
    reference = [
        fpixel.adjust_brightness_torchvision,
        fpixel.adjust_contrast_torchvision,
        fpixel.adjust_saturation_torchvision,
    ][op_id](image, value)
    ours = on_device(
        image,
        identity_except(op_id, value),
        [op_id, 0, 1, 2] if op_id == 3 else [op_id, 3, *[i for i in range(3) if i != op_id]],
    )
    # the other operations are identities (factor 1, hue 0 turns); uint8 rounding is the difference
    assert np.abs(np.rint(ours) - reference.astype(np.float32)).max() <= 1


@pytest.mark.parametrize("turn", [-0.05, 0.02, 0.25, 0.5])
def test_hue_equals_albumentations_float_path(turn):
    """The uint8 path keeps hue in 2° steps, the float path exactly: compare with the float one."""
    image = photo(7)
    reference = fpixel.adjust_hue_torchvision(image.astype(np.float32) / 255, turn) * 255
    ours = on_device(image, [1.0, 1.0, 1.0, turn], [3, 0, 1, 2])
    assert np.abs(ours - reference).max() < 0.05


def test_each_sample_gets_its_own_factors_and_order():
    images = [photo(s) for s in range(4)]
    factors = [[1.2, 0.8, 0.5, 0.1], [0.9, 1.3, 1.1, -0.05], [1.0, 0.7, 1.4, 0.0], [0.75, 1.0, 0.9, 0.3]]
    orders = [[0, 1, 2, 3], [3, 2, 1, 0], [1, 3, 0, 2], [0, 1, 2, 3]]
    batch = torch.from_numpy(np.stack([i.transpose(2, 0, 1) for i in images])).float()
    together = jitter_batch(batch, torch.tensor(factors), torch.tensor(orders), torch.tensor([[24, 32]] * 4))
    for k in range(4):
        alone = on_device(images[k], factors[k], orders[k])
        np.testing.assert_allclose(together[k].permute(1, 2, 0).numpy(), alone, atol=1e-4)
    # the order matters: contrast then brightness is not brightness then contrast
    a = on_device(images[0], [1.3, 0.5, 1.0, 0.0], [0, 1, 2, 3])
    b = on_device(images[0], [1.3, 0.5, 1.0, 0.0], [1, 0, 2, 3])
    assert np.abs(a - b).max() > 5


def test_padding_stays_zero_and_contrast_sees_only_the_content():
    content = photo(3, 16, 20)
    padded = np.full((24, 32, 3), 250, np.uint8)  # junk in the padding must not count
    padded[:16, :20] = content
    factors, order = [1.1, 0.6, 1.2, 0.04], [1, 0, 3, 2]
    out = on_device(padded, factors, order, content=(16, 20))
    assert not out[16:].any() and not out[:, 20:].any()
    np.testing.assert_allclose(out[:16, :20], on_device(content, factors, order), atol=1e-3)


def test_loader_and_device_jitter_agree_and_match_the_chain_in_distribution():
    """The fused pipeline's two placements of the same draw agree up to uint8 rounding, and the
    draws give the same distribution of outputs as the albumentations chain's ColorJitter."""
    aug = AugmentConfig()
    image = photo(11, 32, 32)
    rgba = np.dstack([image, np.full(image.shape[:2], 255, np.uint8)])
    chain = build_augmenter(
        DataConfig(
            train_size=(32, 32),
            augment=aug.model_copy(update={"pipeline": "albumentations", "scale": (1.0, 1.0), "rotate": 0.0}),
        )
    )
    full = [np.array([[0, 0], [32, 0], [32, 32], [0, 32]], np.float32)]
    ours, theirs = [], []
    for seed in range(300):
        jitter = draw_jitter(np.random.default_rng(seed), aug)
        loader = jitter_on_loader(rgba, jitter, (32, 32)).astype(np.float32)
        device = on_device(image, jitter.factors.tolist(), jitter.order.tolist())
        # albumentations' uint8 operations truncate (about half a level each, four in a row), and
        # its uint8 hue is kept in 2° steps and shifted by a truncated step: up to 4° off, which
        # is 255·4/60 = 17 levels on a saturated pixel
        gap = np.abs(loader - device)
        assert gap.mean() < 3.0 and np.percentile(gap, 99) <= 18, seed
        ours.append(device.reshape(-1, 3).mean(0).tolist() + device.reshape(-1, 3).std(0).tolist())
        out = chain(image, full, [False], seed)[0].astype(np.float32)
        theirs.append(out.reshape(-1, 3).mean(0).tolist() + out.reshape(-1, 3).std(0).tolist())
    ours_a, theirs_a = np.array(ours), np.array(theirs)
    # two-sample Kolmogorov-Smirnov statistic of each summary (mean and spread per channel)
    # against its critical value at the 0.1% level for 300 + 300 draws: 1.95·sqrt(2/300) = 0.16
    for column in range(6):
        a, b = np.sort(ours_a[:, column]), np.sort(theirs_a[:, column])
        grid = np.concatenate([a, b])
        gap = np.searchsorted(a, grid, side="right") / len(a) - np.searchsorted(b, grid, side="right") / len(b)
        assert np.abs(gap).max() < 0.16, column


def test_batch_to_device_jitters_then_normalises(tmp_path):
    """With the jitter keys in a batch, batch_to_device applies them and removes them; with the
    identity jitter it gives exactly the normalisation of the plain path."""
    image = photo(5)
    batch = {
        "image": torch.from_numpy(image.transpose(2, 0, 1).copy())[None],
        "shrink": torch.zeros(1, 24, 32, dtype=torch.uint8),
        "shrink_mask": torch.ones(1, 24, 32, dtype=torch.uint8),
        "thresh_mask": torch.zeros(1, 24, 32, dtype=torch.uint8),
        "jitter": torch.tensor([[1.0, 1.0, 1.0, 0.0]]),
        "jitter_order": torch.tensor([[0, 1, 2, 3]]),
        "content_size": torch.tensor([[24, 32]]),
    }
    cfg = DataConfig()
    out = batch_to_device(dict(batch), torch.device("cpu"), cfg)
    assert not set(out) & {"jitter", "jitter_order", "content_size"}
    np.testing.assert_allclose(out["image"][0].numpy(), normalize(image, cfg.mean, cfg.std), atol=2e-4)
    batch["jitter"] = torch.tensor([[1.5, 1.0, 1.0, 0.0]])
    brighter = batch_to_device(dict(batch), torch.device("cpu"), cfg)["image"]
    assert brighter.mean() > out["image"].mean() + 0.3


def test_fused_items_carry_the_jitter_only_when_it_goes_to_the_device():
    cfg = DataConfig(train_size=(32, 32))
    image = photo(2, 40, 40)
    poly = [np.array([[4, 4], [30, 4], [30, 20], [4, 20]], np.float32)]
    assert FusedAugmenter(cfg, jitter_on_device=True).augment(image, poly, [False], 3).jitter is not None
    loader = FusedAugmenter(cfg, jitter_on_device=False).augment(image, poly, [False], 3)
    assert loader.jitter is None and loader.image.flags.c_contiguous
    assert isinstance(draw_jitter(np.random.default_rng(0), cfg.augment), JitterParams)

"""DBNet loss: hand-computed OHEM / L1 / Dice values, float32 everywhere, gradients under AMP."""

from __future__ import annotations

import math
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from ocrkit.core import targets
from ocrkit.core.config import LossConfig, ModelConfig
from ocrkit.core.geometry import maps
from ocrkit.core.model import DBLoss, balanced_bce_with_logits, build_model, dice_loss, masked_l1
from ocrkit.core.model import loss as loss_module

TINY = {"base_width": 8, "inner_channels": 32, "head_channels": 8}
LOSS_KEYS = {"loss", "loss_prob", "loss_thresh", "loss_binary"}


def bce(logit: float, target: float) -> float:
    return F.binary_cross_entropy_with_logits(torch.tensor(float(logit)), torch.tensor(float(target))).item()


def synthetic_batch(n: int = 2, height: int = 64, width: int = 64) -> dict[str, torch.Tensor]:
    shrink = torch.zeros(n, height, width)
    shrink[:, 20:30, 10:50] = 1
    shrink_mask = torch.ones(n, height, width)
    shrink_mask[:, 40:45, 5:15] = 0  # an ignored region
    thresh = torch.full((n, height, width), 0.3)
    thresh[:, 16:34, 6:54] = 0.5
    thresh_mask = torch.zeros(n, height, width)
    thresh_mask[:, 16:34, 6:54] = 1
    return {"shrink": shrink, "shrink_mask": shrink_mask, "thresh": thresh, "thresh_mask": thresh_mask}


def tiny_model_and_batch() -> tuple[torch.nn.Module, torch.Tensor, dict[str, torch.Tensor]]:
    torch.manual_seed(0)
    model = build_model(ModelConfig(**TINY)).train()
    return model, torch.randn(2, 3, 64, 64), synthetic_batch()


# --- OHEM ---------------------------------------------------------------------------------------


def test_ohem_keeps_the_positive_and_exactly_the_three_hardest_negatives() -> None:
    logits = torch.tensor([[[-2.0, 3.0, 2.0, -1.0, 1.0, 0.5, 4.0, 5.0]]])
    target = torch.tensor([[[1.0, 0, 0, 0, 0, 0, 0, 0]]])
    mask = torch.ones_like(target)
    mask[..., 7] = 0  # the hardest negative of all lies outside the mask: never picked
    loss = balanced_bce_with_logits(logits, target, mask, ohem_ratio=3.0, eps=0.0)
    expected = (bce(-2.0, 1) + bce(4.0, 0) + bce(3.0, 0) + bce(2.0, 0)) / 4
    assert loss.item() == pytest.approx(expected, rel=1e-6)


def test_ohem_caps_negatives_at_those_available() -> None:
    logits = torch.tensor([[[0.0, 1.0, -1.0]]])
    target = torch.tensor([[[1.0, 1.0, 0.0]]])  # 2 positives would allow 6 negatives; 1 exists
    loss = balanced_bce_with_logits(logits, target, torch.ones_like(target), ohem_ratio=3.0, eps=0.0)
    assert loss.item() == pytest.approx((bce(0.0, 1) + bce(1.0, 1) + bce(-1.0, 0)) / 3, rel=1e-6)


def test_no_positive_batch_falls_back_to_the_hardest_negatives() -> None:
    logits = torch.linspace(-5, 5, 100).reshape(1, 10, 10)
    target = torch.zeros_like(logits)
    loss = balanced_bce_with_logits(logits, target, torch.ones_like(target), fallback_negatives=4, eps=0.0)
    expected = sum(bce(v, 0) for v in logits.flatten()[-4:].tolist()) / 4
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    assert loss.item() > 1.0  # text-free images still push false positives down

    loss_all = balanced_bce_with_logits(logits, target, torch.ones_like(target), fallback_negatives=10_000)
    expected_all = F.binary_cross_entropy_with_logits(logits, target).item()
    assert loss_all.item() == pytest.approx(expected_all, rel=1e-5)


def test_fully_masked_batch_gives_zero_not_nan() -> None:
    logits = torch.randn(1, 8, 8)
    target = (torch.rand(1, 8, 8) > 0.5).float()
    loss = balanced_bce_with_logits(logits, target, torch.zeros_like(target))
    assert loss.item() == 0.0


# --- L1 and Dice --------------------------------------------------------------------------------


def test_masked_l1_ignores_pixels_outside_the_mask() -> None:
    pred = torch.tensor([[[0.5, 0.4, 0.9, 0.0]]])
    target = torch.tensor([[[0.3, 0.7, 0.3, 1.0]]])
    mask = torch.tensor([[[1.0, 1.0, 0.0, 0.0]]])  # the two large errors are masked out
    assert masked_l1(pred, target, mask, eps=0.0).item() == pytest.approx((0.2 + 0.3) / 2, rel=1e-6)


def test_dice_hand_computed() -> None:
    pred = torch.tensor([[[0.5, 1.0, 0.25, 1.0]]])
    target = torch.tensor([[[1.0, 1.0, 0.0, 1.0]]])
    mask = torch.tensor([[[1.0, 1.0, 1.0, 0.0]]])
    # intersection 1.5; Σp·m = 1.75; Σg·m = 2
    assert dice_loss(pred, target, mask, eps=0.0).item() == pytest.approx(1 - 3.0 / 3.75, rel=1e-6)


def test_dice_on_a_large_fp16_map_is_finite() -> None:
    ones = torch.ones(1, 1024, 1024, dtype=torch.float16)
    assert torch.isinf(ones.sum())  # fp16 overflows: reductions must be float32
    loss = dice_loss(ones, ones, ones)
    assert loss.dtype == torch.float32
    assert loss.item() == pytest.approx(0.0, abs=1e-6)


def test_full_loss_on_a_large_fp16_output_is_finite() -> None:
    shape = (1, 1, 1024, 1024)
    outputs = {
        "prob_logits": torch.full(shape, 8.0, dtype=torch.float16),
        "thresh_logits": torch.zeros(shape, dtype=torch.float16),
        "binary": torch.ones(shape, dtype=torch.float16),
    }
    ones = torch.ones(1, 1024, 1024)
    batch = {"shrink": ones, "shrink_mask": ones, "thresh": ones * 0.5, "thresh_mask": ones}
    losses = DBLoss(LossConfig())(outputs, batch)
    assert all(torch.isfinite(v) and v.dtype == torch.float32 for v in losses.values())
    assert losses["loss_binary"].item() == pytest.approx(0.0, abs=1e-6)


# --- the combined loss --------------------------------------------------------------------------


def test_perfect_prediction_gives_near_zero_terms() -> None:
    batch = synthetic_batch()
    shrink, thresh = batch["shrink"], batch["thresh"]
    outputs = {
        "prob_logits": (shrink * 2 - 1).unsqueeze(1) * 30.0,
        "thresh_logits": torch.logit(thresh).unsqueeze(1),
    }
    losses = DBLoss(LossConfig())(outputs, batch)  # no "binary": rebuilt from the logits
    for key in LOSS_KEYS:
        assert 0.0 <= losses[key].item() < 1e-4, key


def test_weighted_sum_and_shape_conventions() -> None:
    model, images, batch = tiny_model_and_batch()
    with torch.no_grad():
        outputs = model(images)
    cfg = LossConfig(alpha=2.0, beta=3.0, gamma=0.5)
    flat = DBLoss(cfg)(outputs, batch)
    with_channel = DBLoss(cfg)(outputs, {k: v.unsqueeze(1) for k, v in batch.items()})
    assert set(flat) == LOSS_KEYS
    expected = 2.0 * flat["loss_prob"] + 3.0 * flat["loss_thresh"] + 0.5 * flat["loss_binary"]
    assert flat["loss"].item() == pytest.approx(expected.item(), rel=1e-6)
    for key in LOSS_KEYS:
        assert flat[key].item() == with_channel[key].item()


def test_missing_binary_is_rebuilt_with_the_model_formula() -> None:
    model, images, batch = tiny_model_and_batch()
    with torch.no_grad():
        outputs = model(images)
    without_binary = {k: v for k, v in outputs.items() if k != "binary"}
    loss_fn = DBLoss(LossConfig(), k=model.k)
    assert loss_fn(without_binary, batch)["loss"].item() == pytest.approx(
        loss_fn(outputs, batch)["loss"].item(), rel=1e-6
    )


def test_mismatched_target_shape_is_rejected() -> None:
    outputs = {"prob_logits": torch.zeros(1, 1, 8, 8), "thresh_logits": torch.zeros(1, 1, 8, 8)}
    batch = {key: torch.zeros(1, 8, 9) for key in ("shrink", "shrink_mask", "thresh", "thresh_mask")}
    with pytest.raises(ValueError, match="shape"):
        DBLoss(LossConfig())(outputs, batch)


# --- mixed precision ----------------------------------------------------------------------------


def test_bf16_autocast_loss_is_float32_finite_and_reaches_every_parameter() -> None:
    model, images, batch = tiny_model_and_batch()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        outputs = model(images)
        losses = DBLoss(LossConfig())(outputs, batch)
    assert outputs["prob_logits"].dtype == torch.bfloat16  # autocast really was active
    for key in LOSS_KEYS:
        assert losses[key].dtype == torch.float32 and torch.isfinite(losses[key]), key
    losses["loss"].backward()
    for name, param in model.named_parameters():
        assert param.grad is not None, name
        assert torch.isfinite(param.grad).all(), name
        assert param.grad.abs().sum() > 0, name


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_autocast_loss_matches_float32(dtype: torch.dtype) -> None:
    model, images, batch = tiny_model_and_batch()
    loss_fn = DBLoss(LossConfig())
    with torch.no_grad():
        reference = loss_fn(model(images), batch)
        with torch.autocast("cpu", dtype=dtype):
            outputs = model(images)
            mixed = loss_fn(outputs, batch)
    assert outputs["prob_logits"].dtype == dtype
    # The loss itself is float32; what differs is the network's low-precision logits. The small
    # L1 term (a mean of |T − target| ≈ 0.09) is the most sensitive to that: seen up to 1.3% in bf16.
    tolerances = {"loss": 1e-2, "loss_prob": 1e-2, "loss_binary": 1e-2, "loss_thresh": 3e-2}
    for key, rel_tol in tolerances.items():
        assert mixed[key].dtype == torch.float32
        assert math.isclose(mixed[key].item(), reference[key].item(), rel_tol=rel_tol), key


def test_loss_reads_the_targets_named_by_the_one_map_key_tuple() -> None:
    assert loss_module.MAP_KEYS is targets.MAP_KEYS and maps.MAP_KEYS is targets.MAP_KEYS
    assert not hasattr(loss_module, "TARGET_KEYS")  # no second copy to drift
    # ... while model and geometry stay independent layers (neither imports the other)
    for module, other in (
        ("ocrkit.core.model.loss", "ocrkit.core.geometry"),
        ("ocrkit.core.geometry.maps", "ocrkit.core.model"),
    ):
        code = f"import sys, {module}; assert {other!r} not in sys.modules, {other!r}"
        subprocess.run([sys.executable, "-c", code], check=True)

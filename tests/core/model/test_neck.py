"""The necks: DB's FPN unchanged by the ASF work, and DBNet++'s adaptive scale fusion (shapes at
any input size, gradients into every one of its parameters, attention weights in [0, 1])."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from ocrkit.core.config import ModelConfig
from ocrkit.core.model import FPN, AdaptiveScaleFusion, ASFNeck, build_model, build_neck

TINY = {"base_width": 8, "inner_channels": 32, "head_channels": 8}
SIZES = [(97, 131), (64, 64), (33, 65), (32, 32)]


def tiny_model(backbone: str, neck: str):
    torch.manual_seed(0)
    return build_model(ModelConfig(backbone=backbone, neck=neck, **TINY))


@pytest.mark.parametrize("neck", ["fpn", "asf"])
@pytest.mark.parametrize("backbone", ["resnet18", "resnet50"])
@pytest.mark.parametrize("height, width", SIZES)
def test_both_necks_fuse_to_a_quarter_size_map_at_any_input_size(neck, backbone, height, width):
    model = tiny_model(backbone, neck).eval()
    images = torch.randn(2, 3, height, width)
    with torch.no_grad():
        features = model.backbone(images)
        fused = model.neck(features)
        outputs = model(images)
    assert fused.shape == (2, TINY["inner_channels"], *features[0].shape[-2:])
    assert outputs["prob_logits"].shape == outputs["thresh_logits"].shape == (2, 1, height, width)
    assert torch.isfinite(fused).all()


def test_the_config_chooses_the_neck_and_fpn_is_the_default():
    assert type(tiny_model("resnet18", "fpn").neck) is FPN
    assert isinstance(tiny_model("resnet18", "asf").neck, ASFNeck)
    assert ModelConfig().neck == "fpn"
    with pytest.raises(ValueError, match="unknown neck"):
        build_neck("bifpn", [8, 16, 32, 64], 32)


def test_every_asf_parameter_gets_a_gradient():
    model = tiny_model("resnet18", "asf").train()
    outputs = model(torch.randn(2, 3, 64, 96))
    (outputs["prob_logits"].mean() + outputs["thresh_logits"].mean()).backward()
    asf = dict(model.neck.asf.named_parameters())
    assert set(asf) == {
        "reduce.weight",
        "reduce.bias",
        "channel_gate.1.weight",
        "channel_gate.3.weight",
        "spatial_gate.0.weight",
        "spatial_gate.2.weight",
        "scale_attention.0.weight",
    }
    for name, parameter in asf.items():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None, name  # the FPN, trunk and heads train too


def test_attention_weights_are_one_map_per_level_in_0_1():
    torch.manual_seed(1)
    asf = AdaptiveScaleFusion(32)
    levels = [torch.randn(2, 8, 24, 40) * 10 for _ in range(4)]  # large values push the sigmoid to its ends
    weights = asf.weights(torch.cat(levels, dim=1))
    assert weights.shape == (2, 4, 24, 40)
    assert weights.min() >= 0 and weights.max() <= 1
    fused = asf(levels)
    for i, level in enumerate(levels):
        torch.testing.assert_close(fused[:, 8 * i : 8 * (i + 1)], weights[:, i : i + 1] * level)


def test_asf_refuses_another_number_of_levels():
    with pytest.raises(ValueError, match="expected 4 levels, got 3"):
        AdaptiveScaleFusion(32)([torch.zeros(1, 8, 4, 4)] * 3)


def test_asf_works_at_the_smallest_widths():
    asf = AdaptiveScaleFusion(4)  # inner 4: one channel a level, the channel gate squeezed to one
    assert asf([torch.randn(1, 1, 5, 7) for _ in range(4)]).shape == (1, 4, 5, 7)


def _reference_fpn_forward(fpn: FPN, features):
    """The FPN's forward as it was before the ASF work, written out."""
    merged = [lateral(f) for lateral, f in zip(fpn.laterals, features, strict=True)]
    for level in range(len(merged) - 1, 0, -1):
        merged[level - 1] = merged[level - 1] + F.interpolate(merged[level], size=merged[level - 1].shape[-2:])
    levels = [smooth(m) for smooth, m in zip(fpn.smooth, merged, strict=True)]
    return torch.cat([F.interpolate(level, size=levels[0].shape[-2:]) for level in reversed(levels)], dim=1)


@pytest.mark.parametrize("height, width", SIZES)
def test_the_fpn_is_unchanged_bit_for_bit(height, width):
    model = tiny_model("resnet50", "fpn").eval()
    with torch.no_grad():
        features = model.backbone(torch.randn(1, 3, height, width))
        assert torch.equal(model.neck(features), _reference_fpn_forward(model.neck, features))
    assert [name for name in model.state_dict() if name.startswith("neck.")] == [
        *(f"neck.laterals.{i}.weight" for i in range(4)),
        *(f"neck.smooth.{i}.weight" for i in range(4)),
    ]


def test_asf_adds_its_draws_after_the_fpns():
    # the trunk and the FPN of an ASF model are the FPN model's, draw for draw
    fpn, asf = tiny_model("resnet18", "fpn").state_dict(), tiny_model("resnet18", "asf").state_dict()
    for name, tensor in fpn.items():
        if name.startswith(("backbone.", "neck.")):
            assert torch.equal(asf[name], tensor), name

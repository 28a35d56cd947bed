"""DBNet model: shapes for any input size, parameter counts, precision of the binary map."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from ocrkit.core.config import ModelConfig
from ocrkit.core.model import DBNet, ResNet, build_model

TINY = {"base_width": 8, "inner_channels": 32, "head_channels": 8}


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def tiny_model(backbone: str = "resnet18") -> DBNet:
    torch.manual_seed(0)
    return build_model(ModelConfig(backbone=backbone, **TINY))


@pytest.mark.parametrize("backbone", ["resnet18", "resnet50"])
@pytest.mark.parametrize("height, width", [(97, 131), (64, 64), (33, 65), (32, 32)])
def test_outputs_match_input_size_in_train_and_eval(backbone: str, height: int, width: int) -> None:
    model = tiny_model(backbone)
    images = torch.randn(2, 3, height, width)
    with torch.no_grad():
        train_out = model.train()(images)
        eval_out = model.eval()(images)
    assert set(train_out) == {"prob_logits", "thresh_logits", "binary"}
    assert set(eval_out) == {"prob_logits", "thresh_logits"}
    for out in (train_out, eval_out):
        for value in out.values():
            assert value.shape == (2, 1, height, width)
            assert torch.isfinite(value).all()


@pytest.mark.parametrize(
    "backbone, expected_channels",
    [("resnet18", [8, 16, 32, 64]), ("resnet50", [32, 64, 128, 256])],
)
def test_backbone_strides_and_channels(backbone: str, expected_channels: list[int]) -> None:
    trunk = ResNet(backbone, base_width=8)
    features = trunk(torch.randn(1, 3, 97, 131))
    assert trunk.out_channels == expected_channels
    assert [f.shape[1] for f in features] == expected_channels
    # Each stage halves the size, rounding up (stride 4, 8, 16, 32).
    assert [tuple(f.shape[-2:]) for f in features] == [(25, 33), (13, 17), (7, 9), (4, 5)]


def test_standard_widths_match_torchvision_parameter_counts() -> None:
    # torchvision resnet18 / resnet50 have 11,689,512 / 25,557,032 parameters, fc included
    # (513,000 / 2,049,000); our trunks have no fc.
    assert count_parameters(ResNet("resnet18", 64)) == 11_689_512 - 513_000
    assert count_parameters(ResNet("resnet50", 64)) == 25_557_032 - 2_049_000


def test_standard_dbnet_r18_parameter_count_matches_architecture() -> None:
    model = build_model(ModelConfig())
    inner, head = 256, 64
    laterals = (64 + 128 + 256 + 512) * inner
    smoothing = 4 * inner * (inner // 4) * 9
    one_head = inner * head * 9 + 2 * head + (head * head * 4 + head) + 2 * head + (head * 4 + 1)
    assert count_parameters(model.neck) == laterals + smoothing
    assert count_parameters(model.prob_head) == one_head
    assert count_parameters(model) == 11_176_512 + laterals + smoothing + 2 * one_head  # ≈ 12.3M


def test_binary_map_is_float32_and_follows_formula_under_bf16_autocast() -> None:
    model = tiny_model().train()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(torch.randn(2, 3, 64, 64))
    assert out["prob_logits"].dtype == torch.bfloat16  # autocast really was active
    assert out["binary"].dtype == torch.float32
    prob = torch.sigmoid(out["prob_logits"].float())
    thresh = torch.sigmoid(out["thresh_logits"].float())
    expected = torch.sigmoid(model.k * (prob - thresh))
    torch.testing.assert_close(out["binary"], expected, rtol=0, atol=1e-6)


def test_rejects_images_without_three_channels() -> None:
    with pytest.raises(ValueError, match="N×3×H×W"):
        tiny_model()(torch.randn(1, 1, 64, 64))


def test_unknown_backbone_is_rejected() -> None:
    with pytest.raises(ValueError, match="unknown backbone"):
        ResNet("resnet34")


# The three loops the layers had before they shared init_weights, written out as the reference.
def _reference_backbone_init(module: nn.Module) -> None:
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def _reference_neck_init(module: nn.Module) -> None:
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")


def _reference_head_init(module: nn.Module) -> None:
    for m in module.modules():
        if isinstance(m, nn.Conv2d | nn.ConvTranspose2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


@pytest.mark.parametrize("backbone", ["resnet18", "resnet50"])
def test_shared_init_weights_is_bit_identical_to_the_per_layer_loops(backbone: str, monkeypatch) -> None:
    from ocrkit.core.model import head, neck, resnet

    torch.manual_seed(123)
    shared = build_model(ModelConfig(backbone=backbone, **TINY)).state_dict()
    rng_after_shared = torch.get_rng_state()

    monkeypatch.setattr(resnet, "init_weights", _reference_backbone_init)
    monkeypatch.setattr(neck, "init_weights", _reference_neck_init)
    monkeypatch.setattr(head, "init_weights", _reference_head_init)
    torch.manual_seed(123)
    reference = build_model(ModelConfig(backbone=backbone, **TINY)).state_dict()

    assert torch.equal(torch.get_rng_state(), rng_after_shared)  # the same draws, in the same order
    assert shared.keys() == reference.keys()
    for key in shared:
        assert torch.equal(shared[key], reference[key]), key


def test_every_layer_uses_the_one_init_function() -> None:
    import inspect

    from ocrkit.core.model import head, neck, resnet, weight_init

    for module in (resnet, neck, head):
        assert module.init_weights is weight_init.init_weights
        assert "kaiming_normal_" not in inspect.getsource(module)

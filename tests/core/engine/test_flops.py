"""FLOP counting and utilisation: a hand count, the GPU table, the measured CPU peak."""

from __future__ import annotations

import pytest
import torch

from ocrkit.core.config import ModelConfig
from ocrkit.core.engine.flops import (
    Peak,
    count_step_flops,
    gpu_peak,
    measured_cpu_peak,
    train_flops_per_image,
    utilisation,
)


def test_a_convolution_and_a_linear_layer_count_as_by_hand():
    """conv 3->8, 3x3 on 2x3x16x16, then linear 8->4 on the pooled 2x8: forward 2 FLOPs per
    multiply-add; backward computes the weight gradients of both, and the input gradient of the
    linear layer only (the images need none): twice the conv's forward, three times minus the
    first layer's input gradient for the linear layer."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, padding=1, bias=False),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(8, 4, bias=False),
    )
    conv_forward = 2 * (2 * 16 * 16) * 8 * (3 * 9)
    linear_forward = 2 * 2 * 8 * 4
    expected = 2 * conv_forward + 3 * linear_forward  # conv: forward + weight grad; linear: + input grad
    assert count_step_flops(model, torch.randn(2, 3, 16, 16)) == expected
    assert all(p.grad is None for p in model.parameters())  # the count leaves no gradients behind


def test_the_dbnet_step_scales_with_the_crop_area():
    cfg = ModelConfig(base_width=8, inner_channels=32, head_channels=8)
    small, large = train_flops_per_image(cfg, (64, 64)), train_flops_per_image(cfg, (128, 128))
    assert small > 0 and large == pytest.approx(4 * small, rel=0.02)  # convolutions dominate


@pytest.mark.parametrize(
    "name, precision, tflops",
    [
        ("NVIDIA H100 80GB HBM3", "16-mixed", 989.0),
        ("NVIDIA H100 PCIe", "bf16-mixed", 756.0),
        ("NVIDIA H200", "32-true", 67.0),
        ("NVIDIA L40S", "16-mixed", 362.0),
        ("NVIDIA L4", "16-mixed", 121.0),
        ("NVIDIA A100-SXM4-80GB", "32-true", 19.5),
    ],
)
def test_gpu_peaks_come_from_the_table_by_name(name, precision, tflops):
    assert gpu_peak(name, precision).tflops == tflops


def test_an_unknown_gpu_has_no_peak_and_so_no_mfu():
    peak = gpu_peak("Imaginary GPU 9000", "16-mixed")
    assert peak.tflops is None and "not in ocrkit's table" in peak.source
    assert utilisation(1e9, 100.0, peak) == (0.1, None)


def test_mfu_is_achieved_over_peak():
    achieved, mfu = utilisation(2e9, 50.0, Peak(1.0, "test"))
    assert achieved == pytest.approx(0.1) and mfu == pytest.approx(0.1)


def test_the_cpu_peak_is_measured_and_positive():
    peak = measured_cpu_peak(size=256, repeats=2)
    assert peak.tflops is not None and peak.tflops > 0 and "measured" in peak.source

"""The one weight initialisation of every ocrkit layer (backbone, neck, heads)."""

from __future__ import annotations

from torch import nn


def init_weights(module: nn.Module) -> None:
    """He-normal (fan_out, ReLU) for each convolution and transposed convolution, ones/zeros for
    each BatchNorm, visiting ``module.modules()`` in order: the RNG is drawn in that order, so a
    seeded build is reproducible. Biases of convolutions keep PyTorch's default."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d | nn.ConvTranspose2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)

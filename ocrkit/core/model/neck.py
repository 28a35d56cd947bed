"""DBNet's FPN neck: fuse C2..C5 into one map at 1/4 of the input resolution."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ocrkit.core.model.weight_init import init_weights


def _upsample_to(x: Tensor, reference: Tensor) -> Tensor:
    # size= (not scale_factor=) so inputs that are not multiples of 32 still line up exactly.
    return F.interpolate(x, size=reference.shape[-2:], mode="nearest")


class FPN(nn.Module):
    """1×1 laterals → top-down nearest-upsample-and-add → 3×3 conv to inner/4 per level →
    upsample every level to the 1/4 level → concatenate (coarsest first, as DB does).

    Output: ``inner_channels`` channels at the size of the finest input feature.
    """

    def __init__(self, in_channels: Sequence[int], inner_channels: int = 256) -> None:
        super().__init__()
        if inner_channels % len(in_channels):
            raise ValueError(f"inner_channels {inner_channels} not divisible by {len(in_channels)} levels")
        level_channels = inner_channels // len(in_channels)
        self.laterals = nn.ModuleList(nn.Conv2d(channels, inner_channels, 1, bias=False) for channels in in_channels)
        self.smooth = nn.ModuleList(
            nn.Conv2d(inner_channels, level_channels, 3, padding=1, bias=False) for _ in in_channels
        )
        self.out_channels = inner_channels
        init_weights(self)

    def forward(self, features: Sequence[Tensor]) -> Tensor:
        merged = [lateral(f) for lateral, f in zip(self.laterals, features, strict=True)]
        for level in range(len(merged) - 1, 0, -1):
            merged[level - 1] = merged[level - 1] + _upsample_to(merged[level], merged[level - 1])
        levels = [smooth(m) for smooth, m in zip(self.smooth, merged, strict=True)]
        finest = levels[0]
        return torch.cat([_upsample_to(level, finest) for level in reversed(levels)], dim=1)

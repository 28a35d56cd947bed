"""DBNet's necks: fuse C2..C5 into one map at 1/4 of the input resolution.

``fpn`` is DB's FPN. ``asf`` is DBNet++'s adaptive scale fusion (Liao et al., "Real-Time Scene
Text Detection with Differentiable Binarization and Adaptive Scale Fusion", TPAMI 2022): the same
FPN levels, each weighted per pixel by an attention map computed from all of them.
"""

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

    def scale_levels(self, features: Sequence[Tensor]) -> list[Tensor]:
        """The per-level maps, each upsampled to the finest level, coarsest first."""
        merged = [lateral(f) for lateral, f in zip(self.laterals, features, strict=True)]
        for level in range(len(merged) - 1, 0, -1):
            merged[level - 1] = merged[level - 1] + _upsample_to(merged[level], merged[level - 1])
        levels = [smooth(m) for smooth, m in zip(self.smooth, merged, strict=True)]
        finest = levels[0]
        return [_upsample_to(level, finest) for level in reversed(levels)]

    def forward(self, features: Sequence[Tensor]) -> Tensor:
        return torch.cat(self.scale_levels(features), dim=1)


class AdaptiveScaleFusion(nn.Module):
    """DBNet++'s ASF with the scale-channel-spatial attention (DB's ``scale_channel_spatial``,
    mmocr's default): the concatenated levels → 3×3 conv to inner/4 → plus a channel gate
    (squeeze-excite style, added rather than multiplied, as the references do) → plus a spatial
    gate computed from the channel mean → 1×1 conv and sigmoid to one weight map per level.
    Each level is multiplied by its map and the levels are concatenated again.

    The Sequential layouts (index of each conv) follow DB's modules, so DB's ASF checkpoints map
    onto these names one prefix at a time (model/pretrained.py).
    """

    def __init__(self, inner_channels: int, levels: int = 4) -> None:
        super().__init__()
        reduced = inner_channels // 4
        squeezed = max(1, reduced // 4)  # tiny test widths would otherwise squeeze to 0 channels
        self.levels = levels
        self.reduce = nn.Conv2d(inner_channels, reduced, 3, padding=1)
        self.channel_gate = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(reduced, squeezed, 1, bias=False),
            nn.ReLU(inplace=True),
            nn.Conv2d(squeezed, reduced, 1, bias=False),
        )
        self.spatial_gate = nn.Sequential(
            nn.Conv2d(1, 1, 3, padding=1, bias=False),
            nn.ReLU(inplace=True),
            nn.Conv2d(1, 1, 1, bias=False),
            nn.Sigmoid(),
        )
        self.scale_attention = nn.Sequential(nn.Conv2d(reduced, levels, 1, bias=False), nn.Sigmoid())
        init_weights(self)

    def weights(self, fused: Tensor) -> Tensor:
        """N×levels×H×W weights in [0, 1], one map per level (in the concatenation's order)."""
        x = self.reduce(fused)
        x = x + torch.sigmoid(self.channel_gate(x))
        x = x + self.spatial_gate(x.mean(dim=1, keepdim=True))
        return self.scale_attention(x)

    def forward(self, levels: Sequence[Tensor]) -> Tensor:
        if len(levels) != self.levels:
            raise ValueError(f"expected {self.levels} levels, got {len(levels)}")
        weights = self.weights(torch.cat(list(levels), dim=1))
        return torch.cat([weights[:, i : i + 1] * level for i, level in enumerate(levels)], dim=1)


class ASFNeck(FPN):
    """The FPN's levels fused by ``AdaptiveScaleFusion`` instead of plainly concatenated.

    The FPN's layers are built and initialised first, as in ``FPN``; the fusion module after
    them, so its random draws come after the FPN's."""

    def __init__(self, in_channels: Sequence[int], inner_channels: int = 256) -> None:
        super().__init__(in_channels, inner_channels)
        self.asf = AdaptiveScaleFusion(inner_channels, len(in_channels))

    def forward(self, features: Sequence[Tensor]) -> Tensor:
        return self.asf(self.scale_levels(features))


def build_neck(kind: str, in_channels: Sequence[int], inner_channels: int) -> FPN:
    """``model.neck``: "fpn" (DB) or "asf" (DBNet++)."""
    if kind == "fpn":
        return FPN(in_channels, inner_channels)
    if kind == "asf":
        return ASFNeck(in_channels, inner_channels)
    raise ValueError(f"unknown neck {kind!r}; expected 'fpn' or 'asf'")

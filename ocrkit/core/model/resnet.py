"""ResNet-18 / ResNet-50 trunks in plain torch (torchvision is not installable here).

Parameter names follow torchvision's ResNet layout (``conv1``, ``bn1``, ``layer1``..``layer4``,
``downsample``), so torchvision's (and timm's) ImageNet weights load name for name when
``model.pretrained`` is set (model/pretrained.py); otherwise training starts from the random
initialisation of ``weight_init.init_weights``. The classifier is left out: the detector needs
only the four stages.
"""

from __future__ import annotations

from torch import Tensor, nn

from ocrkit.core.model.weight_init import init_weights


def _conv3x3(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)


def _conv1x1(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    """Two 3×3 convs with a residual connection (ResNet-18/34)."""

    expansion = 1

    def __init__(self, in_channels: int, width: int, stride: int = 1) -> None:
        super().__init__()
        out_channels = width * self.expansion
        self.conv1 = _conv3x3(in_channels, width, stride)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = _conv3x3(width, out_channels)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _shortcut(in_channels, out_channels, stride)

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """1×1 reduce, 3×3 (carries the stride, as in torchvision's "ResNet v1.5"), 1×1 expand ×4."""

    expansion = 4

    def __init__(self, in_channels: int, width: int, stride: int = 1) -> None:
        super().__init__()
        out_channels = width * self.expansion
        self.conv1 = _conv1x1(in_channels, width)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = _conv3x3(width, width, stride)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = _conv1x1(width, out_channels)
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _shortcut(in_channels, out_channels, stride)

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


def _shortcut(in_channels: int, out_channels: int, stride: int) -> nn.Sequential | None:
    """Projection for the residual when the block changes shape; None means identity."""
    if stride == 1 and in_channels == out_channels:
        return None
    return nn.Sequential(_conv1x1(in_channels, out_channels, stride), nn.BatchNorm2d(out_channels))


_ARCHITECTURES: dict[str, tuple[type[BasicBlock] | type[Bottleneck], tuple[int, int, int, int]]] = {
    "resnet18": (BasicBlock, (2, 2, 2, 2)),
    "resnet50": (Bottleneck, (3, 4, 6, 3)),
}


class ResNet(nn.Module):
    """ResNet trunk returning the stage outputs C2..C5 (strides 4, 8, 16, 32).

    ``base_width`` is the stem width; stage widths are base_width × 1, 2, 4, 8 (× 4 for
    bottleneck outputs). 64 gives the standard networks, small values give tiny test models.
    """

    def __init__(self, name: str = "resnet18", base_width: int = 64) -> None:
        super().__init__()
        if name not in _ARCHITECTURES:
            raise ValueError(f"unknown backbone {name!r}; expected one of {sorted(_ARCHITECTURES)}")
        block, depths = _ARCHITECTURES[name]
        self.conv1 = nn.Conv2d(3, base_width, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(base_width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        in_channels = base_width
        stages = []
        for index, depth in enumerate(depths):
            width = base_width * 2**index
            stride = 1 if index == 0 else 2
            stages.append(_make_stage(block, in_channels, width, depth, stride))
            in_channels = width * block.expansion
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.out_channels: list[int] = [base_width * 2**i * block.expansion for i in range(4)]
        init_weights(self)

    def forward(self, x: Tensor) -> list[Tensor]:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        c2 = self.layer1(x)
        c3 = self.layer2(c2)
        c4 = self.layer3(c3)
        c5 = self.layer4(c4)
        return [c2, c3, c4, c5]


def _make_stage(
    block: type[BasicBlock] | type[Bottleneck], in_channels: int, width: int, depth: int, stride: int
) -> nn.Sequential:
    blocks = [block(in_channels, width, stride)]
    blocks += [block(width * block.expansion, width) for _ in range(depth - 1)]
    return nn.Sequential(*blocks)


def resnet18(base_width: int = 64) -> ResNet:
    return ResNet("resnet18", base_width)


def resnet50(base_width: int = 64) -> ResNet:
    return ResNet("resnet50", base_width)

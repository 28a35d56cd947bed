"""The probability / threshold head: upsamples the fused 1/4 map back to full resolution."""

from __future__ import annotations

from torch import Tensor, nn

from ocrkit.core.model.weight_init import init_weights


class DBHead(nn.Module):
    """conv3×3+BN+ReLU → deconv 2×2/2 +BN+ReLU → deconv 2×2/2 to one channel of logits.

    The output is 4× the input feature size. It returns logits, not probabilities, so the loss
    can use BCE-with-logits (stable, and allowed under autocast).
    """

    def __init__(self, in_channels: int, head_channels: int = 64) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.Conv2d(in_channels, head_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(head_channels),
            nn.ReLU(inplace=True),
            nn.ConvTranspose2d(head_channels, head_channels, 2, stride=2),
            nn.BatchNorm2d(head_channels),
            nn.ReLU(inplace=True),
            nn.ConvTranspose2d(head_channels, 1, 2, stride=2),
        )
        init_weights(self)

    def forward(self, x: Tensor) -> Tensor:
        return self.layers(x)

"""DBNet: ResNet trunk + FPN (or DBNet++'s adaptive scale fusion) neck + probability and threshold heads."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ocrkit.core.config import ModelConfig
from ocrkit.core.model.head import DBHead
from ocrkit.core.model.neck import build_neck
from ocrkit.core.model.resnet import ResNet


def approximate_binary_map(prob_logits: Tensor, thresh_logits: Tensor, k: float) -> Tensor:
    """DB's differentiable binarization B = sigmoid(k·(P − T)), P and T as probabilities.

    Computed in float32 with autocast off: k = 50 amplifies any rounding of P − T, and low
    precision here would leak into the Dice term.
    """
    with torch.autocast(device_type=prob_logits.device.type, enabled=False):
        prob = torch.sigmoid(prob_logits.float())
        thresh = torch.sigmoid(thresh_logits.float())
        return torch.sigmoid(k * (prob - thresh))


class DBNet(nn.Module):
    """Maps images N×3×H×W to logits N×1×H×W for any H, W.

    Output size: the heads produce 4·ceil(H/4) × 4·ceil(W/4) (the stem and pooling round up),
    which is never smaller than the input and at most 3 pixels larger; the extra bottom/right
    rows and columns are cropped off. Cropping keeps output pixel (y, x) aligned with input pixel
    (y, x); interpolating would resample every pixel by a non-integer factor.
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.k = cfg.k
        self.backbone = ResNet(cfg.backbone, cfg.base_width)
        self.neck = build_neck(cfg.neck, self.backbone.out_channels, cfg.inner_channels)
        self.prob_head = DBHead(cfg.inner_channels, cfg.head_channels)
        self.thresh_head = DBHead(cfg.inner_channels, cfg.head_channels)

    def forward(self, images: Tensor) -> dict[str, Tensor]:
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"expected images of shape N×3×H×W, got {tuple(images.shape)}")
        height, width = images.shape[-2:]
        fused = self.neck(self.backbone(images))
        outputs = {
            "prob_logits": self.prob_head(fused)[..., :height, :width],
            "thresh_logits": self.thresh_head(fused)[..., :height, :width],
        }
        if self.training:
            outputs["binary"] = approximate_binary_map(outputs["prob_logits"], outputs["thresh_logits"], self.k)
        return outputs


def build_model(cfg: ModelConfig) -> DBNet:
    return DBNet(cfg)

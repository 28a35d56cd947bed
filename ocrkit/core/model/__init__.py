"""DBNet model and loss (pure torch; no I/O)."""

from ocrkit.core.model.dbnet import DBNet, approximate_binary_map, build_model
from ocrkit.core.model.head import DBHead
from ocrkit.core.model.loss import DBLoss, balanced_bce_with_logits, dice_loss, masked_l1
from ocrkit.core.model.neck import FPN, AdaptiveScaleFusion, ASFNeck, build_neck
from ocrkit.core.model.resnet import ResNet, resnet18, resnet50

__all__ = [
    "ASFNeck",
    "AdaptiveScaleFusion",
    "DBHead",
    "DBLoss",
    "DBNet",
    "FPN",
    "ResNet",
    "approximate_binary_map",
    "balanced_bce_with_logits",
    "build_model",
    "build_neck",
    "dice_loss",
    "masked_l1",
    "resnet18",
    "resnet50",
]

"""DBNet loss: α·BCE with OHEM on P + β·masked L1 on T + γ·Dice on the binary map.

Every term runs in float32 with autocast off, whatever precision the caller trains in: fp16 sums
over a full-size map overflow (max 65504), and the k = 50 binarization amplifies rounding.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import ParamSpec

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ocrkit.core.config import LossConfig
from ocrkit.core.model.dbnet import approximate_binary_map
from ocrkit.core.targets import MAP_KEYS

_P = ParamSpec("_P")


def _to_float32(value: object) -> object:
    return value.float() if isinstance(value, Tensor) else value


def _in_float32(term: Callable[_P, Tensor]) -> Callable[_P, Tensor]:
    """Run a loss term on float32 copies of its tensor arguments with autocast disabled."""

    @functools.wraps(term)
    def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> Tensor:
        device_type = next(a for a in args if isinstance(a, Tensor)).device.type
        float_args = [_to_float32(a) for a in args]
        float_kwargs = {key: _to_float32(value) for key, value in kwargs.items()}
        with torch.autocast(device_type=device_type, enabled=False):
            return term(*float_args, **float_kwargs)  # type: ignore[arg-type]

    return wrapper


@_in_float32
def balanced_bce_with_logits(
    logits: Tensor,
    target: Tensor,
    mask: Tensor,
    ohem_ratio: float = 3.0,
    fallback_negatives: int = 1000,
    eps: float = 1e-6,
) -> Tensor:
    """BCE-with-logits over all positives and the hardest negatives (OHEM), pooled over the batch.

    Positives are target > 0.5 inside the mask. Kept negatives: the top-k losses among
    negatives inside the mask, k = min(#negatives, int(ohem_ratio·#positives)). A batch with no
    positive pixel keeps min(#negatives, ``fallback_negatives``) hardest negatives instead of
    none (DB's choice, which gives text-free batches zero loss and so never teaches "no text").
    """
    valid = mask > 0.5
    positive = valid & (target > 0.5)
    negative = valid & ~positive
    n_positive = int(positive.sum())
    wanted = int(ohem_ratio * n_positive) if n_positive else fallback_negatives
    n_negative = min(int(negative.sum()), wanted)
    loss = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    hardest_negatives = torch.topk(loss[negative], n_negative, sorted=False).values
    return (loss[positive].sum() + hardest_negatives.sum()) / (n_positive + n_negative + eps)


@_in_float32
def masked_l1(pred: Tensor, target: Tensor, mask: Tensor, eps: float = 1e-6) -> Tensor:
    """Mean absolute error over the pixels where mask is 1."""
    return ((pred - target).abs() * mask).sum() / (mask.sum() + eps)


@_in_float32
def dice_loss(pred: Tensor, target: Tensor, mask: Tensor, eps: float = 1e-6) -> Tensor:
    """1 − 2·Σ(p·g·m) / (Σ(p·m) + Σ(g·m) + eps).

    As in DB, a batch without any positive pixel scores ≈ 1 with a zero gradient: the term is
    then a constant and the BCE alone supervises.
    """
    intersection = (pred * target * mask).sum()
    union = (pred * mask).sum() + (target * mask).sum() + eps
    return 1.0 - 2.0 * intersection / union


def _as_map(tensor: Tensor, name: str) -> Tensor:
    """N×1×H×W or N×H×W → N×H×W."""
    if tensor.ndim == 4 and tensor.shape[1] == 1:
        return tensor[:, 0]
    if tensor.ndim == 3:
        return tensor
    raise ValueError(f"{name}: expected N×H×W or N×1×H×W, got {tuple(tensor.shape)}")


class DBLoss(nn.Module):
    """Combine the three DB terms.

    ``forward`` returns float32 scalars: ``loss`` (weighted sum) and the UNweighted terms
    ``loss_prob`` (BCE-OHEM), ``loss_thresh`` (L1) and ``loss_binary`` (Dice), for logging.
    When ``outputs`` has no "binary" (eval mode), it is rebuilt from the logits with ``k``.
    """

    def __init__(self, cfg: LossConfig, k: float = 50.0, fallback_negatives: int = 1000) -> None:
        super().__init__()
        self.cfg = cfg
        self.k = k
        self.fallback_negatives = fallback_negatives

    def forward(self, outputs: Mapping[str, Tensor], batch: Mapping[str, Tensor]) -> dict[str, Tensor]:
        prob_logits = _as_map(outputs["prob_logits"], "prob_logits")
        thresh_logits = _as_map(outputs["thresh_logits"], "thresh_logits")
        targets = {key: _as_map(batch[key], key) for key in MAP_KEYS}
        for key, target in targets.items():
            if target.shape != prob_logits.shape:
                raise ValueError(f"{key} has shape {tuple(target.shape)}, outputs {tuple(prob_logits.shape)}")
        if "binary" in outputs:
            binary = _as_map(outputs["binary"], "binary")
        else:
            binary = approximate_binary_map(prob_logits, thresh_logits, self.k)
        with torch.autocast(device_type=prob_logits.device.type, enabled=False):
            return self._combine(prob_logits, thresh_logits, binary, targets)

    def _combine(
        self, prob_logits: Tensor, thresh_logits: Tensor, binary: Tensor, targets: dict[str, Tensor]
    ) -> dict[str, Tensor]:
        cfg = self.cfg
        shrink, shrink_mask = targets["shrink"], targets["shrink_mask"]
        loss_prob = balanced_bce_with_logits(
            prob_logits, shrink, shrink_mask, cfg.ohem_ratio, self.fallback_negatives, cfg.eps
        )
        thresh_pred = torch.sigmoid(thresh_logits.float())
        loss_thresh = masked_l1(thresh_pred, targets["thresh"], targets["thresh_mask"], cfg.eps)
        loss_binary = dice_loss(binary, shrink, shrink_mask, cfg.eps)
        loss = cfg.alpha * loss_prob + cfg.beta * loss_thresh + cfg.gamma * loss_binary
        return {"loss": loss, "loss_prob": loss_prob, "loss_thresh": loss_thresh, "loss_binary": loss_binary}

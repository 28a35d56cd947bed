"""Exponential moving average of the weights.

Updated by the trainer only after a REAL optimizer step (a skipped fp16 step is not averaged in),
and always after the health monitor has measured the raw model's update, so a frozen model can
never hide behind a still-moving average. Float parameters and buffers (BatchNorm statistics) are
averaged; integer buffers (num_batches_tracked) are copied. torch's AveragedModel is not used
because its foreach lerp rejects integer buffers and it has no decay warm-up.
"""

from __future__ import annotations

import copy

import torch

from ocrkit.core.config import EmaConfig


class ModelEma:
    """An exponential moving average of the model's weights (``train.ema``), updated after each real
    optimizer step and validated beside the raw model.
    """

    def __init__(self, model: torch.nn.Module, cfg: EmaConfig):
        self.cfg = cfg
        self.module = copy.deepcopy(model).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)
        self.updates = 0

    def decay(self) -> float:
        """With warm-up, early averages follow the model closely: min(decay, (1+n)/(10+n))."""
        if not self.cfg.warmup:
            return self.cfg.decay
        return min(self.cfg.decay, (1 + self.updates) / (10 + self.updates))

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        d = self.decay()
        model_state = model.state_dict()
        for name, averaged in self.module.state_dict().items():
            current = model_state[name].detach()
            if averaged.is_floating_point():
                averaged.lerp_(current.to(averaged.dtype), 1.0 - d)
            else:
                averaged.copy_(current)
        self.updates += 1

    def state_dict(self) -> dict:
        return {"model": self.module.state_dict(), "updates": self.updates}

    def load_state_dict(self, state: dict) -> None:
        self.module.load_state_dict(state["model"])
        self.updates = int(state["updates"])

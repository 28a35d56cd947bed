"""The one place that decides numeric precision: autocast dtype, grad scaler, and the step order.

Order per optimizer step (as in PyTorch's AMP docs): for each of the N accumulated micro-batches
scaler.scale(loss / N).backward(); then, once per optimizer step: unscale_ → grad norm on the
UNSCALED gradients → clip → scaler.step → scaler.update. Gradients are never touched before the
scaler has seen them, so an overflow always reaches it and the step is skipped (the scale goes
down) instead of being hidden; the caller does not advance the LR schedule on a skipped step.
Without a scaler (32-true, bf16-mixed) a non-finite gradient norm skips the step the same way and
the outcome names the parameters whose gradients were not finite; the trainer then stops the run
(``health.nonfinite_grad``), since without loss scaling an inf/NaN gradient is never routine.
Losses are computed in float32 by the loss module whatever autocast does.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from dataclasses import dataclass, field

import torch

from ocrkit.core.config import ScalerConfig

AUTOCAST_DTYPES = {"16-mixed": torch.float16, "bf16-mixed": torch.bfloat16}


@dataclass
class StepOutcome:
    grad_norm: float  # unscaled, before clipping; inf/nan when the step overflowed
    stepped: bool  # False when the scaler skipped the step (inf/nan gradients)
    scale: float  # loss scale after update (1.0 without a scaler)
    # without a scaler, when the step was skipped: the positions (in the parameters given to
    # step()) of those whose gradient holds inf/NaN; found only then, so a healthy step costs nothing
    nonfinite: list[int] = field(default_factory=list)


class PrecisionPolicy:
    """The numeric precision of a run (``train.precision``): the autocast context of the forward
    pass, the GradScaler (16-mixed, unless ``train.scaler.enabled`` is false) and the order of
    backward, unscale, clip and step that never hides an overflow from the scaler.
    """

    def __init__(self, precision: str, device: torch.device, scaler: ScalerConfig | None = None):
        self.precision = precision
        self.device = device
        self.dtype = AUTOCAST_DTYPES.get(precision)
        # Whether a mode is fast here is measured, not assumed: engine/probe.py.
        # Only fp16 needs loss scaling; bf16 has fp32's exponent range (the config rejects a
        # scaler for any other precision). scaler.enabled = false switches it off for fp16 too:
        # small gradients then underflow to zero in fp16 (an experiment's choice, never a default).
        scaler = scaler or ScalerConfig()
        self.scaler = None
        if precision == "16-mixed" and scaler.enabled is not False:
            self.scaler = torch.amp.GradScaler(
                device.type, init_scale=scaler.init_scale, growth_interval=scaler.growth_interval
            )

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.dtype)

    @property
    def scale(self) -> float:
        return self.scaler.get_scale() if self.scaler else 1.0

    def backward(self, loss: torch.Tensor, micro_batches: int = 1) -> None:
        """Backward of one micro-batch; its loss counts 1/N of the optimizer step's."""
        loss = loss / micro_batches if micro_batches > 1 else loss
        (self.scaler.scale(loss) if self.scaler else loss).backward()

    def step(
        self, optimizer: torch.optim.Optimizer, params: Iterable[torch.nn.Parameter], clip: float | None
    ) -> StepOutcome:
        given = list(params)
        params = [p for p in given if p.grad is not None]
        if self.scaler is None:
            norm = _grad_norm(params, clip)
            finite = bool(torch.isfinite(norm))
            nonfinite = [] if finite else _nonfinite_grads(given)
            if finite:
                optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            return StepOutcome(float(norm), finite, 1.0, nonfinite)
        self.scaler.unscale_(optimizer)
        norm = _grad_norm(params, clip)
        scale_before = self.scaler.get_scale()
        self.scaler.step(optimizer)
        self.scaler.update()
        optimizer.zero_grad(set_to_none=True)
        scale_after = self.scaler.get_scale()
        return StepOutcome(float(norm), scale_after >= scale_before, scale_after)

    def state_dict(self) -> dict:
        return self.scaler.state_dict() if self.scaler else {}

    def load_state_dict(self, state: dict) -> None:
        if self.scaler and state:
            self.scaler.load_state_dict(state)


def _grad_norm(params: list[torch.nn.Parameter], clip: float | None) -> torch.Tensor:
    if clip is not None:
        return torch.nn.utils.clip_grad_norm_(params, clip)
    if not params:
        return torch.tensor(0.0)
    return total_norm([p.grad.float() for p in params if p.grad is not None])  # step() kept only these


def _nonfinite_grads(params: list[torch.nn.Parameter]) -> list[int]:
    """Positions of the parameters whose gradient holds inf or NaN (on the failure path only)."""
    return [i for i, p in enumerate(params) if p.grad is not None and not bool(torch.isfinite(p.grad).all())]


def total_norm(tensors: list[torch.Tensor] | tuple[torch.Tensor, ...]) -> torch.Tensor:
    """The 2-norm of all tensors together: one fused kernel per device/dtype group instead of
    one per tensor, which matters where kernel launches dominate (small models on a GPU)."""
    return torch.linalg.vector_norm(torch.stack(torch._foreach_norm(tensors)))

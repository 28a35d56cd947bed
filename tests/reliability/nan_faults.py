"""Test-only fault injection for the NaN guard: one inf/NaN planted at a chosen optimizer step of a
real ``ocrkit train`` run in this process, by wrapping the Trainer from the outside (nothing in
ocrkit knows about it).

Kinds of fault, each fired at global optimizer step ``step`` (1-based, the step the trainer's
messages name):

- ``loss``: the total loss of that step's micro-batch is multiplied by ``value`` (its terms stay as
  they were), as a diverging loss would be;
- ``grad``: one parameter's gradient becomes ``value`` everywhere (a hook on the parameter, so it
  passes through the normal backward path and every other hook);
- ``batch``: one pixel of the first image of that step's batch becomes ``value`` after the batch is
  normalised on the device (a uint8 image cannot hold NaN; a corrupt float input can);
- ``weights``: right after that step's optimizer update one parameter becomes ``value``, so the
  next checkpoint would hold non-finite weights.

``last_pt_before`` keeps the bytes of ``<run>/last.pt`` as they were when the fault fired: the last
good checkpoint, for the test to compare with what is on disk after the stop.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import torch

from ocrkit.core.engine import train_job
from ocrkit.core.engine import trainer as trainer_module
from ocrkit.core.engine.trainer import Trainer


@dataclass
class Fault:
    kind: str  # loss | grad | batch | weights
    step: int
    value: float = math.nan
    current: int = 0  # the optimizer step being taken
    fired: int = 0  # how many times the fault was applied
    poisoned_index: int | None = None  # batch: the dataset index of the poisoned sample
    parameter: str = ""  # grad, weights: the parameter's name
    last_pt_before: bytes | None = None
    run_dirs: list[Path] = field(default_factory=list)

    def due(self) -> bool:
        return self.current == self.step


def install(monkeypatch: pytest.MonkeyPatch, fault: Fault, probe: bool = False) -> Fault:
    """Arm ``fault`` on every Trainer built while ``monkeypatch`` is active. ``probe=False`` skips
    the precision probe of mixed modes (seconds of timing that has nothing to do with the guard):
    the run trains in the mode asked for."""
    if not probe:
        monkeypatch.setattr(train_job, "resolve_precision", lambda cfg, device: None)
    real_init = Trainer.__init__
    real_step = Trainer.optimizer_step

    def init(self: Trainer, *args: Any, **kwargs: Any) -> None:
        real_init(self, *args, **kwargs)
        fault.run_dirs.append(self.run_dir)
        _arm(self, fault)

    def optimizer_step(self: Trainer, micro_batches: list) -> Any:
        fault.current = self.state.step + 1
        if fault.due():
            last = self.run_dir / "last.pt"
            fault.last_pt_before = last.read_bytes() if last.is_file() else None
        taken = real_step(self, micro_batches)
        if fault.kind == "weights" and fault.due():
            name, param = next(iter(self.model.named_parameters()))
            with torch.no_grad():
                param.fill_(fault.value)
            fault.parameter, fault.fired = name, fault.fired + 1
        return taken

    monkeypatch.setattr(Trainer, "__init__", init)
    monkeypatch.setattr(Trainer, "optimizer_step", optimizer_step)
    if fault.kind == "batch":
        real_to_device = trainer_module.batch_to_device

        def to_device(batch: dict, device: torch.device, data_cfg: Any, maps_cfg: Any = None) -> dict:
            out = real_to_device(batch, device, data_cfg, maps_cfg)
            if fault.due() and not fault.fired:
                out["image"][0, :, 0, 0] = fault.value
                fault.poisoned_index, fault.fired = int(out["index"][0]), fault.fired + 1
            return out

        monkeypatch.setattr(trainer_module, "batch_to_device", to_device)
    return fault


def _arm(trainer: Trainer, fault: Fault) -> None:
    if fault.kind == "loss":
        real_loss = trainer.loss_fn

        def poisoned_loss(outputs: Any, batch: Any) -> dict[str, torch.Tensor]:
            terms = real_loss(outputs, batch)
            if fault.due():
                fault.fired += 1
                return {**terms, "loss": terms["loss"] * fault.value}
            return terms

        trainer.loss_fn = poisoned_loss  # type: ignore[assignment]
    elif fault.kind == "grad":
        name, param = next(iter(trainer.model.named_parameters()))
        fault.parameter = name

        def poisoned_grad(grad: torch.Tensor) -> torch.Tensor:
            if fault.due() and trainer.model.training:
                fault.fired += 1
                return torch.full_like(grad, fault.value)
            return grad

        param.register_hook(poisoned_grad)

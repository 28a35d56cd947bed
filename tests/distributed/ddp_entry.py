"""``python ddp_entry.py <ocrkit args>``: the ocrkit CLI with one fault planted in one rank, for
the distributed tests (run under torchrun). ``OCRKIT_TEST_FAULT=<kind>:<rank>:<step>``:

- ``raise``: that rank's loader raises an InputError when it fetches its first sample after
  ``step`` optimizer steps (a bad sample met mid-run on one shard);
- ``kill``: that rank SIGKILLs itself after optimizer step ``step`` (a lost machine or OOM kill);
- ``hang``: that rank sleeps for 10 minutes after step ``step`` (a stuck process);
- ``nan``: that rank's loss is NaN in optimizer step ``step + 1``.

Without the variable it is the plain CLI. The faults patch ocrkit from outside, as a test
would: nothing in the package knows about them.
"""

from __future__ import annotations

import os
import signal
import sys
import time


def plant(kind: str, rank: int, step: int) -> None:
    import torch

    from ocrkit.core.data.dataset import TrainDataset
    from ocrkit.core.engine import trainer as trainer_module
    from ocrkit.core.errors import InputError

    if int(os.environ["RANK"]) != rank:
        return
    steps = {"done": 0}
    after_step = trainer_module.Trainer.after_step

    def counting_after_step(self, taken, batches):
        after_step(self, taken, batches)
        steps["done"] = self.state.step
        if steps["done"] == step and kind == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        if steps["done"] == step and kind == "hang":
            time.sleep(600)

    trainer_module.Trainer.after_step = counting_after_step
    if kind == "raise":
        getitem = TrainDataset.__getitem__

        def failing_getitem(self, index):
            if steps["done"] >= step:
                raise InputError(self.samples[index].image_path, "planted fault: unreadable on this rank")
            return getitem(self, index)

        TrainDataset.__getitem__ = failing_getitem
    if kind == "nan":
        from ocrkit.core.model import loss as loss_module

        forward = loss_module.DBLoss.forward

        def nan_forward(self, outputs, batch):
            terms = forward(self, outputs, batch)
            if steps["done"] == step:
                terms = {**terms, "loss": terms["loss"] * torch.tensor(float("nan"))}
            return terms

        loss_module.DBLoss.forward = nan_forward


if __name__ == "__main__":
    fault = os.environ.get("OCRKIT_TEST_FAULT")
    if fault:
        kind, rank, step = fault.split(":")
        plant(kind, int(rank), int(step))
    from ocrkit.cli.app import main

    sys.argv = ["ocrkit", *sys.argv[1:]]
    main()

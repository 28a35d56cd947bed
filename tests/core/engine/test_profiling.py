"""The stage timer behind `ocrkit train --profile` (the option end to end: tests/cli/test_train_cmd.py)."""

import torch


def test_stage_timer_laps_add_up_to_the_elapsed_time():
    import time

    from ocrkit.core.engine.profiling import StageTimer, summary_line

    timer = StageTimer(torch.device("cpu"))
    start = time.perf_counter()
    timer.start()
    for _ in range(3):
        time.sleep(0.002)
        timer.mark("data")
        time.sleep(0.004)
        timer.mark("forward")
        timer.step_done()
    elapsed_ms = (time.perf_counter() - start) * 1000
    summary = timer.epoch_summary()
    assert summary["data"] >= 2 and summary["forward"] >= 4 and summary["loss"] == 0
    assert sum(summary.values()) * 3 <= elapsed_ms + 1e-6
    assert "forward" in summary_line(1, summary)
    assert timer.epoch_summary() == dict.fromkeys(summary, 0.0)  # reset after each epoch

"""The doctor's loader advice from measured rates (the command itself: tests/cli/test_doctor_cmd.py)."""

from ocrkit.core.bench.doctor import loader_advice


def test_loader_advice_follows_the_measured_rates():
    assert "data.num_workers = 4" in loader_advice(200.0, 15.0, 16, "cuda")  # 3 cores of work, +25%
    assert "data-bound" in loader_advice(500.0, 30.0, 4, "cuda")
    assert "data.num_workers = 1" in loader_advice(5.0, 20.0, 2, "cpu")

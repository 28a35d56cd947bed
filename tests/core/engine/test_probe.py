"""The precision probe: decisions from measured step times (made-up timings here), the two-stage
measurement, the per-machine cache, and `--precision auto` / the slow-mode warning end to end."""

import json

import pytest
import torch
from typer.testing import CliRunner

from conftest import FULL, TINY_TRAIN_W4, set_args
from conftest import fake_probe as probe
from ocrkit.cli.app import app
from ocrkit.core.config import ModelConfig
from ocrkit.core.engine import probe as probe_module
from ocrkit.core.engine.probe import (
    SCREEN_SHAPE,
    SKIP_RATIO,
    StepTimer,
    candidate_modes,
    decide,
    probe_precisions,
    run_probe,
)

# ------------------------------------------------------------------ decisions


def test_fast_bf16_on_cpu_is_chosen_by_auto():
    decision = decide("auto", probe(fp32=1.0, bf16=0.6))
    assert decision.mode == "bf16-mixed" and "1.67x" in decision.reason and decision.warning is None


def test_slow_bf16_on_cpu_keeps_32_and_warns_when_requested():
    slow = probe(fp32=1.0, bf16=11.7)
    auto = decide("auto", slow)
    assert auto.mode == "32-true" and "11.7x slower" in auto.reason
    explicit = decide("bf16-mixed", slow)
    assert explicit.mode == "bf16-mixed"  # the user asked: warned, not overruled
    assert "11.7x slower than 32-true" in explicit.warning and "--precision 32-true" in explicit.warning


def test_a_gain_within_the_tolerance_is_not_worth_reduced_precision():
    assert decide("auto", probe(fp32=1.0, bf16=0.95)).mode == "32-true"
    assert decide("bf16-mixed", probe(fp32=1.0, bf16=1.05)).warning is None  # within 10%: no warning


def test_fast_fp16_on_cuda_is_chosen_with_its_scaler_and_bf16_only_where_supported():
    no_bf16 = probe("cuda", bf16_supported=False, fp32=1.0, fp16=0.5, bf16=0.4)
    assert candidate_modes("cuda", False) == ["32-true", "16-mixed"]
    assert decide("auto", no_bf16).mode == "16-mixed"  # bf16 is faster but the GPU has no bf16
    both = probe("cuda", bf16_supported=True, fp32=1.0, fp16=0.5, bf16=0.52)
    assert decide("auto", both).mode == "bf16-mixed"  # within 10% of fp16: no scaler needed
    fp16_much_faster = probe("cuda", bf16_supported=True, fp32=1.0, fp16=0.3, bf16=0.6)
    assert decide("auto", fp16_much_faster).mode == "16-mixed"


def test_fp16_is_never_an_auto_candidate_on_cpu():
    assert decide("auto", probe(fp32=1.0, fp16=0.2, bf16=2.0)).mode == "32-true"


def test_a_failure_inside_the_probe_is_reported_not_raised():
    failed = probe(fp32=1.0, bf16=RuntimeError("no bf16 kernel"))
    assert decide("auto", failed).mode == "32-true"
    explicit = decide("bf16-mixed", failed)
    assert explicit.mode == "bf16-mixed" and "no bf16 kernel" in explicit.warning
    no_reference = probe(fp32=RuntimeError("out of memory"), bf16=0.5)
    assert decide("auto", no_reference).mode == "32-true"
    assert "out of memory" in decide("auto", no_reference).reason


# ------------------------------------------------------------------ measuring


class FakeMeasure:
    """Seconds per step by mode, 10x less at the screen shape; records every call."""

    def __init__(self, **seconds):
        self.seconds = seconds
        self.calls: list[tuple[str, tuple]] = []

    def __call__(self, mode, shape):
        self.calls.append((mode, shape))
        value = self.seconds[mode]
        if isinstance(value, Exception):
            raise value
        return value / 10 if shape == SCREEN_SHAPE else value


def test_a_mode_screened_as_far_too_slow_is_never_run_at_full_size():
    measure = FakeMeasure(**{"32-true": 1.0, "bf16-mixed": SKIP_RATIO * 2, "16-mixed": 0.5})
    result = run_probe(["bf16-mixed", "16-mixed"], FULL, "cpu", "cpu", measure)
    assert ("bf16-mixed", FULL) not in measure.calls and ("16-mixed", FULL) in measure.calls
    assert result.timings["bf16-mixed"].full_s is None and result.slowdown("bf16-mixed") == pytest.approx(10)
    assert list(result.timings) == ["32-true", "bf16-mixed", "16-mixed"]  # the reference first


def test_an_exception_in_one_mode_leaves_the_others_measured():
    measure = FakeMeasure(**{"32-true": 1.0, "bf16-mixed": RuntimeError("boom\nsecond line")})
    result = run_probe(["bf16-mixed"], FULL, "cpu", "cpu", measure)
    assert result.timings["32-true"].full_s == 1.0
    assert result.timings["bf16-mixed"].error == "RuntimeError: boom"


def test_probe_results_are_cached_per_machine_and_model(tmp_path):
    cfg = ModelConfig(base_width=4, inner_channels=16, head_channels=4)
    first = FakeMeasure(**{"32-true": 1.0, "bf16-mixed": 0.5, "16-mixed": 0.7})
    result = probe_precisions(cfg, 2, (64, 64), torch.device("cpu"), ["bf16-mixed"], tmp_path, measure=first)
    assert not result.cached and len(first.calls) == 4  # screen + full for each
    again = FakeMeasure(**{"32-true": 9.0, "bf16-mixed": 9.0, "16-mixed": 9.0})
    cached = probe_precisions(cfg, 2, (64, 64), torch.device("cpu"), ["bf16-mixed"], tmp_path, measure=again)
    assert cached.cached and not again.calls and cached.timings["bf16-mixed"].full_s == 0.5
    # a mode not cached yet is measured (with the reference), and the cache keeps both
    more = probe_precisions(cfg, 2, (64, 64), torch.device("cpu"), ["16-mixed"], tmp_path, measure=again)
    assert {m for m, _ in again.calls} == {"32-true", "16-mixed"} and set(more.timings) >= {"bf16-mixed", "16-mixed"}
    # another model shape is another entry
    other = FakeMeasure(**{"32-true": 2.0, "bf16-mixed": 2.0})
    wider = ModelConfig(base_width=8, inner_channels=16, head_channels=4)
    assert not probe_precisions(wider, 2, (64, 64), torch.device("cpu"), ["bf16-mixed"], tmp_path, measure=other).cached
    # a damaged file is measured again
    for path in (tmp_path / "probe").glob("*.json"):
        path.write_text("{not json")
    fresh = FakeMeasure(**{"32-true": 1.0, "bf16-mixed": 0.5})
    assert not probe_precisions(cfg, 2, (64, 64), torch.device("cpu"), ["bf16-mixed"], tmp_path, measure=fresh).cached


def test_the_real_step_timer_times_a_tiny_model_and_leaves_the_rng_alone():
    cfg = ModelConfig(base_width=4, inner_channels=16, head_channels=4)
    timer = StepTimer(cfg, torch.device("cpu"), repeats=2)
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    seconds = timer("32-true", (1, 3, 64, 64))
    assert seconds > 0 and torch.equal(torch.rand(3), expected)
    assert all(p.grad is None for p in timer.model.parameters())


# ------------------------------------------------------------------ end to end

runner = CliRunner()
TINY = [*TINY_TRAIN_W4, *set_args("health.overflow_probe=false")]


def train(synth, tmp_path, *extra):
    return runner.invoke(
        app,
        [
            "train",
            "--data",
            str(synth / "train"),
            "--val-data",
            str(synth / "val"),
            "--device",
            "cpu",
            "--epochs",
            "1",
            "--set",
            f"log.dir={tmp_path}",
            *TINY,
            *[str(e) for e in extra],
        ],
    )


def test_auto_on_cpu_picks_a_measured_mode_says_why_and_records_it(synth, tmp_path):
    result = train(synth, tmp_path, "--precision", "auto", "--name", "auto")
    assert result.exit_code == 0, result.output
    run_dir = tmp_path / "train" / "auto"
    decision = json.loads((run_dir / "precision.json").read_text())
    assert decision["requested"] == "auto" and decision["resolved"] in ("32-true", "bf16-mixed")
    assert decision["probe"]["timings"]["32-true"]["full_s"] > 0
    assert f"precision: auto -> {decision['resolved']}" in result.output
    assert f'precision = "{decision["resolved"]}"' in (run_dir / "config.toml").read_text()


class SlowBf16Timer:
    def __init__(self, *args, **kwargs):
        pass

    def __call__(self, mode, shape):
        return {"32-true": 0.01, "bf16-mixed": 0.2, "16-mixed": 0.3}[mode]


def test_a_requested_mode_measured_slower_warns_with_the_ratio(synth, tmp_path, monkeypatch):
    monkeypatch.setattr(probe_module, "StepTimer", SlowBf16Timer)
    result = train(
        synth,
        tmp_path / "fresh-cache",
        "--precision",
        "bf16",
        "--name",
        "slow",
        "--set",
        f"cache.dir={tmp_path / 'cache'}",
    )
    assert result.exit_code == 0, result.output
    assert "bf16-mixed measured 20.0x slower than 32-true" in result.output
    assert "use --precision 32-true" in result.output
    assert 'precision = "bf16-mixed"' in (tmp_path / "fresh-cache" / "train" / "slow" / "config.toml").read_text()


class FastBf16Timer(SlowBf16Timer):
    def __call__(self, mode, shape):
        return {"32-true": 0.2, "bf16-mixed": 0.1, "16-mixed": 0.3}[mode]


def test_a_trainer_built_directly_resolves_auto_too(synth, tmp_path, monkeypatch):
    # benches build trainers without `ocrkit train`; "auto" must never reach the policy unresolved
    from ocrkit.core.config import load_config
    from ocrkit.core.data.formats import load_dataset
    from ocrkit.core.data.train_data import TrainData
    from ocrkit.core.engine.trainer import Trainer

    monkeypatch.setattr(probe_module, "StepTimer", FastBf16Timer)
    cfg = load_config(
        overrides=[
            "train.precision=auto",
            f"cache.dir={tmp_path / 'cache'}",
            "model.base_width=4",
            "model.inner_channels=16",
            "model.head_channels=4",
            "data.train_size=[64,64]",
        ]
    )
    samples = load_dataset(str(synth / "train")).samples
    trainer = Trainer(cfg, tmp_path, TrainData(cfg, samples, []), torch.device("cpu"))
    assert trainer.policy.precision == "bf16-mixed" and trainer.cfg.train.precision == "bf16-mixed"

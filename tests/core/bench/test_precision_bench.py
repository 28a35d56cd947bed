"""The fp16-vs-fp32 bench's logic without training: verdicts against the tolerance, the precision list,
and which modes the probe has measured too slow to be worth running."""

import pytest

from conftest import fake_probe as probe
from ocrkit.core.bench.precision import PrecisionRun, _judge, parse_precisions, too_slow
from ocrkit.core.engine.probe import SKIP_RATIO
from ocrkit.core.errors import OcrkitError


def run_row(precision, hmean, reason=""):
    return PrecisionRun(
        precision=precision,
        steps=10,
        images_per_s=5.0,
        speedup=None,
        step_images_per_s=6.0,
        step_speedup=None,
        peak_memory_mib=None,
        memory_kind="process RSS",
        final_loss=1.0,
        precision_=0.9,
        recall=0.9,
        hmean=hmean,
        delta_hmean=None,
        skipped_steps=0,
        min_scale=None,
        verdict="",
        reason=reason,
        run_dir="x",
    )


def test_verdicts_follow_the_tolerance_and_health_stops():
    runs = [
        run_row("32-true", 0.90),
        run_row("bf16-mixed", 0.895),
        run_row("16-mixed", 0.87),
        run_row("16-mixed", 0.90, reason="health stop: loss scale fell"),
    ]
    _judge(runs, tolerance=0.01)
    assert [r.verdict for r in runs] == ["REF", "PASS", "FAIL", "FAIL"]
    assert "tolerance" in runs[2].reason and runs[1].delta_hmean == pytest.approx(-0.005)
    untrained = [run_row("32-true", 0.0), run_row("bf16-mixed", 0.0)]
    _judge(untrained, tolerance=0.01)
    assert untrained[1].verdict == "INCONCLUSIVE" and "train longer" in untrained[1].reason


def test_precision_list_needs_the_reference():
    assert parse_precisions("bf16, 32") == ["32-true", "bf16-mixed"]
    with pytest.raises(OcrkitError, match="must include 32-true"):
        parse_precisions("16,bf16")
    with pytest.raises(OcrkitError, match="unknown fp8"):
        parse_precisions("32,fp8")


def test_precision_list_uses_the_config_aliases(monkeypatch):
    import ocrkit.core.bench.precision as bench_precision
    from ocrkit.core.config import PRECISION_ALIASES, TrainConfig, normalize_precision

    for alias, full in PRECISION_ALIASES.items():
        assert parse_precisions(f"32,{alias}")[-1] == full == TrainConfig(precision=alias).precision
    seen = []
    monkeypatch.setattr(bench_precision, "normalize_precision", lambda n: seen.append(n) or normalize_precision(n))
    assert parse_precisions(" bf16 ,32,") == ["32-true", "bf16-mixed"] and seen == ["bf16", "32"]


def test_the_bench_skips_modes_measured_far_slower_unless_forced():
    slow = probe(fp32=1.0, bf16=SKIP_RATIO + 1, fp16=1.2)
    skip = too_slow(slow, ["32-true", "bf16-mixed", "16-mixed"])
    assert list(skip) == ["bf16-mixed"] and "--force" in skip["bf16-mixed"]
    assert "could not run" in too_slow(probe(fp32=1.0, bf16=RuntimeError("x")), ["32-true", "bf16-mixed"])["bf16-mixed"]

"""ocrkit bench fp16-vs-fp32 in a tiny mode: the comparison runs end to end (numbers not asserted)."""

import json

import pytest
from typer.testing import CliRunner

from ocrkit.cli.app import app
from ocrkit.core.bench.precision import PrecisionRun, _judge, parse_precisions
from ocrkit.core.errors import OcrkitError

runner = CliRunner()
TINY = [
    "--set",
    "model.base_width=4",
    "--set",
    "model.inner_channels=16",
    "--set",
    "model.head_channels=4",
    "--set",
    "data.train_size=[64,64]",
    "--set",
    "data.eval_size=[128,160]",
    "--set",
    "data.num_workers=0",
    "--set",
    "train.batch_size=4",
    "--set",
    "train.overlays=0",
    "--set",
    "log.tensorboard=false",
]


def test_bench_trains_every_precision_from_the_same_start_and_reports(synth, tmp_path):
    out = tmp_path / "bench.json"
    result = runner.invoke(
        app,
        [
            "bench",
            "fp16-vs-fp32",
            "--precisions",
            "bf16,16,32",
            "--steps",
            "3",
            "--quiet",
            "--force",
            "--json",
            str(out),
            "--data",
            str(synth / "train"),
            "--val-data",
            str(synth / "val"),
            "--device",
            "cpu",
            "--set",
            f"log.dir={tmp_path}",
            *TINY,
        ],
    )
    assert result.exit_code == 0, result.output
    assert "ΔH" in result.output and "verdict" in result.output
    doc = json.loads(out.read_text())
    rows = {r["precision"]: r for r in doc["results"]}
    assert list(rows) == ["32-true", "bf16-mixed", "16-mixed"]  # the reference first
    assert rows["32-true"]["verdict"] == "REF" and rows["32-true"]["speedup"] == pytest.approx(1.0)
    for row in rows.values():
        assert row["steps"] == 3 and row["images_per_s"] > 0 and row["hmean"] is not None
        # the step alone is at least as fast as the step plus the wait for its data
        assert row["step_images_per_s"] >= row["images_per_s"]
        assert row["delta_hmean"] == pytest.approx(row["hmean"] - rows["32-true"]["hmean"])
        assert row["verdict"] in ("REF", "PASS", "FAIL", "INCONCLUSIVE")
    assert rows["16-mixed"]["min_scale"] is not None and rows["bf16-mixed"]["min_scale"] is None
    assert (tmp_path / "bench" / "fp16-vs-fp32" / "results.json").is_file()
    assert (tmp_path / "bench" / "fp16-vs-fp32" / "bf16-mixed" / "last.pt").is_file()


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


def test_strict_exits_non_zero_on_a_fail(synth, tmp_path):
    # a health stop (every step masked as skipped is hard to plant from the CLI; a zero skip-rate
    # budget with a scale floor above the initial scale fails 16-mixed at its first step)
    result = runner.invoke(
        app,
        [
            "bench",
            "fp16-vs-fp32",
            "--precisions",
            "32,16",
            "--steps",
            "2",
            "--quiet",
            "--strict",
            "--force",
            "--data",
            str(synth / "train"),
            "--val-data",
            str(synth / "val"),
            "--device",
            "cpu",
            "--set",
            f"log.dir={tmp_path}",
            "--set",
            "health.min_scale=1e9",
            *TINY,
        ],
    )
    assert result.exit_code == 1, result.output
    assert "FAIL" in result.output and "loss scale fell" in result.output


def test_bench_profile_tiny_mode_reports_overhead_and_identical_losses(synth, tmp_path):
    out = tmp_path / "profile.json"
    result = runner.invoke(
        app,
        [
            "bench",
            "profile",
            "--steps",
            "4",
            "--repeats",
            "2",
            "--quiet",
            "--json",
            str(out),
            "--set",
            f"data.train={synth / 'train'}",
            "--set",
            f"data.val={synth / 'val'}",
            "--set",
            f"log.dir={tmp_path}",
            *TINY,
        ],
    )
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())["result"]
    assert report["identical_losses"] is True  # the timer observes; it never changes the run
    assert report["off_step_ms"] > 0 and report["on_step_ms"] > 0
    assert report["overhead"] == pytest.approx(report["on_step_ms"] / report["off_step_ms"] - 1)
    assert set(report["breakdown_ms"]) == {"data", "forward", "loss", "backward", "optimizer", "logging"}
    assert (tmp_path / "bench" / "profile" / "profile.json").is_file()


def test_bench_data_tiny_mode_times_every_source_and_worker_count(synth, tmp_path):
    out = tmp_path / "data.json"
    result = runner.invoke(
        app,
        [
            "bench",
            "data",
            "--workers",
            "0,1",
            "--epoch-images",
            "8",
            "--repeats",
            "1",
            "--model-steps",
            "3",
            "--quiet",
            "--json",
            str(out),
            "--set",
            f"data.train={synth / 'train'}",
            "--set",
            f"log.dir={tmp_path}",
            *TINY,
        ],
    )
    assert result.exit_code == 0, result.output
    doc = json.loads(out.read_text())
    loader = doc["result"]["loader"]
    assert [(r["source"], r["workers"]) for r in loader] == [
        ("files", 0),
        ("files", 1),
        ("store", 0),
        ("store", 1),
        ("preload", 0),
        ("preload", 1),
    ]
    for row in loader:
        assert row["images_per_epoch"] == 8 and row["epoch_images_per_s"] > 0 and row["first_batch_ms"] > 0
    model = doc["result"]["model"]
    assert [r["workers"] for r in model] == [0, 1]
    assert all(r["step_images_per_s"] >= r["train_images_per_s"] > 0 for r in model)
    assert doc["result"]["maps_from_store"] is False  # random augmentation: maps are made per sample
    assert "img/s" in doc["verdict"]
    assert (tmp_path / "bench" / "data" / "scratch-store").is_dir()  # the user's store is not touched


def test_bench_data_rejects_unknown_sources(tmp_path):
    result = runner.invoke(app, ["bench", "data", "--sources", "files,disk", "--set", f"log.dir={tmp_path}"])
    assert result.exit_code != 0 and "--sources: unknown disk" in result.output


def test_bench_data_rejects_bad_worker_counts(tmp_path):
    result = runner.invoke(app, ["bench", "data", "--workers", "0,two", "--set", f"log.dir={tmp_path}"])
    assert result.exit_code != 0 and "--workers: expected comma-separated counts" in result.output

"""`ocrkit bench` in tiny modes: fp16-vs-fp32, profile, data, maps and cache run end to end and write
their JSON (numbers not asserted: benchmarks, not tests); bad option values are one-line errors."""

import json

import pytest
from typer.testing import CliRunner

from conftest import TINY_TRAIN_W4
from ocrkit.cli.app import app
from ocrkit.core.data.synth import generate_synthetic

runner = CliRunner()


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


TINY = TINY_TRAIN_W4


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
        # TFLOP/s from the same FLOPs per image at each precision's img/s; MFU against the peak
        # measured on this CPU: float32's, or a 16-bit matmul's where that is faster
        assert row["tflops"] / row["images_per_s"] == pytest.approx(
            rows["32-true"]["tflops"] / rows["32-true"]["images_per_s"]
        )
        assert row["mfu"] == pytest.approx(row["tflops"] / row["peak_tflops"])
    assert all(rows[p]["peak_source"].startswith("measured: ") for p in rows)
    assert "float16" in rows["16-mixed"]["peak_source"] and "bfloat16" in rows["bf16-mixed"]["peak_source"]
    assert "MFU" in result.output
    assert rows["16-mixed"]["min_scale"] is not None and rows["bf16-mixed"]["min_scale"] is None
    assert (tmp_path / "bench" / "fp16-vs-fp32" / "results.json").is_file()
    assert (tmp_path / "bench" / "fp16-vs-fp32" / "bf16-mixed" / "last.pt").is_file()


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
    # utilisation: the step's FLOPs counted once, TFLOP/s at the measured rate, MFU against the
    # CPU's measured matmul peak
    assert report["flops_per_image"] > 0 and report["achieved_tflops"] > 0
    assert report["peak_tflops"] > 0 and report["mfu"] == pytest.approx(
        report["achieved_tflops"] / report["peak_tflops"]
    )
    assert "MFU" in result.output
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
    sources = [("files", 0), ("files", 1), ("store", 0), ("store", 1), ("preload", 0), ("preload", 1)]
    expected = [(pipeline, *variant) for pipeline in ("albumentations", "fused") for variant in sources]
    assert [(r["pipeline"], r["source"], r["workers"]) for r in loader] == expected
    for row in loader:
        assert row["images_per_epoch"] == 8 and row["epoch_images_per_s"] > 0 and row["first_batch_ms"] > 0
    stages = doc["result"]["stages"]
    assert [(r["pipeline"], r["source"]) for r in stages] == [
        (p, s) for p in ("albumentations", "fused") for s in ("files", "store", "preload")
    ]
    for row in stages:  # the lap timer: the stages add up to the whole
        ms = row["ms_per_image"]
        assert set(ms) == {"read", "geometric", "photometric", "maps", "tensors", "collate", "to device"}
        assert sum(ms.values()) == pytest.approx(row["whole_ms_per_image"], rel=1e-9)
        assert row["loader_ms_per_image"] == pytest.approx(row["whole_ms_per_image"] - ms["to device"], rel=1e-9)
        assert row["images_per_core_s"] == pytest.approx(1e3 / row["loader_ms_per_image"])
        assert all(ms[stage] > 0 for stage in ("geometric", "maps", "collate", "to device"))
    assert "fused vs albumentations images per core" in doc["stage_speedup"]
    model = doc["result"]["model"]
    assert [r["workers"] for r in model] == [0, 1]
    assert all(r["step_images_per_s"] >= r["train_images_per_s"] > 0 for r in model)
    assert doc["result"]["flops_per_image"] > 0 and doc["result"]["peak_tflops"] > 0  # CPU: measured
    for row in model:
        assert row["train_tflops"] == pytest.approx(doc["result"]["flops_per_image"] * row["train_images_per_s"] / 1e12)
        assert row["train_mfu"] == pytest.approx(row["train_tflops"] / doc["result"]["peak_tflops"])
    assert "MFU" in result.output and "img/s per core" in result.output
    assert doc["result"]["maps_from_store"] is False  # random augmentation: maps are made per sample
    assert "img/s" in doc["verdict"]
    assert (tmp_path / "bench" / "data" / "scratch-store").is_dir()  # the user's store is not touched


def test_bench_data_rejects_unknown_sources(tmp_path):
    result = runner.invoke(app, ["bench", "data", "--sources", "files,disk", "--set", f"log.dir={tmp_path}"])
    assert result.exit_code != 0 and "--sources: unknown disk" in result.output


def test_bench_data_rejects_unknown_pipelines(tmp_path):
    result = runner.invoke(app, ["bench", "data", "--pipelines", "fused,kornia", "--set", f"log.dir={tmp_path}"])
    assert result.exit_code != 0 and "--pipelines: unknown kornia" in result.output


def test_bench_data_rejects_bad_worker_counts(tmp_path):
    result = runner.invoke(app, ["bench", "data", "--workers", "0,two", "--set", f"log.dir={tmp_path}"])
    assert result.exit_code != 0 and "--workers: expected comma-separated counts" in result.output


def test_bench_maps_tiny_mode(icdar_sample, tmp_path):
    out = tmp_path / "maps.json"
    result = run(
        "bench", "maps", "--sample-dir", icdar_sample, "--size", 128, 128, "--images", 1, "--repeats", 1, "--json", out
    )
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    cases = [r["case"] for r in report["results"]]
    assert cases[:3] == [
        "dense: 100 rotated quads",
        "sparse: ICDAR-2015 sample",
        "many-vertex: 30 polygons of 16-32 points",
    ]
    assert cases[3:] == [
        "count: 10 quads",
        "count: 100 quads",
        "count: 1000 quads",
        "size: 320x320, 100 quads",
        "size: 640x640, 100 quads",
        "size: 1280x1280, 100 quads",
    ]
    assert all(r["binary_maps_identical"] and r["max_thresh_diff"] <= 1e-3 for r in report["results"])
    assert report["machine"]["cpu_count"] >= 1


def test_bench_cache_runs_all_three_variants_and_writes_json(tmp_path):
    generate_synthetic(tmp_path / "synth", n_train=6, n_val=2, size=(96, 128), seed=0, progress=False)
    store_at = ["--set", f"cache.dir={tmp_path / 'cache'}"]
    sizes = ["--set", "data.train_size=[64,64]", "--set", "data.eval_size=[96,128]"]
    tiny = [
        *("--set", "model.base_width=8", "--set", "model.inner_channels=32", "--set", "model.head_channels=8"),
        *sizes,
        *("--set", "data.num_workers=0", "--set", "train.overlays=0", "--set", "train.eval_batch_size=2"),
    ]
    out = tmp_path / "bench.json"
    result = run(
        "bench",
        "cache",
        "--data",
        tmp_path / "synth" / "val",
        "--repeats",
        1,
        "--quiet",
        "--json",
        out,
        *store_at,
        *tiny,
    )
    assert result.exit_code == 0, result.output
    assert "warm speed-up vs cold" in result.output and "validation pass" in result.output
    doc = json.loads(out.read_text())
    rows = {r["scope"]: r for r in doc["results"]}
    assert set(rows) == {"data path", "validation pass"}
    for row in rows.values():  # timings are not asserted (benchmarks, not tests); their bookkeeping is
        assert row["images"] == 2 and row["none_s"] > 0 and row["cold_s"] > 0 and row["warm_s"] > 0
        assert row["warm_speedup"] == pytest.approx(row["cold_s"] / row["warm_s"])
        assert row["store_bytes"] > 0
    # the bench works in a scratch store beside the configured one and leaves nothing behind
    status = run("cache", "status", "--json", *store_at, *sizes)
    assert json.loads(status.output)["entries"] == 0


def test_bench_ddp_tiny_mode_runs_train_devices_and_reports_global_rates(synth, tmp_path):
    """One process through the launcher (the two-process path is tests/distributed's): the run's
    own metrics.csv gives the rates, the table and the JSON report them."""
    out = tmp_path / "ddp.json"
    settings = ["--set", f"data.train={synth / 'train'}", "--set", f"log.dir={tmp_path}", "--set", "train.device=cpu"]
    result = run(
        "bench", "ddp", "--processes", "1", "--steps", "5", "--repeats", "1", "-q", "--json", out, *settings, *TINY
    )
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    (row,) = report["result"]["results"]
    assert row["processes"] == 1 and row["efficiency"] == 1.0 and row["images_per_s"] > 0
    assert len(row["per_run_images_per_s"]) == 1
    assert (tmp_path / "bench" / "ddp" / "train" / "p1-r0" / "last.pt").exists()  # a real training run


@pytest.mark.parametrize("value", ["0,2", "a", ""])
def test_bench_ddp_rejects_bad_process_counts(value):
    result = run("bench", "ddp", "--processes", value)
    assert result.exit_code != 0 and "--processes: expected comma-separated counts of at least 1" in result.output


def test_bench_predict_tiny_mode_times_every_stage_for_both_runtimes(synth, tmp_path):
    """A tiny checkpoint on the synthetic val images: PyTorch and onnxruntime at batch 1 and 2,
    every stage timed, the stages adding up to the staged rate, the JSON written."""
    pytest.importorskip("onnxruntime", reason="the onnx extra is not installed")
    from conftest import tiny_cfg
    from ocrkit.core.engine.checkpoint import save_checkpoint
    from ocrkit.core.model import build_model

    cfg = tiny_cfg("data.eval_size=[128,160]")
    checkpoint = tmp_path / "model.pt"
    save_checkpoint(checkpoint, {"model": build_model(cfg.model).state_dict(), "config": cfg.model_dump(mode="json")})
    out = tmp_path / "predict.json"
    options = ["--checkpoint", checkpoint, "--batch-sizes", "1,2", "--repeats", "1", "--json", out]
    result = run("bench", "predict", synth / "val" / "images", *options, "--set", f"log.dir={tmp_path}")
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())["result"]
    assert report["images"] == 4 and report["eval_size"] == [128, 160]
    variants = {(v["runtime"], v["batch_size"]) for v in report["variants"]}
    assert variants == {("torch", 1), ("torch", 2), ("onnxruntime", 1), ("onnxruntime", 2)}
    for v in report["variants"]:
        stages = v["stage_ms_per_image"]
        assert set(stages) == {"decode", "resize", "model", "post"} and all(ms > 0 for ms in stages.values())
        # the staged rate is the stages one after another
        assert 1000 / sum(stages.values()) == pytest.approx(v["images_per_s"], rel=0.05)
        assert v["latency_ms"]["p50"] <= v["latency_ms"]["p90"] <= v["latency_ms"]["p99"]
    assert "slowest stage" in result.output


def test_bench_maps_times_the_device_maps_beside_numba(tmp_path):
    out = tmp_path / "maps.json"
    args = ["--size", 128, 160, "--images", 2, "--repeats", 1, "--no-growth", "--device-maps", "cpu"]
    result = run("bench", "maps", *args, "--json", out)
    assert result.exit_code == 0, result.output
    rows = json.loads(out.read_text())["results"]
    assert [r["case"] for r in rows] == ["dense: 100 rotated quads", "many-vertex: 30 polygons of 16-32 points"]
    for row in rows:
        assert row["device"] == "cpu" and row["device_masks_identical"] and row["device_max_thresh_diff"] <= 1e-3
        assert row["device_plan_ms"] > 0 and row["device_draw_ms"] > 0
        assert row["device_speedup"] == pytest.approx(
            row["production_ms"] / (row["device_plan_ms"] + row["device_draw_ms"])
        )
    assert "batched torch maps on cpu" in result.output

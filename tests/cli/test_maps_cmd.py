"""Every command through the real Typer app (CliRunner): outputs, JSON, one-line errors."""

import json

import numpy as np
from typer.testing import CliRunner

from ocrkit.cli.app import app
from ocrkit.core.data.formats import load_icdar_dir, write_predictions

runner = CliRunner()


def run(*args, env=None):
    return runner.invoke(app, [str(a) for a in args], env=env)


def assert_one_line_error(result, *fragments):
    assert result.exit_code != 0
    assert result.exception is None or isinstance(result.exception, SystemExit)
    lines = [line for line in result.output.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), result.output
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in lines[0]


def test_config_show_precedence_through_cli(tmp_path):
    (tmp_path / "c.toml").write_text("[train]\nlr = 0.05\nepochs = 3\n")
    result = run(
        "config",
        "show",
        "--config",
        tmp_path / "c.toml",
        "--set",
        "train.epochs=4",
        env={"OCRKIT_TRAIN__LR": "0.02", "OCRKIT_MODEL__BACKBONE": "resnet50"},
    )
    assert result.exit_code == 0, result.output
    assert "lr = 0.02" in result.output and "epochs = 4" in result.output
    assert 'backbone = "resnet50"' in result.output


def test_config_errors_are_one_line():
    assert_one_line_error(run("config", "show", "--set", "train.lr=abc"), "train.lr")
    assert_one_line_error(run("config", "show", "--set", "train.nope=1"), "train.nope: unknown key")
    assert_one_line_error(run("config", "show", "--config", "/no/such.toml"), "/no/such.toml")


def test_eval_scores_prediction_files(icdar_sample, tmp_path):
    for sample in load_icdar_dir(icdar_sample).samples:
        care = [p for p, ignore in zip(sample.polygons, sample.ignore, strict=True) if not ignore]
        write_predictions(tmp_path / f"res_{sample.stem}.txt", care, [0.9] * len(care))
    result = run("eval", "--gt-dir", icdar_sample / "gts", "--pred-dir", tmp_path, "--json")
    assert result.exit_code == 0, result.output
    scores = json.loads(result.output)
    assert (scores["precision"], scores["recall"], scores["hmean"]) == (1.0, 1.0, 1.0)
    assert scores["gt_care"] == 21 and scores["images"] == 10
    (tmp_path / "res_img_1.txt").unlink()
    table = run("eval", "--gt-dir", icdar_sample, "--pred-dir", tmp_path)
    assert table.exit_code == 0 and "precision" in table.output and "0.8095" in table.output  # 17/21


def test_eval_on_made_data_and_errors(tiny_icdar, tmp_path):
    preds = tmp_path / "preds"
    preds.mkdir()
    write_predictions(preds / "res_img_0.txt", [np.array([[0, 0], [10, 0], [10, 10], [0, 10]], np.float32)])
    result = run("eval", "--gt-dir", tiny_icdar, "--pred-dir", preds, "--json")
    scores = json.loads(result.output)
    assert scores["precision"] == 0.0 and scores["recall"] == 0.0 and scores["det_care"] == 1
    (preds / "res_img_0.txt").write_text("1,2,3\n")
    assert_one_line_error(run("eval", "--gt-dir", tiny_icdar, "--pred-dir", preds), "res_img_0.txt:1")
    assert_one_line_error(run("eval", "--gt-dir", tmp_path / "none", "--pred-dir", preds), "not found")


def test_maps_show_writes_npz_and_overlays(tiny_icdar, tmp_path):
    result = run(
        "maps",
        "show",
        tiny_icdar / "images" / "img_0.png",
        "--gt",
        tiny_icdar / "gts" / "gt_img_0.txt",
        "--size",
        128,
        160,
        "--out",
        tmp_path / "out",
    )
    assert result.exit_code == 0, result.output
    maps = np.load(tmp_path / "out" / "img_0_maps.npz")
    assert set(maps.files) == {"shrink", "shrink_mask", "thresh", "thresh_mask"}
    assert all(maps[k].shape == (128, 160) and maps[k].dtype == np.float32 for k in maps.files)
    assert maps["shrink"].sum() > 0
    for key in maps.files:
        assert (tmp_path / "out" / f"img_0_{key}.png").stat().st_size > 0
    missing = run("maps", "show", tmp_path / "nope.png", "--gt", tiny_icdar / "gts" / "gt_img_0.txt", "--out", tmp_path)
    assert_one_line_error(missing, "nope.png")


def test_data_synth_then_maps_check(tmp_path):
    result = run(
        "data", "synth", tmp_path / "synth", "--train", 2, "--val", 6, "--size", 256, 320, "--seed", 3, "--quiet"
    )
    assert result.exit_code == 0, result.output
    assert len(list((tmp_path / "synth" / "val" / "images").iterdir())) == 6
    check = run("maps", "check", "--data", tmp_path / "synth" / "val", "--json", "--set", "data.eval_size=[256,320]")
    assert check.exit_code == 0, check.output
    scores = json.loads(check.output)
    assert scores["gt_care"] > 0 and scores["hmean"] >= 0.95
    assert_one_line_error(run("data", "synth", tmp_path / "bad", "--train", -1), "train")


def test_maps_commands_without_data_give_one_line_errors(tmp_path):
    """No Typer usage box: the same one-line error every other command gives."""
    unset = {"OCRKIT_DATA__VAL": None, "OCRKIT_DATA__TRAIN": None}  # data.val and data.train at their default: unset
    for command, key in (("check", "data.val"), ("precompute", "data.train")):
        result = run("maps", command, env=unset)
        assert_one_line_error(result, "--data", key)
        assert "Usage:" not in result.output and "╭" not in result.output


def test_maps_check_missing_data_and_skip_bad(tiny_icdar, tmp_path):
    assert_one_line_error(run("maps", "check", "--data", tmp_path / "absent"), "data path not found")
    (tiny_icdar / "gts" / "gt_img_1.txt").write_text("broken\n")
    assert_one_line_error(run("maps", "check", "--data", tiny_icdar), "gt_img_1.txt:1")
    skipped = run("maps", "check", "--data", tiny_icdar, "--json", "--skip-bad", "--set", "data.eval_size=[256,256]")
    assert skipped.exit_code == 0
    assert "skipped 1 bad sample" in skipped.output
    assert json.loads(skipped.output.strip().splitlines()[-1])["images"] == 2


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


def test_version():
    result = run("--version")
    assert result.exit_code == 0 and result.output.startswith("ocrkit ")

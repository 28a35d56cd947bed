"""`ocrkit maps show` and `ocrkit maps check` through the real Typer app: outputs and one-line errors."""

import json

import numpy as np
from typer.testing import CliRunner

from conftest import assert_one_line_error, run

runner = CliRunner()


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

"""`ocrkit data synth`: a synthetic set that `ocrkit maps check` scores as learnable; bad counts are
one-line errors."""

import json

from typer.testing import CliRunner

from conftest import assert_one_line_error, run

runner = CliRunner()


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

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


def test_data_check_reads_every_rule_and_skips_bad_samples_on_request(tiny_icdar):
    good = run("data", "check", tiny_icdar)
    assert good.exit_code == 0, good.output
    assert (
        good.output.strip()
        == f"{tiny_icdar}: 3 samples, 9 text regions (3 don't-care), 0 bad samples skipped, 0 kinds of warnings"
    )
    (tiny_icdar / "gts" / "gt_img_1.txt").write_text("1,2,3,4,5,6,7,8,9,word\n")
    assert_one_line_error(run("data", "check", tiny_icdar), "gt_img_1.txt:1: odd number of coordinates (9)")
    skipped = run("data", "check", tiny_icdar, "--skip-bad")
    assert skipped.exit_code == 0, skipped.output
    lines = skipped.output.strip().splitlines()
    assert lines[0].startswith("warning: skipping bad sample: ") and "gt_img_1.txt:1" in lines[0]
    assert lines[1] == f"warning: {tiny_icdar}: skipped 1 bad sample(s)"
    assert lines[2].startswith(f"{tiny_icdar}: 2 samples, ") and len(lines) == 3

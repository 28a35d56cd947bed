"""`ocrkit eval`: prediction files against ground truth, a checkpoint on a data set (raw or EMA
weights), and one-line errors."""

import json

import numpy as np
import torch
from typer.testing import CliRunner

from conftest import assert_one_line_error, run
from ocrkit.cli.app import app
from ocrkit.core.data.formats import load_icdar_dir, write_predictions

runner = CliRunner()


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


def test_eval_scores_the_ema_weights_on_request(synth, tmp_path):
    from typer.testing import CliRunner

    runner = CliRunner()
    tiny = [
        "--set",
        "model.base_width=8",
        "--set",
        "model.inner_channels=32",
        "--set",
        "model.head_channels=8",
        "--set",
        "data.train_size=[96,96]",
        "--set",
        "data.eval_size=[128,160]",
        "--set",
        "data.num_workers=0",
        "--set",
        "train.overlays=0",
        "--set",
        f"log.dir={tmp_path}",
    ]
    base = [
        "train",
        "--data",
        str(synth / "train"),
        "--val-data",
        str(synth / "val"),
        "--quiet",
        "--epochs",
        "1",
        "--batch-size",
        "4",
        *tiny,
    ]
    assert runner.invoke(app, [*base, "--name", "ema", "--set", "train.ema.enabled=true"]).exit_code == 0
    assert runner.invoke(app, [*base, "--name", "plain"]).exit_code == 0
    checkpoint = tmp_path / "train" / "ema" / "last.pt"
    result = runner.invoke(
        app,
        [
            "eval",
            "--checkpoint",
            str(checkpoint),
            "--data",
            str(synth / "val"),
            "--json",
            "--weights",
            "ema",
            "--out",
            str(tmp_path / "ema_eval"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "hmean" in result.output
    from ocrkit.core.engine.eval_job import load_for_inference

    state = torch.load(checkpoint, weights_only=False)
    for weights, expected in (("raw", state["model"]), ("ema", state["ema"]["model"])):
        loaded = load_for_inference(checkpoint, None, None, {"train.device": "cpu"}, weights)
        for name, value in loaded.model.state_dict().items():
            assert torch.equal(value, expected[name]), (weights, name)
    assert any(not torch.equal(state["model"][k], state["ema"]["model"][k]) for k in state["model"])
    result = runner.invoke(
        app,
        [
            "eval",
            "--checkpoint",
            str(tmp_path / "train" / "plain" / "last.pt"),
            "--data",
            str(synth / "val"),
            "--weights",
            "ema",
        ],
    )
    assert result.exit_code != 0 and "no EMA weights" in result.output and "Traceback" not in result.output


def test_eval_files_skip_bad(tiny_icdar, tmp_path):
    preds = tmp_path / "preds"
    preds.mkdir()
    (preds / "res_img_0.txt").write_text("1,2,3,4,x\n")
    write_predictions(preds / "res_img_1.txt", [np.array([[0, 0], [10, 0], [10, 10], [0, 10]], np.float32)])
    assert_one_line_error(run("eval", "--gt-dir", tiny_icdar, "--pred-dir", preds), "res_img_0.txt:1: field 5")
    for flag in (["--skip-bad"], ["--set", "data.skip_bad=true"]):
        result = run("eval", "--gt-dir", tiny_icdar, "--pred-dir", preds, "--json", *flag)
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout)["images"] == 2  # img_1 and img_2
        assert "skipping bad sample: " in result.stderr and f"{preds}: skipped 1 bad sample(s)" in result.stderr


def test_a_checkpoint_with_prediction_files_is_a_contradiction(tmp_path):
    result = run("eval", "--checkpoint", tmp_path / "c.pt", "--gt-dir", tmp_path, "--pred-dir", tmp_path)
    assert_one_line_error(result, "--checkpoint", "--gt-dir")

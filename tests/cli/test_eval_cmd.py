"""`ocrkit eval`: prediction files against ground truth, a checkpoint on a data set (raw or EMA
weights), the HTML report (--report), and one-line errors."""

import json
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import torch
from typer.testing import CliRunner

from conftest import MODEL_W4, assert_one_line_error, rect, run, set_args
from ocrkit.cli.app import app
from ocrkit.core.data.formats import load_icdar_dir, read_icdar_gt, write_predictions

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


# ---------------------------------------------------------------- --report


class ReportCells(HTMLParser):
    """A report's ``data-key`` cells: the summary's as one dict, the per-image table's as one
    dict per row (in page order), and how many overlays it embeds."""

    def __init__(self, path: Path):
        super().__init__(convert_charrefs=True)
        self.summary: dict[str, str] = {}
        self.rows: list[dict[str, str]] = []
        self.overlays = 0
        self._table: str | None = None
        self.feed(path.read_text(encoding="utf-8"))

    def handle_starttag(self, tag, attrs):
        a = {key: value or "" for key, value in attrs}
        if tag == "table":
            self._table = a.get("id")
        elif tag == "tr" and "data-stem" in a:
            self.rows.append({})
        elif tag == "td" and "data-key" in a:
            cells = self.summary if self._table == "summary" else self.rows[-1]
            cells[a["data-key"]] = a["data-value"]
        elif tag == "img" and a.get("src", "").startswith("data:image/jpeg;base64,"):
            self.overlays += 1


def assert_report_matches(report: ReportCells, metrics: dict) -> None:
    """The page's numbers are metrics.json's (exactly: the cells carry the values unrounded)."""
    for key in ("precision", "recall", "hmean"):
        assert float(report.summary[key]) == metrics[key], key
    for key, name in (("matched", "matched"), ("care_gt", "gt_care"), ("care_det", "det_care"), ("images", "images")):
        assert int(report.summary[key]) == metrics[name], key
    assert [row["stem"] for row in report.rows] == sorted(
        metrics["per_image"], key=lambda stem: (metrics["per_image"][stem]["hmean"], stem)
    )
    for row in report.rows:
        image = metrics["per_image"][row["stem"]]
        counts = image["counts"]
        assert [float(row[key]) for key in ("precision", "recall", "hmean")] == [
            image["precision"],
            image["recall"],
            image["hmean"],
        ]
        assert (int(row["care_gt"]), int(row["care_det"]), int(row["matched"])) == (
            counts["n_care_gt"],
            counts["n_care_det"],
            counts["n_matched"],
        )
        assert int(row["misses"]) == counts["n_care_gt"] - counts["n_matched"]
        assert int(row["false_positives"]) == counts["n_care_det"] - counts["n_matched"]


def untrained_checkpoint(synth: Path, tmp_path: Path) -> tuple[Path, float]:
    """A width-4 model's first weights, and a threshold at the median of its probability map on a
    val image, so that it detects boxes (mostly false positives) for the report to draw."""
    from ocrkit.core.config import load_config
    from ocrkit.core.data.formats import load_dataset
    from ocrkit.core.engine.checkpoint import save_checkpoint
    from ocrkit.core.engine.inference import predict_batches
    from ocrkit.core.model import build_model

    torch.manual_seed(0)
    cfg = load_config(overrides=[*MODEL_W4, "data.eval_size=[128,160]"])
    model = build_model(cfg.model)
    path = save_checkpoint(
        tmp_path / "untrained.pt", {"model": model.state_dict(), "config": cfg.model_dump(mode="json")}
    )
    image = load_dataset(synth / "val").samples[0].image_path
    (probe,) = predict_batches(model, [image], cfg.data, cfg.postprocess, "cpu", keep_prob=True)
    return path, float(np.median(probe.prob))


def test_eval_report_of_a_checkpoint_matches_its_metrics(synth, tmp_path):
    checkpoint, thresh = untrained_checkpoint(synth, tmp_path)
    out = tmp_path / "eval"
    post = set_args(f"postprocess.thresh={thresh}", "postprocess.box_thresh=0", "postprocess.min_size=0")
    args = ["eval", "--checkpoint", checkpoint, "--data", synth / "val", "--device", "cpu", "--out", out, *post]
    result = run(*args, "--report", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["images"] == 4  # stdout stays one JSON object
    assert f"report: {out / 'report.html'}" in result.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["det_care"] > 0  # there were detections to draw
    report = ReportCells(out / "report.html")
    assert_report_matches(report, metrics)
    assert report.overlays == 4

    again = run(*args, "--report", "--report-images", "1")
    assert again.exit_code == 0, again.output
    assert ReportCells(out / "report.html").overlays == 1 and "report: " in again.stderr
    assert_one_line_error(run(*args, "--report-images", "1"), "--report-images", "--report")


def test_eval_report_of_scored_files(tiny_icdar, tmp_path):
    preds = tmp_path / "preds"
    preds.mkdir()
    polygons, ignore, _ = read_icdar_gt(tiny_icdar / "gts" / "gt_img_0.txt")
    write_predictions(preds / "res_img_0.txt", [p for p, i in zip(polygons, ignore, strict=True) if not i])
    write_predictions(preds / "res_img_1.txt", [rect(0, 0, 10, 10)])
    runs = tmp_path / "runs"
    result = run(
        "eval", "--gt-dir", tiny_icdar, "--pred-dir", preds, "--report", "--json", *set_args(f"log.dir={runs}")
    )
    assert result.exit_code == 0, result.output
    path = runs / "eval" / "exp" / "report.html"  # no --out: a new run directory, as a checkpoint's eval
    assert f"report: {path}" in result.stderr
    metrics = json.loads(result.stdout)
    report = ReportCells(path)
    assert_report_matches(report, metrics)
    assert report.overlays == 3  # the images are in the ICDAR root beside gts/
    assert [row["stem"] for row in report.rows] == ["img_1", "img_2", "img_0"]  # H 0, 0 (ties by stem), 1

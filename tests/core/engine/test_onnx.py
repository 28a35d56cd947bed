"""ONNX export and onnxruntime inference: the export carries its settings, and predictions made
through onnxruntime equal PyTorch's through the same pre- and post-processing (probability maps
within 1e-4, identical boxes, identical P/R/H); export and load failures are one line."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import REPO, assert_one_line_error, run, tiny_cfg, write_image
from ocrkit.core.data.formats import load_dataset
from ocrkit.core.engine.checkpoint import save_checkpoint
from ocrkit.core.engine.eval_job import load_for_inference
from ocrkit.core.engine.inference import evaluate_model, predict_batches
from ocrkit.core.engine.onnx_export import ONNX_FORMAT, eval_canvas, export_onnx, require_onnx_package
from ocrkit.core.engine.onnx_model import load_onnx_model
from ocrkit.core.errors import OcrkitError
from ocrkit.core.model import build_model

pytest.importorskip("onnxruntime", reason="the onnx extra is not installed (pip install 'ocrkit[onnx]')")

# thresholds that make the untrained tiny model detect many boxes, so that boxes are compared
DETECTING = ("postprocess.thresh=0.5", "postprocess.box_thresh=0.0", "data.eval_size=[128,160]")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """A tiny detector's checkpoint with random (seeded) weights."""
    torch.manual_seed(3)
    cfg = tiny_cfg(*DETECTING)
    model = build_model(cfg.model)
    with torch.no_grad():  # BatchNorm statistics that are not the identity, as after training
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.2, 0.2)
                module.running_var.uniform_(0.5, 2.0)
    path = tmp_path_factory.mktemp("onnx") / "model.pt"
    save_checkpoint(path, {"model": model.state_dict(), "config": cfg.model_dump(mode="json")})
    return path


# A fixed-shape export runs every image alone on its full canvas, while the PyTorch path pads a
# batch only to its largest image, and the output near an image's right and bottom edges depends
# on the padding that follows (engine/inference.py): the two agree exactly when every image fills
# the canvas, as with keep_ratio = false. A dynamic export takes the same canvases as PyTorch.
FIXED_SETS = ["data.keep_ratio=false"]


def _export(checkpoint: Path, out: Path, dynamic: bool) -> Path:
    sets = None if dynamic else FIXED_SETS
    loaded = load_for_inference(checkpoint, None, sets, {"train.device": "cpu"})
    report = export_onnx(loaded.model, loaded.cfg, out, checkpoint, dynamic=dynamic)
    assert report.max_prob_difference < 1e-4
    return out


@pytest.fixture(scope="module")
def dynamic_model(checkpoint, tmp_path_factory) -> Path:
    return _export(checkpoint, tmp_path_factory.mktemp("dyn") / "model.onnx", dynamic=True)


@pytest.fixture(scope="module")
def fixed_model(checkpoint, tmp_path_factory) -> Path:
    return _export(checkpoint, tmp_path_factory.mktemp("fixed") / "model.onnx", dynamic=False)


@pytest.fixture(scope="module")
def mixed_images(tmp_path_factory) -> list[Path]:
    root = tmp_path_factory.mktemp("images")
    sizes = [(128, 160), (100, 133), (160, 96), (64, 64), (128, 160)]
    return [write_image(root / f"im{i}.png", seed=i, size=size) for i, size in enumerate(sizes)]


def test_the_export_carries_what_inference_needs(dynamic_model, fixed_model, checkpoint):
    sidecar = json.loads(dynamic_model.with_suffix(".json").read_text())
    assert sidecar["format"] == ONNX_FORMAT and sidecar["dynamic"] is True
    assert sidecar["input"]["shape"] == ["batch", 3, "height", "width"]
    assert sidecar["resize"] == {"eval_size": [128, 160], "keep_ratio": True, "pad_multiple": 32}
    assert sidecar["postprocess"]["thresh"] == 0.5 and sidecar["source_checkpoint"] == str(checkpoint)
    loaded = load_onnx_model(fixed_model, None, None, {})
    assert loaded.model.metadata["input"]["shape"] == [1, 3, 128, 160]
    assert loaded.cfg.postprocess.thresh == 0.5 and loaded.cfg.data.eval_size == (128, 160)
    assert eval_canvas(loaded.cfg.data) == (128, 160)


@pytest.mark.parametrize("which", ["dynamic", "fixed"])
def test_onnxruntime_predictions_equal_pytorch(which, dynamic_model, fixed_model, checkpoint, mixed_images):
    """Mixed sizes in batches of 2: probability maps within 1e-4 and the very same boxes."""
    sets = None if which == "dynamic" else FIXED_SETS
    torch_side = load_for_inference(checkpoint, None, sets, {"train.device": "cpu"})
    onnx_side = load_onnx_model(dynamic_model if which == "dynamic" else fixed_model, None, None, {})
    assert onnx_side.cfg.data.keep_ratio == torch_side.cfg.data.keep_ratio  # the export keeps its settings
    args = (torch_side.cfg.data, torch_side.cfg.postprocess, "cpu", 2)
    ours = list(predict_batches(torch_side.model, mixed_images, *args, keep_prob=True))
    theirs = list(predict_batches(onnx_side.model, mixed_images, *args, keep_prob=True))
    boxes = 0
    for a, b in zip(ours, theirs, strict=True):
        assert a.prob is not None and b.prob is not None and a.prob.shape == b.prob.shape
        assert np.abs(a.prob - b.prob).max() < 1e-4
        assert len(a.detections) == len(b.detections)
        for da, db in zip(a.detections, b.detections, strict=True):
            assert np.array_equal(da.polygon, db.polygon) and da.score == pytest.approx(db.score, abs=1e-4)
        boxes += len(a.detections)
    assert boxes >= 10  # the comparison saw real boxes


def test_onnxruntime_metrics_equal_pytorch_on_synthetic_and_icdar_data(dynamic_model, checkpoint, synth, icdar_or_none):
    torch_side = load_for_inference(checkpoint, None, None, {"train.device": "cpu"})
    onnx_side = load_onnx_model(dynamic_model, None, None, {})
    sets = [load_dataset(str(synth / "val")).samples]
    if icdar_or_none is not None:
        sets.append(load_dataset(str(icdar_or_none)).samples)
    for samples in sets:
        args = (samples, torch_side.cfg.data, torch_side.cfg.postprocess, "cpu", 2)
        a, b = evaluate_model(torch_side.model, *args), evaluate_model(onnx_side.model, *args)
        assert (a.precision, a.recall, a.hmean, a.det_care, a.matched) == (
            b.precision,
            b.recall,
            b.hmean,
            b.det_care,
            b.matched,
        )


@pytest.fixture
def icdar_or_none() -> Path | None:
    """The real ICDAR-2015 sample where present (the synthetic set is compared either way)."""
    from conftest import sample_dir

    return sample_dir() if sample_dir().is_dir() else None


def test_predict_with_the_onnx_model_writes_what_the_checkpoint_writes(
    dynamic_model, checkpoint, mixed_images, tmp_path
):
    images = [str(p) for p in mixed_images]
    one = run("predict", *images, "--checkpoint", checkpoint, "--out", tmp_path / "pt", "--device", "cpu")
    two = run("predict", *images, "--model", dynamic_model, "--out", tmp_path / "onnx")
    assert one.exit_code == 0 and two.exit_code == 0, two.output
    for res in sorted((tmp_path / "pt").glob("res_*.txt")):
        ours, theirs = _boxes(res), _boxes(tmp_path / "onnx" / res.name)
        assert [box for box, _ in ours] == [box for box, _ in theirs], res.name  # identical polygons
        # scores (mean P in the box, printed with 4 decimals) may differ in the last digit
        assert all(abs(a - b) <= 2e-4 for (_, a), (_, b) in zip(ours, theirs, strict=True))


def _boxes(res: Path) -> list[tuple[list[int], float]]:
    rows = [line.split(",") for line in res.read_text().splitlines() if line.strip()]
    return [([int(v) for v in row[:-1]], float(row[-1])) for row in rows]


def test_export_command_writes_the_model_and_says_the_parity(checkpoint, tmp_path):
    out = tmp_path / "m.onnx"
    result = run("export", "--checkpoint", checkpoint, "--out", out, "--dynamic")
    assert result.exit_code == 0, result.output
    assert out.is_file() and out.with_suffix(".json").is_file()
    assert "onnxruntime matches PyTorch within" in result.output


def test_a_fixed_model_refuses_an_input_larger_than_its_canvas(fixed_model, mixed_images):
    onnx_side = load_onnx_model(fixed_model, None, None, {"data.eval_size": [256, 320]})
    assert onnx_side.cfg.data.keep_ratio is False
    with pytest.raises(OcrkitError, match="does not fit this model's fixed 128x160: export it with --dynamic"):
        list(predict_batches(onnx_side.model, mixed_images[:1], onnx_side.cfg.data, onnx_side.cfg.postprocess, "cpu"))


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["export", "--checkpoint", "missing.pt", "--out", "x.onnx"], "checkpoint not found"),
        (
            ["export", "--checkpoint", "c.pt", "--out", "x.onnx", "--format", "tflite"],
            "--format 'tflite': expected onnx",
        ),
        (["predict", "a.png"], "give --checkpoint (a PyTorch checkpoint) or --model"),
        (["predict", "a.png", "--model", "missing.onnx"], "ONNX model not found"),
    ],
)
def test_export_and_model_mistakes_are_one_line(args, fragment, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert_one_line_error(run(*args), fragment)


def test_a_foreign_or_damaged_onnx_file_is_one_line(dynamic_model, tmp_path):
    import onnx

    foreign = onnx.load(str(dynamic_model))
    del foreign.metadata_props[:]
    onnx.save(foreign, str(tmp_path / "foreign.onnx"))
    (tmp_path / "garbage.onnx").write_bytes(b"not a model")
    image = write_image(tmp_path / "a.png", seed=0)
    assert_one_line_error(run("predict", image, "--model", tmp_path / "foreign.onnx"), "not an ocrkit ONNX export")
    assert_one_line_error(run("predict", image, "--model", tmp_path / "garbage.onnx"), "onnxruntime cannot load it")


def test_without_the_onnx_extra_export_names_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxscript", None)  # an import of it now fails
    with pytest.raises(OcrkitError, match=r"pip install 'ocrkit\[onnx\]'"):
        require_onnx_package("onnxscript")


def test_an_exporter_failure_is_one_line(checkpoint, tmp_path, monkeypatch):
    def unsupported(*args, **kwargs):
        raise RuntimeError("Unsupported operator aten::weird\nlong exporter report ...")

    monkeypatch.setattr(torch.onnx, "export", unsupported)
    result = run("export", "--checkpoint", checkpoint, "--out", tmp_path / "m.onnx")
    assert_one_line_error(result, "export failed: RuntimeError: Unsupported operator aten::weird")
    assert not (tmp_path / "m.onnx").exists()


def test_onnx_packages_are_imported_only_where_used():
    """The package installs and runs without the onnx extra: nothing imports onnx, onnxruntime or
    onnxscript at module level (engine/onnx_export.py's require_onnx_package imports them)."""
    import ast

    for path in (REPO / "ocrkit").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            names += [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            assert not [n for n in names if n.split(".")[0] in ("onnx", "onnxruntime", "onnxscript")], path


def test_settings_on_top_of_an_export_apply_but_not_model_ones(dynamic_model):
    assert load_onnx_model(dynamic_model, None, ["postprocess.box_thresh=0.7"], {}).cfg.postprocess.box_thresh == 0.7
    with pytest.raises(OcrkitError, match="the model section is fixed by the export"):
        load_onnx_model(dynamic_model, None, ["model.head_channels=16"], {})


def test_eval_with_the_onnx_model_equals_the_checkpoint(dynamic_model, checkpoint, synth, tmp_path):
    """`ocrkit eval --model` through the same code as `--checkpoint`: the same metrics, and a report."""
    data = ["--data", synth / "val", "--json"]
    one = run("eval", "--checkpoint", checkpoint, *data, "--out", tmp_path / "pt", "--device", "cpu")
    two = run("eval", "--model", dynamic_model, *data, "--out", tmp_path / "onnx", "--report")
    assert one.exit_code == 0 and two.exit_code == 0, two.output
    ours = json.loads((tmp_path / "pt" / "metrics.json").read_text())
    theirs = json.loads((tmp_path / "onnx" / "metrics.json").read_text())
    for key in ("precision", "recall", "hmean", "matched", "gt_care", "det_care"):
        assert ours[key] == theirs[key], key
    assert (tmp_path / "onnx" / "report.html").is_file()
    assert str(dynamic_model) in (tmp_path / "onnx" / "report.html").read_text()


def test_eval_model_mistakes_are_one_line(dynamic_model, checkpoint, synth):
    both = run("eval", "--checkpoint", checkpoint, "--model", dynamic_model, "--data", synth / "val")
    assert_one_line_error(both, "not both")
    ema = run("eval", "--model", dynamic_model, "--data", synth / "val", "--weights", "ema")
    assert_one_line_error(ema, "--weights chooses a checkpoint's weights")

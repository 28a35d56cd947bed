"""The inference engine: batching, padding and coordinate mapping, written outputs, checkpoints."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from torch import nn

from ocrkit.core.config import DataConfig, MapsConfig, ModelConfig, OcrkitConfig, PostprocessConfig
from ocrkit.core.data.formats import load_icdar_dir, read_predictions
from ocrkit.core.data.image import eval_content, image_size, normalize
from ocrkit.core.data.sample import Sample
from ocrkit.core.data.scoring import evaluate_dirs
from ocrkit.core.engine.checkpoint import save_checkpoint
from ocrkit.core.engine.eval_job import load_for_inference
from ocrkit.core.engine.inference import (
    evaluate_model,
    predict_batches,
    predict_files,
)
from ocrkit.core.errors import InputError, OcrkitError
from ocrkit.core.geometry.maps import make_maps_in_network_space
from ocrkit.core.geometry.transform import plan_resize
from ocrkit.core.model import build_model

POST = PostprocessConfig()
TINY_MODEL = ModelConfig(base_width=8, inner_channels=32, head_channels=8)


class ShrinkMapModel(nn.Module):
    """A perfect detector: logits +10 inside each image's shrink map, −10 elsewhere.

    It is handed the network-space maps in the order the images will arrive and lays each over
    its slot of the incoming batch, so the output has the batch's padded shape. It records the
    batches it saw to show that padding really happened.
    """

    def __init__(self, maps: list[np.ndarray]) -> None:
        super().__init__()
        self.pending = list(maps)
        self.batches: list[torch.Tensor] = []

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        self.batches.append(images.clone())
        n, _, height, width = images.shape
        logits = torch.full((n, 1, height, width), -10.0)
        for slot in range(n):
            shrink = torch.from_numpy(self.pending.pop(0))
            assert shrink.shape[0] <= height and shrink.shape[1] <= width
            logits[slot, 0, : shrink.shape[0], : shrink.shape[1]] = shrink * 20.0 - 10.0
        return {"prob_logits": logits}


def network_maps(samples: list[Sample], data: DataConfig, extra_blob: bool = False) -> list[np.ndarray]:
    """Each sample's shrink map in network space (optionally with a false-positive square)."""
    maps = []
    for sample in samples:
        transform = plan_resize(image_size(sample.image_path), data.eval_size, data.keep_ratio, data.pad_multiple)
        shrink = make_maps_in_network_space(sample.polygons, sample.ignore, transform, MapsConfig()).shrink
        if extra_blob:
            shrink[5:25, 5:25] = 1.0  # no ground truth here: a false positive
        maps.append(shrink)
    return maps


@pytest.fixture
def samples(tiny_icdar: Path) -> list[Sample]:
    return load_icdar_dir(tiny_icdar).samples


@pytest.mark.parametrize("eval_size, keep_ratio", [((256, 256), True), ((320, 192), False), ((288, 384), True)])
def test_perfect_model_through_batches_and_padding_scores_full_marks(samples, eval_size, keep_ratio):
    data = DataConfig(eval_size=eval_size, keep_ratio=keep_ratio)
    model = ShrinkMapModel(network_maps(samples, data))
    metrics = evaluate_model(model, samples, data, POST, "cpu", batch_size=2)
    assert metrics.gt_care == 6 and metrics.hmean >= 0.99
    assert [len(b) for b in model.batches] == [2, 1] and not model.pending


def test_batch_canvas_is_the_largest_image_and_zero_outside_content(samples):
    data = DataConfig(eval_size=(256, 256), keep_ratio=True)
    model = ShrinkMapModel(network_maps(samples, data))
    predictions = list(predict_batches(model, [s.image_path for s in samples], data, POST, "cpu", batch_size=2))
    # 240×320 → content 192×256 and 300×200 → content 256×171 share one 256×256 canvas
    assert [p.transform.content_size for p in predictions] == [(192, 256), (256, 171), (256, 256)]
    first = model.batches[0]
    assert first.shape == (2, 3, 256, 256)
    assert torch.all(first[0, :, 192:] == 0) and torch.all(first[1, :, :, 171:] == 0)
    assert first[0, :, :192].abs().sum() > 0 and first[1, :, :, :171].abs().sum() > 0
    content, _ = eval_content(samples[1].image_path, data)
    assert torch.equal(first[1, :, :, :171], torch.from_numpy(normalize(content, data.mean, data.std)))
    assert [p.path for p in predictions] == [s.image_path for s in samples]
    assert all(d.polygon.dtype == np.int32 for p in predictions for d in p.detections)
    assert all(p.prob is None for p in predictions)


def test_written_results_score_exactly_as_returned(samples, tiny_icdar, tmp_path):
    data = DataConfig(eval_size=(256, 256), keep_ratio=True)
    model = ShrinkMapModel(network_maps(samples, data, extra_blob=True))
    out = tmp_path / "eval"
    metrics = evaluate_model(model, samples, data, POST, "cpu", batch_size=2, out_dir=out, overlays=2)
    assert metrics.recall == 1.0 and metrics.precision == pytest.approx(6 / 9)
    assert evaluate_dirs(tiny_icdar, out).to_dict() == metrics.to_dict()
    assert json.loads((out / "metrics.json").read_text()) == metrics.to_dict()

    polygons, scores = read_predictions(out / "res_img_0.txt")
    assert len(polygons) == 3 and all(s is not None and 0.8 < s <= 1.0 for s in scores)
    record = json.loads((out / "json" / "img_0.json").read_text())
    assert (record["height"], record["width"]) == (240, 320)
    assert record["counts"]["n_matched"] == 2 and record["precision"] == pytest.approx(2 / 3)
    assert sorted(d["matched_gt"] is None for d in record["detections"]) == [False, False, True]
    assert sorted(p.name for p in (out / "json").iterdir()) == ["img_0.json", "img_1.json", "img_2.json"]
    written = sorted((out / "overlays").iterdir())
    assert [p.name for p in written] == ["img_0.png", "img_1.png"]
    assert cv2.imread(str(written[1])).shape == (300, 200, 3)


def test_predict_files_writes_boxes_json_and_overlays(samples, tmp_path):
    data = DataConfig(eval_size=(256, 256), keep_ratio=True)
    model = ShrinkMapModel(network_maps(samples, data))
    out = tmp_path / "pred"
    results = predict_files(model, [s.image_path for s in samples], data, POST, "cpu", out, batch_size=2)
    assert [len(r.detections) for r in results] == [2, 2, 2] and all(r.prob is None for r in results)
    for sample in samples:
        record = json.loads((out / f"{sample.stem}.json").read_text())
        assert record["image"] == str(sample.image_path) and len(record["detections"]) == 2
        assert all(len(d["points"]) == 4 and d["score"] > 0.8 for d in record["detections"])
        assert len(read_predictions(out / f"res_{sample.stem}.txt")[0]) == 2
        overlay = cv2.imread(str(out / f"{sample.stem}_overlay.png"))
        assert overlay.shape[:2] == image_size(sample.image_path)


def test_bad_inputs_give_one_line_errors(samples, tmp_path):
    corrupt = tmp_path / "broken.png"
    corrupt.write_bytes(b"definitely not a PNG")
    model = ShrinkMapModel(network_maps(samples[:1], DataConfig()))
    with pytest.raises(InputError, match="broken.png") as err:
        predict_files(model, [corrupt], DataConfig(), POST, "cpu", tmp_path / "out")
    assert "\n" not in str(err.value)
    with pytest.raises(InputError, match="not found"):
        list(predict_batches(model, [tmp_path / "missing.jpg"], DataConfig(), POST, "cpu"))
    twin = tmp_path / "other" / samples[0].image_path.name
    with pytest.raises(OcrkitError, match="share the file stem"):
        predict_files(model, [samples[0].image_path, twin], DataConfig(), POST, "cpu", tmp_path / "out")


def test_reloaded_checkpoint_predicts_identically(samples, tmp_path):
    torch.manual_seed(0)
    cfg = OcrkitConfig(model=TINY_MODEL)
    model = build_model(cfg.model)  # left in train mode: prediction must switch to eval itself
    state = {"model": model.state_dict(), "config": cfg.model_dump(mode="json")}
    path = save_checkpoint(tmp_path / "model.ckpt", state)
    loaded = load_for_inference(path, None, None, {"train.device": "cpu"})
    reloaded = loaded.model
    assert loaded.cfg.model == TINY_MODEL and not reloaded.training

    data = DataConfig(eval_size=(128, 160), keep_ratio=True)
    paths = [s.image_path for s in samples]
    (probe,) = predict_batches(model, paths[:1], data, POST, "cpu", keep_prob=True)
    # an untrained map is flat-ish: binarize at its median so there are boxes to compare
    post = PostprocessConfig(thresh=float(np.median(probe.prob)), box_thresh=0.0, min_size=0.0)
    ours = list(predict_batches(model, paths, data, post, "cpu", batch_size=2, keep_prob=True))
    theirs = list(predict_batches(reloaded, paths, data, post, "cpu", batch_size=2, keep_prob=True))
    assert model.training  # the caller's mode comes back
    assert sum(len(p.detections) for p in ours) > 0
    for a, b in zip(ours, theirs, strict=True):
        np.testing.assert_array_equal(a.prob, b.prob)
        assert [d.score for d in a.detections] == [d.score for d in b.detections]
        for da, db in zip(a.detections, b.detections, strict=True):
            np.testing.assert_array_equal(da.polygon, db.polygon)

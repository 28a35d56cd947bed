"""Running a detector on images: predictions in ORIGINAL image coordinates, scored or written out.

Every image goes through the eval resize (``plan_resize`` with ``data.eval_size``,
``data.keep_ratio`` and ``data.pad_multiple``) and is placed, as uint8, at the top-left of a
canvas as large as the biggest image of its batch; the batch is normalised on the model's
device. Everything outside an image's resized content is 0 after normalisation (the mean
colour), whether it is the image's own ``pad_multiple`` padding or batch padding. The network's
output near the content's right and bottom edges still depends a little on how much padding
follows (BatchNorm shifts the padding's activations away from zero, unlike the convolutions' own
border), so batches are always formed in input order: an evaluation is reproducible, and a
distributed one keeps each batch whole. Post-processing searches only the content and maps boxes
back through each image's own recorded transform.

This module prepares images itself (no annotations needed), so ``ocrkit predict`` works on any
image paths; the next batch is decoded on a helper thread while the model runs.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch import nn

from ocrkit.core.atomic import write_text_atomic
from ocrkit.core.config import DataConfig, PostprocessConfig
from ocrkit.core.data.cached import TensorLayer
from ocrkit.core.data.formats import write_predictions
from ocrkit.core.data.image import load_image, normalize_on_device
from ocrkit.core.data.sample import Sample
from ocrkit.core.engine.distributed import Distributed
from ocrkit.core.errors import OcrkitError
from ocrkit.core.geometry.metric import DetectionMetrics, ImageResult, combine, evaluate_image
from ocrkit.core.geometry.postprocess import Detection, detect_text
from ocrkit.core.geometry.transform import ResizeTransform
from ocrkit.core.progress import track
from ocrkit.core.store.store import Store
from ocrkit.core.viz import DETECTION_COLOUR, draw_ground_truth, draw_polygons, heatmap_overlay, save_png

HEATMAP_ALPHA = 0.4  # light enough that the text under the probability map stays readable


@dataclass(frozen=True)
class ImagePrediction:
    """One image's detections (int32 polygons in original pixels) and how it entered the model.

    ``prob`` is the probability map over the resized content (``transform.content_size``),
    float32, kept only when asked for (it is large, and only overlays need it).
    """

    path: Path
    detections: list[Detection]
    transform: ResizeTransform
    prob: np.ndarray | None = None

    @property
    def stem(self) -> str:
        return self.path.stem

    @property
    def orig_size(self) -> tuple[int, int]:
        return self.transform.orig_size


@dataclass(frozen=True)
class _PreparedBatch:
    paths: list[Path]
    images: torch.Tensor  # N×3×H×W uint8: each image's resized content at the top-left, 0 elsewhere
    transforms: list[ResizeTransform]

    def model_input(self, data_cfg: DataConfig, device: torch.device) -> torch.Tensor:
        """float32 on ``device``, normalised, exactly 0 outside each image's content.

        Normalised on the device after a uint8 transfer (a quarter of the bytes; off the loader
        thread), with the same float32 operations as ``normalize``, so the values equal the
        training path's bit for bit."""
        x = normalize_on_device(self.images.to(device, non_blocking=True), data_cfg.mean, data_cfg.std)
        for image, transform in zip(x, self.transforms, strict=True):
            ch, cw = transform.content_size
            image[:, ch:] = 0
            image[:, :ch, cw:] = 0
        return x


def _prepare_batch(paths: Sequence[Path], tensors: TensorLayer) -> _PreparedBatch:
    return batch_from_contents(paths, [tensors.prepare(path) for path in paths])


def batch_from_contents(
    paths: Sequence[Path], prepared: Sequence[tuple[np.ndarray, ResizeTransform]]
) -> _PreparedBatch:
    """One uint8 canvas for a batch of resized contents (3×h×w each), each at the top-left."""
    transforms = [t for _, t in prepared]
    height = max(t.padded_size[0] for t in transforms)
    width = max(t.padded_size[1] for t in transforms)
    canvas = np.zeros((len(paths), 3, height, width), dtype=np.uint8)
    for slot, (content, _) in zip(canvas, prepared, strict=True):
        slot[:, : content.shape[1], : content.shape[2]] = content
    return _PreparedBatch(list(paths), torch.from_numpy(canvas), transforms)


def prepared_batches(paths: Sequence[Path], tensors: TensorLayer, batch_size: int) -> Iterator[_PreparedBatch]:
    """uint8 batches in input order, the next one prepared on a helper thread while this one
    runs. Each image's resized content comes from ``tensors`` (its store, or made fresh);
    ``model_input`` normalises a batch on the model's device."""
    chunks = [list(paths[i : i + batch_size]) for i in range(0, len(paths), batch_size)]
    if not chunks:
        return
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="ocrkit-prefetch") as pool:
        upcoming = pool.submit(_prepare_batch, chunks[0], tensors)
        for next_chunk in [*chunks[1:], None]:
            batch = upcoming.result()  # re-raises the loader's InputError here
            if next_chunk is not None:
                upcoming = pool.submit(_prepare_batch, next_chunk, tensors)
            yield batch


@contextmanager
def _eval_mode(model: nn.Module) -> Iterator[None]:
    """Eval mode (BatchNorm running statistics) for the duration; a training model gets it back."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def _check_batch_size(batch_size: int) -> None:
    if batch_size < 1:
        raise OcrkitError(f"batch size must be at least 1, got {batch_size}")


@torch.inference_mode()
def predict_batches(
    model: nn.Module,
    image_paths: Sequence[Path],
    data_cfg: DataConfig,
    post_cfg: PostprocessConfig,
    device: torch.device | str,
    batch_size: int = 4,
    progress: bool = False,
    keep_prob: bool = False,
    store: Store | None = None,
) -> Iterator[ImagePrediction]:
    """Predictions for ``image_paths``, one per image in input order (the model runs in eval mode).
    With a store, each image's eval input is read from it (or made and written back)."""
    _check_batch_size(batch_size)
    paths = [Path(p) for p in image_paths]
    tensors = TensorLayer(store, data_cfg)
    predictions = _predict(model, paths, tensors, post_cfg, torch.device(device), batch_size, keep_prob)
    yield from track(predictions, "predicting", total=len(paths), enabled=progress)


def _predict(
    model: nn.Module,
    paths: Sequence[Path],
    tensors: TensorLayer,
    post_cfg: PostprocessConfig,
    device: torch.device,
    batch_size: int,
    keep_prob: bool,
) -> Iterator[ImagePrediction]:
    with _eval_mode(model):
        for batch in prepared_batches(paths, tensors, batch_size):
            logits = model(batch.model_input(tensors.data_cfg, device))["prob_logits"]
            probs = torch.sigmoid(logits.float())[:, 0].cpu().numpy()
            for path, prob, transform in zip(batch.paths, probs, batch.transforms, strict=True):
                ch, cw = transform.content_size
                kept = prob[:ch, :cw].copy() if keep_prob else None
                yield ImagePrediction(path, detect_text(prob, transform, post_cfg), transform, kept)


def _require_unique_stems(paths: Sequence[Path]) -> None:
    """Outputs and ground truth are keyed by file stem: two inputs with one stem would collide."""
    seen: dict[str, Path] = {}
    for path in paths:
        if path.stem in seen:
            raise OcrkitError(f"{path} and {seen[path.stem]} share the file stem {path.stem!r}; outputs would collide")
        seen[path.stem] = path


def _detection_records(detections: Sequence[Detection]) -> list[dict[str, Any]]:
    return [{"points": d.polygon.tolist(), "score": float(d.score)} for d in detections]


def prediction_record(prediction: ImagePrediction) -> dict[str, Any]:
    """One image's predictions as plain JSON: image path, original size, polygons and scores."""
    height, width = prediction.orig_size
    return {
        "image": str(prediction.path),
        "height": height,
        "width": width,
        "detections": _detection_records(prediction.detections),
    }


def _scored_record(prediction: ImagePrediction, result: ImageResult) -> dict[str, Any]:
    """The prediction record with the image's own P/R/H, counts, and each detection's match."""
    record = prediction_record(prediction)
    matched_gt = {pair.det: pair.gt for pair in result.pairs}
    for index, detection in enumerate(record["detections"]):
        detection["matched_gt"] = matched_gt.get(index)  # index into the image's gt list
        detection["dontcare"] = index in result.dontcare_det
    record.update(precision=result.precision, recall=result.recall, hmean=result.hmean, counts=asdict(result.counts))
    return record


def _write_json(path: Path, payload: dict[str, Any], fsync: bool = False) -> None:
    """Atomically; ``fsync`` for a file a run is judged from (metrics.json), not per image."""
    write_text_atomic(path, json.dumps(payload, indent=2) + "\n", fsync=fsync)


def _write_res_file(out_dir: Path, prediction: ImagePrediction) -> None:
    polygons = [d.polygon for d in prediction.detections]
    write_predictions(out_dir / f"res_{prediction.stem}.txt", polygons, [d.score for d in prediction.detections])


def _evaluation_overlay(sample: Sample, prediction: ImagePrediction) -> np.ndarray:
    """The original image with ground truth (green care, red don't-care) and detections (blue)."""
    image = draw_ground_truth(load_image(sample.image_path), sample.polygons, sample.ignore)
    return draw_polygons(image, [d.polygon for d in prediction.detections], DETECTION_COLOUR)


def _prediction_overlay(prediction: ImagePrediction) -> np.ndarray:
    """The original image under its probability map (when kept), with the detections in blue."""
    image = load_image(prediction.path)
    if prediction.prob is not None:
        height, width = prediction.orig_size
        prob = cv2.resize(prediction.prob, (width, height), interpolation=cv2.INTER_LINEAR)
        image = heatmap_overlay(image, prob, alpha=HEATMAP_ALPHA)
    return draw_polygons(image, [d.polygon for d in prediction.detections], DETECTION_COLOUR)


def evaluate_model(
    model: nn.Module,
    samples: Sequence[Sample],
    data_cfg: DataConfig,
    post_cfg: PostprocessConfig,
    device: torch.device | str,
    batch_size: int = 4,
    out_dir: Path | None = None,
    overlays: int = 0,
    progress: bool = False,
    store: Store | None = None,
    dist: Distributed | None = None,
) -> DetectionMetrics:
    """ICDAR-2015 metrics of ``model`` on ``samples`` (ground truth in original coordinates).

    With ``out_dir``: ``res_<stem>.txt`` (with scores; ``evaluate_dirs`` on them gives these same
    metrics), ``json/<stem>.json`` per image, ``metrics.json``, and ``overlays/<stem>.png`` for
    the first ``overlays`` samples.

    With several processes (``dist``): each rank predicts and scores every ``world_size``-th of
    the batches one process would make (so every image is predicted beside the same batch-mates),
    the per-image results and counts are gathered, and rank 0 alone writes the outputs. Every
    rank returns the metrics, equal to a one-process evaluation's: the same per-image results,
    summed in the same order.
    """
    _require_unique_stems([s.image_path for s in samples])
    dist = dist or Distributed()
    by_stem = {s.stem: s for s in samples}
    mine = own_batches(samples, batch_size, dist.rank, dist.world_size)
    paths = [s.image_path for s in mine]
    shown = progress and dist.is_main
    predicted = predict_batches(model, paths, data_cfg, post_cfg, device, batch_size, shown, store=store)
    scored = {p.stem: (p, _score(by_stem[p.stem], p)) for p in predicted}
    for part in dist.gather_objects(scored) if dist.enabled else []:
        scored.update(part)
    predictions = {s.stem: scored[s.stem][0] for s in samples}
    metrics = combine({s.stem: scored[s.stem][1] for s in samples})
    if out_dir is not None and dist.is_main:
        _write_evaluation(Path(out_dir), metrics, predictions, by_stem, overlays)
    return metrics


def own_batches(samples: Sequence[Sample], batch_size: int, rank: int, world_size: int) -> list[Sample]:
    """The samples of batches ``rank``, ``rank + world_size``, ... of the one-process batching."""
    chunks = [samples[i : i + batch_size] for i in range(0, len(samples), batch_size)]
    return [sample for chunk in chunks[rank::world_size] for sample in chunk]


def _score(sample: Sample, prediction: ImagePrediction) -> ImageResult:
    return evaluate_image(sample.polygons, sample.ignore, [d.polygon for d in prediction.detections])


def _write_evaluation(
    out_dir: Path,
    metrics: DetectionMetrics,
    predictions: dict[str, ImagePrediction],
    samples: dict[str, Sample],
    overlays: int,
) -> None:
    for rank, (stem, prediction) in enumerate(predictions.items()):
        _write_res_file(out_dir, prediction)
        _write_json(out_dir / "json" / f"{stem}.json", _scored_record(prediction, metrics.per_image[stem]))
        if rank < overlays:
            save_png(out_dir / "overlays" / f"{stem}.png", _evaluation_overlay(samples[stem], prediction))
    _write_json(out_dir / "metrics.json", metrics.to_dict(), fsync=True)


def predict_files(
    model: nn.Module,
    image_paths: Sequence[Path],
    data_cfg: DataConfig,
    post_cfg: PostprocessConfig,
    device: torch.device | str,
    out_dir: Path,
    overlays: bool = True,
    batch_size: int = 4,
    progress: bool = False,
    store: Store | None = None,
) -> list[ImagePrediction]:
    """Detect text in any images; writes ``res_<stem>.txt``, ``<stem>.json`` and (with
    ``overlays``) ``<stem>_overlay.png`` to ``out_dir``. A missing or undecodable image raises
    InputError. The returned predictions hold no probability maps."""
    paths = [Path(p) for p in image_paths]
    _require_unique_stems(paths)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    results = []
    for prediction in predict_batches(
        model, paths, data_cfg, post_cfg, device, batch_size, progress, keep_prob=overlays, store=store
    ):
        _write_res_file(out_dir, prediction)
        _write_json(out_dir / f"{prediction.stem}.json", prediction_record(prediction))
        if overlays:
            save_png(out_dir / f"{prediction.stem}_overlay.png", _prediction_overlay(prediction))
        results.append(ImagePrediction(prediction.path, prediction.detections, prediction.transform))
    return results

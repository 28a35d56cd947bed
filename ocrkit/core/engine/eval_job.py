"""``ocrkit eval --checkpoint`` and ``ocrkit predict`` as functions.

The config starts from the checkpoint's own (the one it was trained with); the user's TOML, env,
flags and --set apply on top, except that the architecture must stay the checkpoint's.

``ocrkit eval`` also runs as a torchrun job: each rank evaluates its share of the batches and rank
0 writes the outputs (engine/inference.py ``evaluate_model``). ``predict`` runs in one process.

With ``report``, rank 0 (or the one process) then writes ``report.html`` (engine/report.py) from
the outputs, after the process group is gone: the other ranks do not wait for it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from ocrkit.core.config import OcrkitConfig, load_config
from ocrkit.core.data.cached import open_data_store
from ocrkit.core.data.formats import load_dataset, load_image_paths
from ocrkit.core.data.sample import Sample
from ocrkit.core.engine.checkpoint import checkpoint_config, load_checkpoint, load_weights
from ocrkit.core.engine.device import resolve_device
from ocrkit.core.engine.distributed import Distributed, distributed_session
from ocrkit.core.engine.inference import ImagePrediction, evaluate_model, predict_files
from ocrkit.core.engine.report import REPORT_NAME, images_from_run, write_report
from ocrkit.core.engine.rundir import create_run_dir
from ocrkit.core.errors import InputError, OcrkitError
from ocrkit.core.geometry.metric import DetectionMetrics
from ocrkit.core.model import DBNet, build_model
from ocrkit.core.ranks import RankLayout

if TYPE_CHECKING:
    from ocrkit.core.engine.onnx_model import OnnxDetector


@dataclass
class LoadedModel:
    model: DBNet | OnnxDetector  # a checkpoint's network, or an exported model run by onnxruntime
    cfg: OcrkitConfig
    device: torch.device


@dataclass
class EvalOutcome:
    metrics: DetectionMetrics
    out_dir: Path
    data: str
    main_process: bool  # rank 0 (the one process that reports) or a single process
    report: Path | None = None  # report.html, when asked for (rank 0 only)


@dataclass(frozen=True)
class ReportRequest:
    """``ocrkit eval --report``: overlays for the ``overlays`` worst images (None: all)."""

    overlays: int | None = None
    progress: bool = False


def run_evaluation(
    checkpoint: Path | None,
    config_file: Path | None,
    sets: list[str] | None,
    flags: dict[str, Any],
    weights: str = "raw",
    out_dir: Path | None = None,
    name: str = "exp",
    progress: bool = False,
    report: ReportRequest | None = None,
    onnx_model: Path | None = None,
) -> EvalOutcome:
    """``ocrkit eval --checkpoint`` (or ``--model model.onnx``, run by onnxruntime on the CPU): in
    one process, or as one rank of a torchrun job."""
    if onnx_model is not None:
        from ocrkit.core.engine.onnx_model import load_onnx_model  # it imports this module

        exported = load_onnx_model(onnx_model, config_file, sets, flags)
        cfg, checkpoint = exported.cfg, onnx_model

        def build(device: torch.device) -> LoadedModel:
            return exported
    else:
        if checkpoint is None:
            raise OcrkitError("give --checkpoint (a PyTorch checkpoint) or --model (an exported ONNX model)")
        source = checkpoint  # typed as a Path for the closure
        state, cfg = _inference_state(source, config_file, sets, flags, weights)

        def build(device: torch.device) -> LoadedModel:
            return _build(state, cfg, source, device)

    with distributed_session(cfg.dist, cfg.train.device) as dist:
        loaded = build(dist.device)
        samples = eval_samples(cfg)
        metrics, out = evaluate_checkpoint(loaded, out_dir, name, progress and dist.is_main, dist, samples)
    outcome = EvalOutcome(metrics, out, str(cfg.data.val), dist.is_main)
    if report is not None and dist.is_main:
        settings = report_settings(cfg, checkpoint, weights)
        images = images_from_run(out, samples, metrics)
        outcome.report = write_report(out / REPORT_NAME, images, metrics, settings, report.overlays, report.progress)
    return outcome


def report_settings(cfg: OcrkitConfig, checkpoint: Path, weights: str) -> list[tuple[str, str]]:
    """What the report names beside its scores: the model, the data, and the settings that change
    the detections (eval resize and post-processing)."""
    data, post = cfg.data, cfg.postprocess
    return [
        ("checkpoint", str(checkpoint)),
        ("weights", weights),
        ("data", str(data.val)),
        ("eval_size (H W)", " ".join(str(v) for v in data.eval_size)),
        ("keep_ratio", str(data.keep_ratio)),
        ("pad_multiple", str(data.pad_multiple)),
        ("box mode", post.mode),
        ("thresh", str(post.thresh)),
        ("box_thresh", str(post.box_thresh)),
        ("unclip_ratio", str(post.unclip_ratio)),
        ("min_size", str(post.min_size)),
        ("max_candidates", str(post.max_candidates)),
    ]


def load_for_inference(
    checkpoint: Path, config_file: Path | None, sets: list[str] | None, flags: dict[str, Any], weights: str = "raw"
) -> LoadedModel:
    """``weights``: "raw" (the trained model) or "ema" (its moving average, if it was kept)."""
    state, cfg = _inference_state(checkpoint, config_file, sets, flags, weights)
    return _build(state, cfg, checkpoint, resolve_device(cfg.train.device))


def refuse_several_processes(command: str) -> None:
    if RankLayout.from_env().distributed:
        raise OcrkitError(f"ocrkit {command} runs in one process: start it without torchrun")


def _inference_state(
    checkpoint: Path, config_file: Path | None, sets: list[str] | None, flags: dict[str, Any], weights: str
) -> tuple[dict[str, Any], OcrkitConfig]:
    state = load_checkpoint(checkpoint)
    if weights == "ema":
        if "ema" not in state:
            raise InputError(checkpoint, "checkpoint has no EMA weights (trained without train.ema.enabled)")
        state = {**state, "model": state["ema"]["model"]}
    elif weights != "raw":
        raise OcrkitError(f"--weights {weights!r}: expected raw or ema")
    base = checkpoint_config(state, checkpoint).model_dump(mode="json")
    return state, load_config(config_file, sets, flags, base=base)


def _build(state: dict[str, Any], cfg: OcrkitConfig, checkpoint: Path, device: torch.device) -> LoadedModel:
    model = build_model(cfg.model)
    load_weights(model, state, checkpoint, cfg.model)
    return LoadedModel(model.to(device).eval(), cfg, device)


def evaluate_checkpoint(
    loaded: LoadedModel,
    out_dir: Path | None,
    name: str = "exp",
    progress: bool = False,
    dist: Distributed | None = None,
    samples: Sequence[Sample] | None = None,
) -> tuple[DetectionMetrics, Path]:
    """``samples``: the evaluation set when already loaded (``eval_samples``), else loaded here."""
    cfg = loaded.cfg
    samples = eval_samples(cfg) if samples is None else samples
    dist = dist or Distributed(device=loaded.device)
    out = Path(out_dir) if out_dir else dist.made_by_main(lambda: create_run_dir(cfg.log.dir, "eval", name))
    metrics = evaluate_model(
        loaded.model,
        samples,
        cfg.data,
        cfg.postprocess,
        loaded.device,
        batch_size=cfg.train.eval_batch_size,
        out_dir=out,
        overlays=cfg.train.overlays,
        progress=progress,
        store=open_data_store(cfg.cache),
        dist=dist,
    )
    return metrics, out


def eval_samples(cfg: OcrkitConfig) -> list[Sample]:
    """The samples of ``data.val`` (one-line errors when it is unset or holds none)."""
    if cfg.data.val is None:
        raise OcrkitError("no evaluation data: give --data (or set data.val)")
    samples = load_dataset(cfg.data.val, cfg.data.skip_bad).samples
    if not samples:
        raise InputError(cfg.data.val, "the evaluation set is empty (no images with ground truth)")
    return samples


def expand_images(inputs: list[Path], skip_bad: bool = False) -> list[Path]:
    """Image files as given; directories contribute their image files (sorted); every image is
    checked before the model runs (``load_image_paths``)."""
    paths = load_image_paths(inputs, skip_bad)
    if not paths:
        raise OcrkitError("no images to predict on")
    return paths


def predict_images(
    loaded: LoadedModel, images: list[Path], out_dir: Path | None, name: str = "exp", progress: bool = False
) -> tuple[list[ImagePrediction], Path]:
    refuse_several_processes("predict")
    cfg = loaded.cfg
    paths = expand_images(images, cfg.data.skip_bad)
    out = Path(out_dir) if out_dir else create_run_dir(cfg.log.dir, "predict", name)
    predictions = predict_files(
        loaded.model,
        paths,
        cfg.data,
        cfg.postprocess,
        loaded.device,
        out,
        batch_size=cfg.train.eval_batch_size,
        progress=progress,
        store=open_data_store(cfg.cache),
    )
    return predictions, out

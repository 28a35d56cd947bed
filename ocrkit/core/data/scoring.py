"""Scoring prediction files against ground-truth files on disk (``ocrkit eval --gt-dir --pred-dir``):
the file reading of data/formats.py joined to the metric of geometry/metric.py."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from ocrkit.core.data.formats import read_icdar_gt, read_predictions
from ocrkit.core.errors import InputError
from ocrkit.core.geometry.metric import DetectionMetrics, evaluate


def _gt_files(gt_dir: Path) -> dict[str, Path]:
    """``{stem: path}`` for ``gt_<stem>.txt`` files in ``gt_dir`` or, failing that, ``gt_dir/gts``."""
    if not gt_dir.is_dir():
        raise InputError(gt_dir, "ground-truth directory not found")
    for folder in (gt_dir, gt_dir / "gts"):
        if folder.is_dir():
            files = {p.stem[len("gt_") :]: p for p in sorted(folder.glob("gt_*.txt")) if p.is_file()}
            if files:
                return files
    raise InputError(gt_dir, "no gt_<stem>.txt files here or in gts/")


def _prediction_files(pred_dir: Path, stems: Mapping[str, Path]) -> dict[str, Path]:
    if not pred_dir.is_dir():
        raise InputError(pred_dir, "prediction directory not found")
    files = {p.stem[len("res_") :]: p for p in sorted(pred_dir.glob("res_*.txt")) if p.is_file()}
    for stem, path in files.items():
        if stem not in stems:
            raise InputError(path, f"no ground truth gt_{stem}.txt for this prediction file")
    return files


def evaluate_dirs(gt_dir: str | Path, pred_dir: str | Path) -> DetectionMetrics:
    """Score ``pred_dir/res_<stem>.txt`` against ``gt_<stem>.txt`` files (a missing res = none).

    ``gt_dir`` is either a folder of gt files or an ICDAR root holding ``gts/``.
    """
    gt_paths = _gt_files(Path(gt_dir))
    pred_paths = _prediction_files(Path(pred_dir), gt_paths)
    gt = {stem: read_icdar_gt(path)[:2] for stem, path in gt_paths.items()}
    det = {stem: read_predictions(path)[0] for stem, path in pred_paths.items()}
    return evaluate(gt, det)

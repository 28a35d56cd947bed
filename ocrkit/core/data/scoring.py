"""Scoring prediction files against ground-truth files on disk (``ocrkit eval --gt-dir --pred-dir``):
the file reading of data/formats.py joined to the metric of geometry/metric.py.

Rules (beside those of the two file formats, in data/formats.py): a ``res_<stem>.txt`` without its
``gt_<stem>.txt`` is an error; a ground-truth file without its prediction file is scored as an
image with no detections (the ICDAR-2015 protocol), with a warning only when there is no
prediction file at all; other ``.txt`` files in the two folders (a prefix forgotten) are not read,
with a warning. Under ``skip_bad`` an image whose ground-truth or prediction file is bad is
left out of the score (both files), with a warning each and their count.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from ocrkit.core.data.formats import Notices, is_hidden, read_gt_regions, read_prediction_lines, skip_or_raise
from ocrkit.core.errors import InputError
from ocrkit.core.geometry.metric import DetectionMetrics, evaluate


def _named_files(folder: Path, prefix: str, notices: Notices) -> dict[str, Path]:
    """``{stem: path}`` for ``<prefix><stem>.txt`` in ``folder``; other ``.txt`` files (a prefix
    forgotten or mistyped) are noted as not read. Everything else is left alone: an eval run's
    folder also holds ``metrics.json``, ``json/`` and ``overlays/``."""
    files, other = {}, []
    for path in sorted(folder.glob("*.txt")):
        if is_hidden(path) or not path.is_file():
            continue
        if path.name.startswith(prefix):
            files[path.stem[len(prefix) :]] = path
        else:
            other.append(path.name)
    if other:
        listed = ", ".join(other[:3]) + (", ..." if len(other) > 3 else "")
        notices.add(f"{len(other)} .txt file(s) not read, not named {prefix}<stem>.txt: {listed}", folder)
    return files


def _gt_files(gt_dir: Path, notices: Notices) -> dict[str, Path]:
    """``{stem: path}`` for ``gt_<stem>.txt`` files in ``gt_dir`` or, failing that, ``gt_dir/gts``."""
    if not gt_dir.is_dir():
        raise InputError(gt_dir, "ground-truth directory not found")
    for folder in (gt_dir, gt_dir / "gts"):
        if folder.is_dir():
            found = Notices()
            files = _named_files(folder, "gt_", found)
            if files:
                notices.merge(found)
                return files
    raise InputError(gt_dir, "no gt_<stem>.txt files here or in gts/")


def _prediction_files(pred_dir: Path, notices: Notices) -> dict[str, Path]:
    if not pred_dir.is_dir():
        raise InputError(pred_dir, "prediction directory not found")
    files = _named_files(pred_dir, "res_", notices)
    if not files:
        notices.add("no res_<stem>.txt files: every image is scored as without detections", pred_dir)
    return files


def evaluate_dirs(gt_dir: str | Path, pred_dir: str | Path, skip_bad: bool = False) -> DetectionMetrics:
    """Score ``pred_dir/res_<stem>.txt`` against ``gt_<stem>.txt`` files (a missing res = none).

    ``gt_dir`` is either a folder of gt files or an ICDAR root holding ``gts/``.
    """
    notices = Notices()
    gt_paths = _gt_files(Path(gt_dir), notices)
    pred_paths = _prediction_files(Path(pred_dir), notices)
    skipped: list[str] = []
    gt: dict[str, tuple[list[np.ndarray], list[bool]]] = {}
    det: dict[str, list[np.ndarray]] = {}
    for stem in sorted(set(gt_paths) | set(pred_paths)):
        try:
            if stem not in gt_paths:
                raise InputError(pred_paths[stem], f"no ground truth gt_{stem}.txt for this prediction file")
            found = Notices()
            regions = read_gt_regions(gt_paths[stem], found)
            polygons = read_prediction_lines(pred_paths[stem], found)[0] if stem in pred_paths else []
        except InputError as err:
            skip_or_raise(err, skip_bad, skipped)
            continue
        notices.merge(found)
        gt[stem] = ([r.polygon for r in regions], [r.ignore for r in regions])
        det[stem] = polygons
    notices.warn(stacklevel=2)
    if skip_bad and skipped:
        warnings.warn(f"{pred_dir}: skipped {len(skipped)} bad sample(s)", stacklevel=2)
    return evaluate(gt, det)

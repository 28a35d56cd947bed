"""The ICDAR-2015 detection metric, as DB's ``iou.py`` (``DetectionIoUEvaluator``) computes it.

Per image:

1. Polygons with fewer than 3 points, non-finite coordinates, or that shapely finds invalid or
   not simple are dropped and counted (``invalid_gt`` / ``invalid_det``). DB drops them silently
   (the official RRC script keeps them); we follow DB and report how many.
2. A gt region with the ``###`` transcription (``ignore=True``) is don't-care. A detection whose
   intersection with ANY don't-care gt is more than 0.5 of the detection's own area is itself
   don't-care.
3. One-to-one greedy matching: for each care gt in input order, the first care detection in input
   order that is still unmatched and has IoU > 0.5 (strict) becomes its match.

Globally, precision = Σmatched / Σcare detections and recall = Σmatched / Σcare gt over all images
(detections on images without care gt count as false positives); hmean = 2PR / (P + R); each is 0
where its denominator is 0.

Speed: only pairs whose bounding boxes overlap can have a non-zero intersection, so areas are
computed with shapely's vectorized operations on those pairs alone. The operations and their
argument order are the same as DB's, so the numbers compared with 0.5 are identical.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import shapely

IOU_THRESHOLD = 0.5  # a match needs IoU strictly above this
DONT_CARE_OVERLAP = 0.5  # a detection is don't-care when more than this share lies in a ### region


@dataclass(frozen=True)
class ImageCounts:
    """Counts for one image; invalid polygons are excluded from every other count."""

    n_care_gt: int
    n_care_det: int
    n_matched: int
    n_dontcare_gt: int
    n_dontcare_det: int
    invalid_gt: int
    invalid_det: int


@dataclass(frozen=True)
class MatchedPair:
    """A true positive: indices into the image's input gt and detection lists, and their IoU."""

    gt: int
    det: int
    iou: float


@dataclass(frozen=True)
class ImageResult:
    """One image's outcome.

    Per-image precision/recall follow DB's iou.py: with no care gt, recall = 1 and precision = 1
    if there is no care detection either, else 0; with care gt, recall = matched / care gt and
    precision = matched / care det (0 without care detections). These are informational: the
    reported metric is the global one built from the summed counts.
    """

    counts: ImageCounts
    pairs: tuple[MatchedPair, ...]
    dontcare_det: tuple[int, ...]  # input indices of detections that fell in ### regions
    precision: float
    recall: float
    hmean: float


@dataclass(frozen=True)
class DetectionMetrics:
    """Global precision/recall/hmean over a set of images, with the summed counts."""

    precision: float
    recall: float
    hmean: float
    matched: int
    gt_care: int
    det_care: int
    gt_dontcare: int
    det_dontcare: int
    invalid_gt: int
    invalid_det: int
    per_image: dict[str, ImageResult] = field(default_factory=dict)

    @property
    def images(self) -> int:
        return len(self.per_image)

    def to_dict(self) -> dict:
        """A JSON-serialisable summary (plain Python numbers only)."""
        return {
            "precision": self.precision,
            "recall": self.recall,
            "hmean": self.hmean,
            "matched": self.matched,
            "gt_care": self.gt_care,
            "det_care": self.det_care,
            "invalid_gt": self.invalid_gt,
            "invalid_det": self.invalid_det,
            "images": self.images,
            "per_image": {
                stem: {
                    "precision": r.precision,
                    "recall": r.recall,
                    "hmean": r.hmean,
                    "counts": asdict(r.counts),
                }
                for stem, r in self.per_image.items()
            },
        }


def _ratio(numerator: float, denominator: float) -> float:
    return float(numerator) / denominator if denominator else 0.0


def _hmean(precision: float, recall: float) -> float:
    total = precision + recall
    return 2.0 * precision * recall / total if total else 0.0


def _as_points(polygon: np.ndarray) -> np.ndarray:
    points = np.asarray(polygon, dtype=np.float64)
    if points.ndim != 2 or points.shape[1] != 2:
        raise ValueError(f"a polygon must be an (n, 2) array of points, got shape {points.shape}")
    return points


def _polygon_or_none(points: np.ndarray) -> shapely.Polygon | None:
    # Fewer than 3 points (or 3 with the ring already closed) cannot form a ring and shapely
    # raises: the protocol counts such a polygon as invalid.
    if len(points) < 3 or not np.isfinite(points).all():
        return None
    try:
        return shapely.Polygon(points)
    except (ValueError, shapely.errors.GEOSException):
        return None


def _to_geometries(polygons: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Shapely polygons (None where unusable) and a mask of those the protocol keeps."""
    geoms = np.full(len(polygons), None, dtype=object)
    for i, polygon in enumerate(polygons):
        geoms[i] = _polygon_or_none(_as_points(polygon))
    keep = shapely.is_valid(geoms) & shapely.is_simple(geoms)  # both False for None
    return geoms, np.asarray(keep, dtype=bool)


def _overlapping_pairs(
    a_bounds: np.ndarray, a_mask: np.ndarray, b_bounds: np.ndarray, b_mask: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Index pairs (i, j) with a_mask[i], b_mask[j] and touching bounding boxes.

    Pairs with disjoint boxes have zero intersection, so they can never pass a > 0.5 test.
    """
    a, b = a_bounds[:, None, :], b_bounds[None, :, :]
    overlap = (a[..., 0] <= b[..., 2]) & (b[..., 0] <= a[..., 2])
    overlap &= (a[..., 1] <= b[..., 3]) & (b[..., 1] <= a[..., 3])
    overlap &= a_mask[:, None] & b_mask[None, :]
    rows, cols = np.nonzero(overlap)
    return rows, cols


def _dontcare_detections(
    gt_geoms: np.ndarray,
    gt_bounds: np.ndarray,
    dontcare_gt: np.ndarray,
    det_geoms: np.ndarray,
    det_bounds: np.ndarray,
    valid_det: np.ndarray,
) -> np.ndarray:
    """Mask of detections with more than half of their own area inside some don't-care gt."""
    flagged = np.zeros(len(det_geoms), dtype=bool)
    g, d = _overlapping_pairs(gt_bounds, dontcare_gt, det_bounds, valid_det)
    if g.size:
        inter = shapely.area(shapely.intersection(gt_geoms[g], det_geoms[d]))
        det_area = shapely.area(det_geoms[d])
        share = np.divide(inter, det_area, out=np.zeros_like(inter), where=det_area != 0)
        flagged[d[share > DONT_CARE_OVERLAP]] = True
    return flagged


def _iou_matrix(
    gt_geoms: np.ndarray,
    gt_bounds: np.ndarray,
    care_gt: np.ndarray,
    det_geoms: np.ndarray,
    det_bounds: np.ndarray,
    care_det: np.ndarray,
) -> np.ndarray:
    """IoU of every care gt with every care detection (0 elsewhere), as DB computes it."""
    iou = np.zeros((len(gt_geoms), len(det_geoms)))
    g, d = _overlapping_pairs(gt_bounds, care_gt, det_bounds, care_det)
    if g.size:
        inter = shapely.area(shapely.intersection(det_geoms[d], gt_geoms[g]))
        union = shapely.area(shapely.union(det_geoms[d], gt_geoms[g]))
        iou[g, d] = np.divide(inter, union, out=np.zeros_like(inter), where=union != 0)
    return iou


def _greedy_matches(iou: np.ndarray, care_gt: np.ndarray, care_det: np.ndarray) -> list[MatchedPair]:
    """Each care gt in order takes the first free care detection with IoU > 0.5 (not the best)."""
    free = care_det.copy()
    pairs = []
    for g in np.flatnonzero(care_gt):
        hits = np.flatnonzero(free & (iou[g] > IOU_THRESHOLD))
        if hits.size:
            d = int(hits[0])
            free[d] = False
            pairs.append(MatchedPair(int(g), d, float(iou[g, d])))
    return pairs


def _image_scores(matched: int, care_gt: int, care_det: int) -> tuple[float, float, float]:
    """Per-image precision, recall, hmean exactly as DB's iou.py reports them."""
    if care_gt == 0:
        recall = 1.0
        precision = 0.0 if care_det > 0 else 1.0
    else:
        recall = matched / care_gt
        precision = _ratio(matched, care_det)
    return precision, recall, _hmean(precision, recall)


def evaluate_image(
    gt_polygons: Sequence[np.ndarray], gt_ignore: Sequence[bool], det_polygons: Sequence[np.ndarray]
) -> ImageResult:
    """Score one image's detections against its ground truth (see the module docstring)."""
    if len(gt_polygons) != len(gt_ignore):
        raise ValueError(f"{len(gt_polygons)} gt polygons but {len(gt_ignore)} ignore flags")
    gt_geoms, valid_gt = _to_geometries(gt_polygons)
    det_geoms, valid_det = _to_geometries(det_polygons)
    gt_bounds = shapely.bounds(gt_geoms).reshape(-1, 4)
    det_bounds = shapely.bounds(det_geoms).reshape(-1, 4)

    ignore = np.asarray(gt_ignore, dtype=bool).reshape(-1)
    dontcare_gt = valid_gt & ignore
    care_gt = valid_gt & ~ignore
    dontcare_det = _dontcare_detections(gt_geoms, gt_bounds, dontcare_gt, det_geoms, det_bounds, valid_det)
    care_det = valid_det & ~dontcare_det

    iou = _iou_matrix(gt_geoms, gt_bounds, care_gt, det_geoms, det_bounds, care_det)
    pairs = _greedy_matches(iou, care_gt, care_det)
    counts = ImageCounts(
        n_care_gt=int(care_gt.sum()),
        n_care_det=int(care_det.sum()),
        n_matched=len(pairs),
        n_dontcare_gt=int(dontcare_gt.sum()),
        n_dontcare_det=int(dontcare_det.sum()),
        invalid_gt=int((~valid_gt).sum()),
        invalid_det=int((~valid_det).sum()),
    )
    precision, recall, hmean = _image_scores(counts.n_matched, counts.n_care_gt, counts.n_care_det)
    dontcare_idx = tuple(int(i) for i in np.flatnonzero(dontcare_det))
    return ImageResult(counts, tuple(pairs), dontcare_idx, precision, recall, hmean)


def combine(per_image: Mapping[str, ImageResult]) -> DetectionMetrics:
    """Global metrics from per-image results: ratios of sums, never a mean of per-image ratios."""
    counts = [r.counts for r in per_image.values()]
    matched = sum(c.n_matched for c in counts)
    gt_care = sum(c.n_care_gt for c in counts)
    det_care = sum(c.n_care_det for c in counts)
    precision, recall = _ratio(matched, det_care), _ratio(matched, gt_care)
    return DetectionMetrics(
        precision=precision,
        recall=recall,
        hmean=_hmean(precision, recall),
        matched=matched,
        gt_care=gt_care,
        det_care=det_care,
        gt_dontcare=sum(c.n_dontcare_gt for c in counts),
        det_dontcare=sum(c.n_dontcare_det for c in counts),
        invalid_gt=sum(c.invalid_gt for c in counts),
        invalid_det=sum(c.invalid_det for c in counts),
        per_image=dict(per_image),
    )


def evaluate(
    gt: Mapping[str, tuple[Sequence[np.ndarray], Sequence[bool]]],
    det: Mapping[str, Sequence[np.ndarray]],
) -> DetectionMetrics:
    """Score detections keyed by image stem against gt ``{stem: (polygons, ignore)}``.

    An image without a ``det`` entry has no detections. A ``det`` stem that is not in ``gt``
    raises ValueError: it is almost always a naming mismatch that would silently skew the score.
    """
    unknown = sorted(stem for stem in det if stem not in gt)
    if unknown:
        shown = ", ".join(repr(s) for s in unknown[:5]) + (", ..." if len(unknown) > 5 else "")
        raise ValueError(f"predictions for {len(unknown)} image stem(s) with no ground truth: {shown}")
    per_image = {stem: evaluate_image(polygons, ignore, det.get(stem, ())) for stem, (polygons, ignore) in gt.items()}
    return combine(per_image)

"""``ocrkit bench maps``: production DB maps vs DB's own algorithm and the exact per-edge oracle.

Cases: ``dense`` (100 random rotated quads), ``sparse`` (the real ICDAR-2015 sample, when
present), ``many-vertex`` (30 curved polygons of 16–32 points), and two growth sweeps: the
polygon count (10, 100, 1000 quads at the given size) and the image size (320, 640, 1280 with
100 quads scaled to the image). Each case runs the three implementations in the same process,
repeated; medians per image and the speed-ups. Correctness is against the exact oracle (shrink
map and masks identical, largest threshold-map difference); DB's own threshold map is not exact
(law-of-cosines distance), and its largest difference from the oracle is reported beside it.

With ``device`` set, the batched torch maps (data/device_maps.py, ``data.label_maps = device``)
run beside them: the loader's part (DB's rules and the pyclipper offsets, ``plan_db_maps``) and
the device's part (every image of the case drawn as one batch, synchronised), per image, with
the same correctness checks against the oracle.

Outputs are dropped as soon as they are made, as a training loader does once a batch is
collated: holding every output alive instead measures fresh-page faults (on this VM up to 2 ms
per image of four 640² maps) rather than the map code.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from ocrkit.core.bench.db_reference import db_reference_maps
from ocrkit.core.bench.timing import median_seconds
from ocrkit.core.config import MapsConfig
from ocrkit.core.data.device_maps import device_db_maps
from ocrkit.core.data.formats import load_icdar_dir
from ocrkit.core.data.image import image_size
from ocrkit.core.geometry.maps import BINARY_MAP_KEYS, make_db_maps, plan_db_maps
from ocrkit.core.geometry.reference_maps import reference_db_maps
from ocrkit.core.geometry.transform import plan_resize

Polygons = list[tuple[list[np.ndarray], list[bool]]]


@dataclass
class MapsCaseResult:
    case: str
    images: int
    size: tuple[int, int]
    db_ms: float  # DB's algorithm, as its code does it
    oracle_ms: float  # the exact per-edge oracle
    production_ms: float
    speedup_vs_db: float
    speedup_vs_oracle: float
    max_thresh_diff: float  # production vs oracle
    binary_maps_identical: bool  # production vs oracle: shrink map, shrink mask, threshold mask
    db_max_thresh_diff: float  # DB's algorithm vs oracle (its distance shortcut)
    device: str | None = None  # the batched torch maps' device, when measured
    device_plan_ms: float | None = None  # the loader's part: rules and offsets
    device_draw_ms: float | None = None  # the device's part, the case's images as one batch
    device_speedup: float | None = None  # production / (plan + draw)
    device_max_thresh_diff: float | None = None  # vs oracle
    device_masks_identical: bool | None = None


def random_rotated_quads(n: int, size: tuple[int, int], seed: int, scale: float = 1.0) -> list[np.ndarray]:
    """Word-like boxes, 10–120 × 8–40 px at ``scale`` 1 (the scale follows the image size)."""
    rng = np.random.default_rng(seed)
    h, w = size
    quads = []
    for _ in range(n):
        center = (rng.uniform(0, w), rng.uniform(0, h))
        box = (rng.uniform(10, 120) * scale, rng.uniform(8, 40) * scale)
        quads.append(cv2.boxPoints((center, box, rng.uniform(-90, 90))).astype(np.float32))
    return quads


def random_curved_polygons(n: int, size: tuple[int, int], seed: int) -> list[np.ndarray]:
    """Curved text lines like Total-Text's: a band of 8–16 points along each side of an arc."""
    rng = np.random.default_rng(seed)
    h, w = size
    polygons = []
    for _ in range(n):
        side = int(rng.integers(8, 17))
        cx, cy = rng.uniform(0, w), rng.uniform(0, h)
        radius, thickness = rng.uniform(40, 160), rng.uniform(8, 30)
        start = rng.uniform(0, 2 * np.pi)
        angles = start + np.linspace(0, rng.uniform(0.4, 1.6), side)
        outer = np.stack([cx + (radius + thickness) * np.cos(angles), cy + (radius + thickness) * np.sin(angles)], 1)
        inner = np.stack([cx + radius * np.cos(angles), cy + radius * np.sin(angles)], 1)[::-1]
        polygons.append(np.concatenate([outer, inner]).astype(np.float32))
    return polygons


def dense_case(size: tuple[int, int], images: int, quads: int = 100, scale: float = 1.0) -> Polygons:
    return [(random_rotated_quads(quads, size, seed, scale), [False] * quads) for seed in range(images)]


def many_vertex_case(size: tuple[int, int], images: int, polygons: int = 30) -> Polygons:
    return [(random_curved_polygons(polygons, size, seed), [False] * polygons) for seed in range(images)]


def sparse_case(sample_dir: Path, size: tuple[int, int]) -> Polygons:
    out = []
    for sample in load_icdar_dir(sample_dir).samples:
        transform = plan_resize(image_size(sample.image_path), size, keep_ratio=False)
        out.append(([transform.forward(p) for p in sample.polygons], sample.ignore))
    return out


def compare(
    case: str,
    layouts: Polygons,
    size: tuple[int, int],
    cfg: MapsConfig,
    repeats: int,
    device: torch.device | None = None,
) -> MapsCaseResult:
    h, w = size
    max_diff, db_max_diff, identical = 0.0, 0.0, True
    for polygons, ignore in layouts:
        got = make_db_maps(polygons, ignore, h, w, cfg).as_dict()
        want = reference_db_maps(polygons, ignore, h, w, cfg)
        db_maps = db_reference_maps(polygons, ignore, h, w, cfg)
        max_diff = max(max_diff, float(np.abs(got["thresh"] - want["thresh"]).max()))
        db_max_diff = max(db_max_diff, float(np.abs(db_maps["thresh"] - want["thresh"]).max()))
        identical &= all(np.array_equal(got[k], want[k]) for k in BINARY_MAP_KEYS)

    def per_image_ms(fn) -> float:
        def run_all() -> None:
            for polygons, ignore in layouts:
                fn(polygons, ignore, h, w, cfg)  # dropped at once, as a loader does

        return median_seconds(run_all, repeats) / len(layouts) * 1e3

    db, oracle, production = (per_image_ms(fn) for fn in (db_reference_maps, reference_db_maps, make_db_maps))
    result = MapsCaseResult(
        case,
        len(layouts),
        size,
        db,
        oracle,
        production,
        db / production,
        oracle / production,
        max_diff,
        identical,
        db_max_diff,
    )
    if device is not None:
        add_device_maps(result, layouts, cfg, repeats, device)
    return result


def add_device_maps(
    result: MapsCaseResult, layouts: Polygons, cfg: MapsConfig, repeats: int, device: torch.device
) -> None:
    """The batched torch maps of the case: correctness against the oracle and per-image times."""
    h, w = result.size

    def plan_all():
        return [plan_db_maps(polygons, ignore, h, w, cfg) for polygons, ignore in layouts]

    plans = plan_all()
    ours = device_db_maps(plans, h, w, cfg, device)
    diff, identical = 0.0, True
    for b, (polygons, ignore) in enumerate(layouts):
        want = reference_db_maps(polygons, ignore, h, w, cfg)
        diff = max(diff, float(np.abs(ours["thresh"][b].cpu().numpy() - want["thresh"]).max()))
        identical &= all(np.array_equal(ours[k][b].cpu().numpy(), want[k]) for k in BINARY_MAP_KEYS)

    def draw() -> None:
        device_db_maps(plans, h, w, cfg, device)
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    draw()  # warm-up: allocator, kernels
    result.device = str(device)
    result.device_plan_ms = median_seconds(plan_all, repeats) / len(layouts) * 1e3
    result.device_draw_ms = median_seconds(draw, repeats) / len(layouts) * 1e3
    result.device_speedup = result.production_ms / (result.device_plan_ms + result.device_draw_ms)
    result.device_max_thresh_diff, result.device_masks_identical = diff, identical


def run_maps_bench(
    sample_dir: Path | None,
    size: tuple[int, int] = (640, 640),
    images: int = 10,
    repeats: int = 5,
    cfg: MapsConfig | None = None,
    growth: bool = True,
    device: torch.device | None = None,
) -> list[MapsCaseResult]:
    cfg = cfg or MapsConfig()

    def case(name: str, layouts: Polygons, at: tuple[int, int] = size) -> MapsCaseResult:
        return compare(name, layouts, at, cfg, repeats, device)

    results = [case("dense: 100 rotated quads", dense_case(size, images))]
    if sample_dir is not None and (sample_dir / "images").is_dir():
        results.append(case("sparse: ICDAR-2015 sample", sparse_case(sample_dir, size)))
    results.append(case("many-vertex: 30 polygons of 16-32 points", many_vertex_case(size, images)))
    if growth:
        few = max(1, images // 3)  # the sweeps' largest cases cost a reference second per image
        for count in (10, 100, 1000):
            results.append(case(f"count: {count} quads", dense_case(size, few, count)))
        for side in (320, 640, 1280):
            square = (side, side)
            results.append(case(f"size: {side}x{side}, 100 quads", dense_case(square, few, 100, side / 640), square))
    return results


def results_as_dicts(results: list[MapsCaseResult]) -> list[dict]:
    return [asdict(r) for r in results]

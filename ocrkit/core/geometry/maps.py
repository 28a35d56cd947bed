"""DB label maps (numpy/opencv/pyclipper only), in DB's order.

1. Vertices are clipped to the image; a polygon is ignored when it is don't-care, |area| < 1,
   its bounding box's shorter side < ``min_text_size``, or its shrink comes back empty. Ignored
   polygons are filled with 0 in the shrink mask.
2. Shrink map: offset by D = A·(1 − r²)/L inwards (round joins); EVERY piece of a shrink that
   splits is filled with 1 (PaddleOCR's choice; DB fills only the first piece, which leaves the
   other pieces labelled "not text" although they are text).
3. Threshold map: for each non-ignored polygon, dilate by +D; inside the dilated polygon's
   bounding box (clipped to the image) each pixel gets 1 − min(1, d/D), d being the EXACT
   distance to the nearest polygon edge (point-to-segment, not DB's law-of-cosines shortcut);
   merged with max and scaled to [thresh_min, thresh_max]. Threshold mask = filled dilated
   polygons. The distance loop is compiled (``border_kernel.py``); pyclipper and opencv do the
   rest.

``reference_maps.py`` holds the plain per-edge oracle this module is tested against.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import pyclipper

from ocrkit.core.config import MapsConfig
from ocrkit.core.geometry.border_kernel import draw_border_closeness, polygon_measures
from ocrkit.core.geometry.transform import ResizeTransform
from ocrkit.core.targets import MAP_KEYS  # noqa: F401  (re-exported: the maps' users import it from here)

BINARY_MAP_KEYS = ("shrink", "shrink_mask", "thresh_mask")  # exactly 0 or 1: stored as bits, batched as uint8


@dataclass
class DBMaps:
    """The four training targets of one image, float32 (H, W)."""

    shrink: np.ndarray
    shrink_mask: np.ndarray
    thresh: np.ndarray
    thresh_mask: np.ndarray

    def as_dict(self) -> dict[str, np.ndarray]:
        return {
            "shrink": self.shrink,
            "shrink_mask": self.shrink_mask,
            "thresh": self.thresh,
            "thresh_mask": self.thresh_mask,
        }


def _next_vertices(polygon: np.ndarray) -> np.ndarray:
    """Each vertex's successor around the ring (np.roll costs 7 µs a call; this costs 1)."""
    return np.concatenate((polygon[1:], polygon[:1]))


def polygon_area(polygon: np.ndarray) -> float:
    """Signed shoelace area (positive for counter-clockwise in x-right, y-up axes)."""
    p = np.asarray(polygon, np.float64)
    q = _next_vertices(p)
    return 0.5 * float(np.dot(p[:, 0], q[:, 1]) - np.dot(q[:, 0], p[:, 1]))


def polygon_perimeter(polygon: np.ndarray) -> float:
    p = np.asarray(polygon, np.float64)
    edges = _next_vertices(p) - p
    return float(np.hypot(edges[:, 0], edges[:, 1]).sum())


def polygon_offsetter(polygon: np.ndarray) -> pyclipper.PyclipperOffset:
    """A pyclipper offsetter holding ``polygon`` (round joins): shrink and dilate share one."""
    offsetter = pyclipper.PyclipperOffset()
    offsetter.AddPath(polygon.tolist(), pyclipper.JT_ROUND, pyclipper.ET_CLOSEDPOLYGON)
    return offsetter


def offset_pieces(offsetter: pyclipper.PyclipperOffset, distance: float) -> list[np.ndarray]:
    """The pieces of the offset by ``distance`` (negative shrinks), int32 (n, 2) each."""
    return [np.asarray(piece, dtype=np.int32).reshape(-1, 2) for piece in offsetter.Execute(distance)]


def offset_polygon(polygon: np.ndarray, distance: float) -> list[np.ndarray]:
    """pyclipper offset with round joins; negative shrinks. Returns the pieces (int32 (n, 2))."""
    return offset_pieces(polygon_offsetter(polygon), distance)


def clip_to_image(polygons: list[np.ndarray], h: int, w: int) -> list[np.ndarray]:
    """Clamp every vertex into [0, w−1]×[0, h−1] (DB's rule; not a geometric clip). Float32
    (n, 2) arrays: views of one clipped copy (one np.clip instead of one per polygon)."""
    if not polygons:
        return []
    vertices = [np.asarray(polygon, dtype=np.float32).reshape(-1, 2) for polygon in polygons]
    clipped = np.clip(np.concatenate(vertices), 0, np.array([w - 1, h - 1], dtype=np.float32))
    return np.split(clipped, np.cumsum([len(v) for v in vertices[:-1]]))


@dataclass
class MapPlan:
    """What the four maps of one image are drawn from, each entry one ``cv2.fillPoly`` call (the
    numba path draws it here; data/device_maps.py draws the same plan on a torch device):

    - ``shrunk``: per kept polygon, the pieces of its shrink by D (int32), filled with 1;
    - ``ignored``: the polygons (int32) set to 0 in the shrink mask;
    - ``borders``: per kept polygon (clipped, float32), its D and its dilation by D (int32),
      which is filled with 1 in the threshold mask and bounds its 1 − d/D band.
    """

    shrunk: list[list[np.ndarray]]
    ignored: list[np.ndarray]
    borders: list[tuple[np.ndarray, float, np.ndarray]]


def plan_db_maps(polygons: list[np.ndarray], ignore: list[bool], h: int, w: int, cfg: MapsConfig) -> MapPlan:
    """DB's rules for polygons in the (h, w) image's own pixel coordinates: which are ignored, and
    the offsets (pyclipper, round joins) of the kept ones."""
    plan = MapPlan([], [], [])
    for polygon, flag in zip(clip_to_image(polygons, h, w), ignore, strict=True):
        pieces, distance, offsetter = [], 0.0, None
        if not flag:
            area, perimeter, shorter_side = polygon_measures(polygon)
            if shorter_side >= cfg.min_text_size and area >= 1 and perimeter > 0:
                distance = area * (1 - cfg.shrink_ratio**2) / perimeter
                offsetter = polygon_offsetter(polygon)
                pieces = offset_pieces(offsetter, -distance)
        if not pieces:  # don't-care, too small, or an empty shrink: ignored, like DB
            plan.ignored.append(polygon.astype(np.int32))
            continue
        plan.shrunk.append(pieces)
        assert offsetter is not None
        dilated = offset_pieces(offsetter, distance)
        if dilated:
            plan.borders.append((polygon, distance, dilated[0]))
    return plan


def draw_plan(plan: MapPlan, h: int, w: int, cfg: MapsConfig, binary_dtype: type = np.float32) -> DBMaps:
    """The four maps of ``plan`` (OpenCV fills, the compiled border kernel)."""
    if binary_dtype is np.float32:
        # One block for the four maps: numpy asks for huge pages for allocations of 4 MB and more,
        # while four separate 640² maps took ~1,600 page faults per image (3.9 ms of 4.3 measured)
        shrink, shrink_mask, thresh, thresh_mask = np.zeros((4, h, w), dtype=np.float32)
    else:
        shrink, shrink_mask, thresh_mask = np.zeros((3, h, w), dtype=binary_dtype)
        thresh = np.zeros((h, w), dtype=np.float32)
    shrink_mask.fill(1)
    for pieces in plan.shrunk:
        cv2.fillPoly(shrink, pieces, 1.0)
    for polygon in plan.ignored:
        cv2.fillPoly(shrink_mask, [polygon], 0.0)
    for polygon, distance, dilated in plan.borders:
        cv2.fillPoly(thresh_mask, [dilated], 1.0)
        draw_border_closeness(polygon, distance, dilated, thresh)
    thresh *= np.float32(cfg.thresh_max - cfg.thresh_min)  # in place: a fresh 640² array costs
    thresh += np.float32(cfg.thresh_min)  # ~0.3 ms of page faults, as much as a sparse image's maps
    return DBMaps(shrink, shrink_mask, thresh, thresh_mask)


def make_db_maps(
    polygons: list[np.ndarray], ignore: list[bool], h: int, w: int, cfg: MapsConfig, binary_dtype: type = np.float32
) -> DBMaps:
    """All four DB targets for polygons given in the (h, w) image's own pixel coordinates.
    ``binary_dtype``: the dtype of the three 0/1 maps (the training loader asks for uint8, what
    it batches them as, instead of converting float32 afterwards); the threshold map is float32."""
    return draw_plan(plan_db_maps(polygons, ignore, h, w, cfg), h, w, cfg, binary_dtype)


def compile_kernels() -> None:
    """Load (or compile) the numba kernels now, in this process: ~0.2 ms once cached on disk but
    ~220 ms for a process's first call. Called before DataLoader workers fork, which then inherit
    the machine code instead of each loading it again every epoch (workers are not persistent)."""
    square = np.array([[1, 1], [30, 1], [30, 20], [1, 20]], dtype=np.float32)
    make_db_maps([square], [False], 32, 32, MapsConfig())


def make_maps_in_network_space(
    polygons: list[np.ndarray], ignore: list[bool], transform: ResizeTransform, cfg: MapsConfig
) -> DBMaps:
    """Maps on the padded network input for polygons given in original-image coordinates."""
    h, w = transform.padded_size
    return make_db_maps([transform.forward(p) for p in polygons], ignore, h, w, cfg)

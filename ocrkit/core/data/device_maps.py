"""DB label maps of a whole batch on a torch device (``data.label_maps = "device"``).

The loader keeps the cheap, irregular half: DB's ignore rules and the pyclipper offsets
(``geometry/maps.py`` ``plan_db_maps``, ~0.1 ms an image). The device draws the rest for every
image of the batch at once, by the same rules as the numba path:

- shrink map, shrink mask and threshold mask: ``data/raster.py``, OpenCV's ``fillPoly`` pixel for
  pixel, so the masks are identical;
- threshold map: for every pixel of each kept polygon's dilated bounding box (clipped to the
  image), 1 − min(d/D, 1), d the exact distance to the polygon's nearest edge (point to
  segment), merged with max and scaled to [thresh_min, thresh_max]; float32 (the numba kernel
  works in float64: they agree within 1e-3, tests/core/data/test_device_maps.py).
"""

from __future__ import annotations

import numpy as np
import torch

from ocrkit.core.config import MapsConfig
from ocrkit.core.data.raster import Groups, fill_groups
from ocrkit.core.geometry.maps import MapPlan

PAIRS_PER_CHUNK = 1 << 22  # (pixel, polygon edge) distances computed at once: bounds the memory


def device_db_maps(
    plans: list[MapPlan], h: int, w: int, cfg: MapsConfig, device: torch.device
) -> dict[str, torch.Tensor]:
    """The four maps (batch, h, w) float32 on ``device`` of one plan per image."""
    batch = len(plans)

    def fill(groups: list[tuple[int, list[np.ndarray]]]) -> torch.Tensor:
        return fill_groups(Groups.build(groups, device), batch, h, w)

    shrink = fill([(b, pieces) for b, plan in enumerate(plans) for pieces in plan.shrunk])
    ignored = fill([(b, [polygon]) for b, plan in enumerate(plans) for polygon in plan.ignored])
    thresh_mask = fill([(b, [border[2]]) for b, plan in enumerate(plans) for border in plan.borders])
    closeness = border_closeness(plans, h, w, device)
    thresh = closeness * (cfg.thresh_max - cfg.thresh_min) + cfg.thresh_min
    return {
        "shrink": shrink.float(),
        "shrink_mask": (~ignored).float(),
        "thresh": thresh,
        "thresh_mask": thresh_mask.float(),
    }


def border_closeness(plans: list[MapPlan], h: int, w: int, device: torch.device) -> torch.Tensor:
    """(batch, h, w) float32: max over each image's kept polygons of 1 − min(d/D, 1) inside the
    polygon's dilated bounding box, 0 elsewhere."""
    canvas = torch.zeros(len(plans) * h * w, dtype=torch.float32, device=device)
    borders = [(b, *border) for b, plan in enumerate(plans) for border in plan.borders]
    if not borders:
        return canvas.view(len(plans), h, w)
    boxes = np.array([_box(dilated, h, w) for _, _, _, dilated in borders], np.int64)  # x0 y0 x1 y1
    widths, heights = boxes[:, 2] - boxes[:, 0] + 1, boxes[:, 3] - boxes[:, 1] + 1
    counts = np.where((widths > 0) & (heights > 0), widths * heights, 0)
    most = max(len(polygon) for _, polygon, _, _ in borders)
    starts = np.zeros((len(borders), most, 2), np.float32)
    ends = np.zeros_like(starts)
    valid = np.zeros((len(borders), most), bool)
    for i, (_, polygon, _, _) in enumerate(borders):
        starts[i, : len(polygon)] = polygon
        ends[i, : len(polygon)] = np.roll(polygon, -1, axis=0)
        valid[i, : len(polygon)] = True
    t = {  # per polygon, on the device
        "image": torch.tensor([b for b, _, _, _ in borders], device=device),
        "distance": torch.tensor([d for _, _, d, _ in borders], dtype=torch.float32, device=device),
        "box": torch.from_numpy(boxes).to(device),
        "width": torch.from_numpy(widths).to(device),
        "a": torch.from_numpy(starts).to(device),
        "b": torch.from_numpy(ends).to(device),
        "valid": torch.from_numpy(valid).to(device),
    }
    # chunks of whole polygons, each holding at most PAIRS_PER_CHUNK (pixel, edge) pairs
    per_polygon = counts * most
    first = 0
    while first < len(borders):
        last, total = first, 0
        while last < len(borders) and (last == first or total + per_polygon[last] <= PAIRS_PER_CHUNK):
            total += per_polygon[last]
            last += 1
        _merge_chunk(canvas, t, torch.from_numpy(counts[first:last]).to(device), first, h, w)
        first = last
    return canvas.view(len(plans), h, w)


def _box(dilated: np.ndarray, h: int, w: int) -> tuple[int, int, int, int]:
    return (
        max(0, int(dilated[:, 0].min())),
        max(0, int(dilated[:, 1].min())),
        min(w - 1, int(dilated[:, 0].max())),
        min(h - 1, int(dilated[:, 1].max())),
    )


def _merge_chunk(
    canvas: torch.Tensor, t: dict[str, torch.Tensor], counts: torch.Tensor, offset: int, h: int, w: int
) -> None:
    """Max-merge the closeness of polygons ``offset`` … ``offset + len(counts)`` into ``canvas``."""
    device = canvas.device
    local = torch.repeat_interleave(torch.arange(len(counts), device=device), counts)
    polygon = local + offset
    k = torch.arange(len(local), device=device) - torch.repeat_interleave(torch.cumsum(counts, 0) - counts, counts)
    width = t["width"][polygon]
    x = t["box"][polygon, 0] + k % width
    y = t["box"][polygon, 1] + torch.div(k, width, rounding_mode="floor")
    point = torch.stack([x, y], dim=1).float()[:, None, :]  # (N, 1, 2)
    a, b = t["a"][polygon], t["b"][polygon]  # (N, E, 2)
    ab = b - a
    length2 = (ab * ab).sum(-1)
    along = ((point - a) * ab).sum(-1) / torch.where(length2 > 0, length2, torch.ones_like(length2))
    along = torch.where(length2 > 0, along.clamp(0, 1), torch.zeros_like(along))  # a point edge: to a
    nearest = a + along[..., None] * ab
    d2 = ((point - nearest) ** 2).sum(-1)
    d2 = torch.where(t["valid"][polygon], d2, torch.full_like(d2, float("inf")))
    ratio = torch.sqrt(d2.min(dim=1).values) / t["distance"][polygon]
    closeness = 1 - ratio.clamp(max=1)
    flat = (t["image"][polygon] * h + y) * w + x
    canvas.scatter_reduce_(0, flat, closeness, reduce="amax", include_self=True)

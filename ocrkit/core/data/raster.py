"""OpenCV's ``fillPoly`` for integer polygons, batched in torch, pixel for pixel.

The device label maps (data/device_maps.py) must give the same masks as the numba path, which
fills with ``cv2.fillPoly``. With integer vertices (``shift`` 0) and 8-connected lines that is,
per call (a "group" of polygons filled together, even-odd):

1. every edge drawn as an 8-connected Bresenham line (OpenCV's ``LineIterator``: endpoints
   clipped to the image by ``clipLine`` first, drawn left to right, the error term starting at
   dx − 2dy), horizontal edges included; and
2. a scanline fill: each non-horizontal edge is active on rows [y_top, y_bottom), its x kept in
   16.16 fixed point (x_top · 2¹⁶ + (y − y_top) · dx, dx = Δx · 2¹⁶ / Δy truncated), the active
   crossings of a row sorted and paired, and each pair (a, b) filling columns ceil(a) … floor(b).

Everything is integer arithmetic (clipLine's in float64, as in OpenCV), so the result is exact on
any device. ``tests/core/data/test_raster.py`` holds it to ``cv2.fillPoly`` on random polygons.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

XY_SHIFT = 16
XY_ONE = 1 << XY_SHIFT


@dataclass
class Groups:
    """Polygons to fill, each belonging to a group (one fillPoly call) on an image of the batch.

    ``edges`` (E, 4) int64 x0 y0 x1 y1 of every edge of every polygon; ``edge_group`` (E,) the
    group of each edge; ``group_image`` (G,) the batch image each group is drawn on.
    """

    edges: torch.Tensor
    edge_group: torch.Tensor
    group_image: torch.Tensor

    @staticmethod
    def build(groups: list[tuple[int, list[np.ndarray]]], device: torch.device) -> Groups:
        """``groups``: (image index, the int polygons of one fillPoly call) each."""
        edges, owners, images = [], [], []
        for g, (image, polygons) in enumerate(groups):
            images.append(image)
            for polygon in polygons:
                p = np.asarray(polygon, np.int64).reshape(-1, 2)
                edges.append(np.concatenate([np.roll(p, 1, axis=0), p], axis=1))  # (previous, this) vertex
                owners.append(np.full(len(p), g, np.int64))
        if not edges:
            empty = torch.zeros(0, dtype=torch.int64, device=device)
            return Groups(empty.view(0, 4), empty, torch.tensor(images, dtype=torch.int64, device=device))
        return Groups(
            torch.from_numpy(np.concatenate(edges)).to(device),
            torch.from_numpy(np.concatenate(owners)).to(device),
            torch.tensor(images, dtype=torch.int64, device=device),
        )


def fill_groups(groups: Groups, batch: int, h: int, w: int) -> torch.Tensor:
    """(batch, h, w) bool: the pixels ``cv2.fillPoly`` would set, each group filled on its image."""
    device = groups.edges.device
    out = torch.zeros(batch * h * w, dtype=torch.bool, device=device)
    if len(groups.edges):
        out[_line_pixels(groups, h, w)] = True
        out |= _scanline_fill(groups, batch, h, w).view(-1)
    return out.view(batch, h, w)


def _ceil_div(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return -torch.div(-a, b, rounding_mode="floor")


def _slide(
    u: torch.Tensor, v: torch.Tensor, du: torch.Tensor, dv: torch.Tensor, target: torch.Tensor, when: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Move the endpoint (u, v) along its line (slope du/dv) to v = ``target`` where ``when``:
    u += (target − v) · du / dv in float64, truncated, as OpenCV's clipLine does."""
    safe = torch.where(dv != 0, dv, torch.ones_like(dv))
    moved = u + torch.trunc((target - v).double() * du.double() / safe.double()).long()
    return torch.where(when, moved, u), torch.where(when, target, v)


def _clip_lines(p: torch.Tensor, h: int, w: int) -> tuple[torch.Tensor, torch.Tensor]:
    """OpenCV's ``clipLine`` on every edge: (clipped x0 y0 x1 y1, kept). A rejected edge keeps
    the coordinates clipLine left it with (the fill reads them)."""
    x1, y1, x2, y2 = p.unbind(1)
    right, bottom = w - 1, h - 1

    def code(x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        c = (x < 0).long() + (x > right).long() * 2
        return c if y is None else c + (y < 0).long() * 4 + (y > bottom).long() * 8

    def rows(c: torch.Tensor) -> torch.Tensor:  # the row an endpoint above or below moves to
        return torch.where(c < 8, torch.zeros_like(c), torch.full_like(c, bottom))

    def columns(c: torch.Tensor) -> torch.Tensor:  # the column one left or right moves to
        return torch.where(c == 1, torch.zeros_like(c), torch.full_like(c, right))

    c1, c2 = code(x1, y1), code(x2, y2)
    todo = ((c1 & c2) == 0) & ((c1 | c2) != 0)
    when = todo & ((c1 & 12) != 0)
    x1, y1 = _slide(x1, y1, x2 - x1, y2 - y1, rows(c1), when)
    c1 = torch.where(when, code(x1), c1)
    when = todo & ((c2 & 12) != 0)
    x2, y2 = _slide(x2, y2, x2 - x1, y2 - y1, rows(c2), when)
    c2 = torch.where(when, code(x2), c2)
    todo &= ((c1 & c2) == 0) & ((c1 | c2) != 0)
    when = todo & (c1 != 0)
    y1, x1 = _slide(y1, x1, y2 - y1, x2 - x1, columns(c1), when)
    c1 = torch.where(when, torch.zeros_like(c1), c1)
    when = todo & (c2 != 0)
    y2, x2 = _slide(y2, x2, y2 - y1, x2 - x1, columns(c2), when)
    c2 = torch.where(when, torch.zeros_like(c2), c2)
    return torch.stack([x1, y1, x2, y2], dim=1), (c1 | c2) == 0


def _line_pixels(groups: Groups, h: int, w: int) -> torch.Tensor:
    """Flat indices into (batch, h, w) of every edge's 8-connected line."""
    clipped, kept = _clip_lines(groups.edges, h, w)
    image = groups.group_image[groups.edge_group][kept]
    clipped = clipped[kept]
    swap = clipped[:, 2] < clipped[:, 0]  # drawn left to right
    x0 = torch.where(swap, clipped[:, 2], clipped[:, 0])
    y0 = torch.where(swap, clipped[:, 3], clipped[:, 1])
    dx = (clipped[:, 2] - clipped[:, 0]).abs()
    dy = torch.where(swap, clipped[:, 1] - clipped[:, 3], clipped[:, 3] - clipped[:, 1])
    sy = torch.where(dy < 0, -torch.ones_like(dy), torch.ones_like(dy))
    ady = dy.abs()
    steep = ady > dx
    major = torch.where(steep, ady, dx)
    minor = torch.where(steep, dx, ady)
    counts = major + 1
    line = torch.repeat_interleave(torch.arange(len(counts), device=counts.device), counts)
    k = torch.arange(len(line), device=counts.device) - torch.repeat_interleave(
        torch.cumsum(counts, 0) - counts, counts
    )
    # the minor offset after k steps: err starts at major − 2·minor, a minor step whenever err < 0
    m = _ceil_div(2 * minor[line] * k - major[line], torch.clamp(2 * major[line], min=1))
    m = torch.where(major[line] > 0, m, torch.zeros_like(m))
    st = steep[line]
    x = x0[line] + torch.where(st, m, k)
    y = y0[line] + sy[line] * torch.where(st, k, m)
    return (image[line] * h + y) * w + x


def _fill_edges(groups: Groups, h: int, w: int) -> tuple[torch.Tensor, ...]:
    """The scanline edges OpenCV collects: (owner, y_top, y_bottom, x at y_top, dx), x and dx in
    16.16 fixed point. An edge with an endpoint outside the image takes its slope (and its x,
    extrapolated back to the top row) from its line clipped to the image, as OpenCV does since
    4.x ("use clipped endpoints to create a more accurate PolyEdge")."""
    e = groups.edges
    clipped, _ = _clip_lines(e, h, w)
    outside = (
        (e[:, [0, 2]] < 0).any(1) | (e[:, [0, 2]] >= w).any(1) | (e[:, [1, 3]] < 0).any(1) | (e[:, [1, 3]] >= h).any(1)
    )
    use_clipped_y = outside & (clipped[:, 1] != clipped[:, 3])
    cx0 = torch.where(outside, clipped[:, 0], e[:, 0]) * XY_ONE
    cx1 = torch.where(outside, clipped[:, 2], e[:, 2]) * XY_ONE
    cy0 = torch.where(use_clipped_y, clipped[:, 1], e[:, 1])
    cy1 = torch.where(use_clipped_y, clipped[:, 3], e[:, 3])
    sloped = e[:, 1] != e[:, 3]
    e, owner = e[sloped], groups.edge_group[sloped]
    cx0, cx1, cy0, cy1 = cx0[sloped], cx1[sloped], cy0[sloped], cy1[sloped]
    dx = torch.div(cx1 - cx0, cy1 - cy0, rounding_mode="trunc")
    down = e[:, 1] < e[:, 3]
    y_top = torch.where(down, e[:, 1], e[:, 3])
    y_bottom = torch.where(down, e[:, 3], e[:, 1])
    x_top = torch.where(down, cx0 + (e[:, 1] - cy0) * dx, cx1 + (e[:, 3] - cy1) * dx)
    return owner, y_top, y_bottom, x_top, dx


def _scanline_fill(groups: Groups, batch: int, h: int, w: int) -> torch.Tensor:
    """(batch · h, w) bool of the even-odd scanline fill of every group."""
    device = groups.edges.device
    owner, y_top, y_bottom, x_top, slope = _fill_edges(groups, h, w)
    first = torch.clamp(y_top, min=0)
    last = torch.clamp(y_bottom, max=h)  # exclusive
    rows = torch.clamp(last - first, min=0)
    edge = torch.repeat_interleave(torch.arange(len(rows), device=device), rows)
    start_of = torch.repeat_interleave(torch.cumsum(rows, 0) - rows, rows)
    y = first[edge] + torch.arange(len(edge), device=device) - start_of
    x = x_top[edge] + (y - y_top[edge]) * slope[edge]
    row_key = groups.group_image[owner[edge]] * h + y  # the image row ...
    key = owner[edge] * h + y  # ... and the group row whose crossings pair up
    order = torch.argsort(x, stable=True)
    order = order[torch.argsort(key[order], stable=True)]
    x, row_key = x[order], row_key[order]
    start, end = x[0::2], x[1::2]
    rows_of = row_key[0::2]
    x1 = torch.clamp(torch.div(start + XY_ONE - 1, XY_ONE, rounding_mode="floor"), min=0)
    x2 = torch.clamp(torch.div(end, XY_ONE, rounding_mode="floor"), max=w - 1)
    drawn = x1 <= x2
    cover = torch.zeros(batch * h, w + 1, dtype=torch.int32, device=device)
    ones = torch.ones(int(drawn.sum()), dtype=torch.int32, device=device)
    cover.index_put_((rows_of[drawn], x1[drawn]), ones, accumulate=True)
    cover.index_put_((rows_of[drawn], x2[drawn] + 1), -ones, accumulate=True)
    return torch.cumsum(cover, dim=1)[:, :w] > 0

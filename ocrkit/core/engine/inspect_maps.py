"""Write one image's DB maps as .npz and as overlays a person can look at."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ocrkit.core.config import MapsConfig
from ocrkit.core.data.formats import read_icdar_gt
from ocrkit.core.data.image import apply_resize, load_image
from ocrkit.core.geometry.maps import MAP_KEYS, make_maps_in_network_space
from ocrkit.core.geometry.transform import plan_resize
from ocrkit.core.viz import draw_ground_truth, heatmap_overlay, save_png


def export_maps(
    image_path: Path, gt_path: Path, size: tuple[int, int] | None, cfg: MapsConfig, out_dir: Path
) -> list[Path]:
    """Maps of the image resized to ``size`` (H, W; default its own size), stretched exactly.

    Writes ``<stem>_maps.npz`` (float32 shrink, shrink_mask, thresh, thresh_mask) and one PNG
    overlay per map with the ground truth drawn on (green care, red don't-care).
    """
    image = load_image(image_path)
    polygons, ignore, _ = read_icdar_gt(gt_path)
    transform = plan_resize(image.shape[:2], size or image.shape[:2], keep_ratio=False)
    resized = apply_resize(image, transform)
    maps = make_maps_in_network_space(polygons, ignore, transform, cfg).as_dict()
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = image_path.stem
    written = [out_dir / f"{stem}_maps.npz"]
    # mypy matches **maps against savez_compressed's allow_pickle: bool too; the keys are map names
    np.savez_compressed(written[0], **maps)  # type: ignore[arg-type]
    scaled_gt = [transform.forward(p) for p in polygons]
    for key in MAP_KEYS:
        values = maps[key]
        if key == "thresh":  # show the [thresh_min, thresh_max] range at full contrast
            values = (values - cfg.thresh_min) / (cfg.thresh_max - cfg.thresh_min)
        overlay = draw_ground_truth(heatmap_overlay(resized, values), scaled_gt, ignore, thickness=1)
        written.append(save_png(out_dir / f"{stem}_{key}.png", overlay))
    return written

"""The best score a perfect model could reach under a config: ground truth → DB maps →
post-processing → ICDAR metric against the same ground truth.

A perfect model outputs exactly the shrink map, so whatever this loses (text ignored as too
small at the network size, boxes that the unclip does not restore, coordinate-mapping errors)
no training can win back. It is also the end-to-end check that maps, post-processing, the
resize inverse and the metric agree with each other.
"""

from __future__ import annotations

from collections.abc import Sequence

from ocrkit.core.config import DataConfig, MapsConfig, PostprocessConfig
from ocrkit.core.data.image import image_size
from ocrkit.core.data.sample import Sample
from ocrkit.core.geometry.maps import make_maps_in_network_space
from ocrkit.core.geometry.metric import DetectionMetrics, evaluate
from ocrkit.core.geometry.postprocess import detect_text
from ocrkit.core.geometry.transform import plan_resize
from ocrkit.core.progress import track


def perfect_model_metrics(
    samples: Sequence[Sample],
    data_cfg: DataConfig,
    maps_cfg: MapsConfig,
    post_cfg: PostprocessConfig,
    progress: bool = False,
) -> DetectionMetrics:
    gt, det = {}, {}
    for sample in track(samples, "perfect-map round trip", total=len(samples), enabled=progress):
        transform = plan_resize(
            image_size(sample.image_path), data_cfg.eval_size, data_cfg.keep_ratio, data_cfg.pad_multiple
        )
        maps = make_maps_in_network_space(sample.polygons, sample.ignore, transform, maps_cfg)
        gt[sample.stem] = (sample.polygons, sample.ignore)
        det[sample.stem] = [d.polygon for d in detect_text(maps.shrink, transform, post_cfg)]
    return evaluate(gt, det)

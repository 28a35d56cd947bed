"""The label check: ground truth -> maps -> boxes with a perfect model scores full marks, and what a
perfect model cannot recover at a small size is reported."""

import pytest

from ocrkit.core.config import DataConfig, MapsConfig, PostprocessConfig
from ocrkit.core.data.formats import load_icdar_dir
from ocrkit.core.engine.label_check import perfect_model_metrics

POST = PostprocessConfig()


@pytest.mark.parametrize(
    "eval_size, keep_ratio", [((256, 256), True), ((256, 256), False), ((320, 192), False), ((480, 640), True)]
)
def test_perfect_maps_round_trip_on_made_data(tiny_icdar, eval_size, keep_ratio):
    samples = load_icdar_dir(tiny_icdar).samples
    data = DataConfig(eval_size=eval_size, keep_ratio=keep_ratio)
    metrics = perfect_model_metrics(samples, data, MapsConfig(), POST)
    assert metrics.gt_care == 6 and metrics.hmean >= 0.99


@pytest.fixture(scope="module")
def synth_val(tmp_path_factory):
    from ocrkit.core.data.synth import generate_synthetic

    root = tmp_path_factory.mktemp("synth")
    generate_synthetic(root, 0, 8, size=(360, 480), seed=11, progress=False)
    return load_icdar_dir(root / "val").samples


@pytest.mark.parametrize("eval_size, keep_ratio", [((352, 480), False), ((480, 480), True), ((544, 800), True)])
def test_perfect_maps_round_trip_on_synthetic_data(synth_val, eval_size, keep_ratio):
    metrics = perfect_model_metrics(
        synth_val, DataConfig(eval_size=eval_size, keep_ratio=keep_ratio), MapsConfig(), POST
    )
    assert metrics.gt_care > 30 and metrics.hmean >= 0.99


@pytest.mark.parametrize(
    "eval_size, keep_ratio", [((736, 1280), True), ((736, 1280), False), ((1088, 1920), True), ((1024, 640), False)]
)
def test_perfect_maps_round_trip_on_icdar_sample(icdar_sample, eval_size, keep_ratio):
    samples = load_icdar_dir(icdar_sample).samples
    data = DataConfig(eval_size=eval_size, keep_ratio=keep_ratio)
    metrics = perfect_model_metrics(samples, data, MapsConfig(), POST)
    assert metrics.gt_care == 21 and metrics.hmean >= 0.99


def test_round_trip_reports_text_lost_to_small_sizes(icdar_sample):
    """What a perfect model cannot recover is reported, not hidden.

    At 640×640 (aspect kept, scale 0.5) 13 px words become 6.5 px: below min_text_size, so they
    get no target. At 1024×1024 (scale 0.8) the 13 px "Genaxis Theatre" is 10.4 px tall; its
    shrunk core is ~3 px, under post-processing's min_size: 20 of 21.
    """
    samples = load_icdar_dir(icdar_sample).samples
    lossy = perfect_model_metrics(samples, DataConfig(eval_size=(640, 640)), MapsConfig(), POST)
    assert lossy.recall < 1.0 and lossy.precision == 1.0
    at_1024 = perfect_model_metrics(samples, DataConfig(eval_size=(1024, 1024)), MapsConfig(), POST)
    assert (at_1024.matched, at_1024.gt_care, at_1024.det_care) == (20, 21, 20)

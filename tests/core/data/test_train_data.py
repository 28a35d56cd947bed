"""TrainData: an input problem met inside a loader worker is the same one-line error as in the
main process, not torch's re-raised traceback."""

import shutil

import pytest
import torch

from ocrkit.core.config import load_config
from ocrkit.core.data.formats import load_dataset
from ocrkit.core.data.train_data import TrainData
from ocrkit.core.errors import OcrkitError


@pytest.mark.parametrize("workers", [0, 1])
def test_an_image_that_vanished_after_loading_is_one_line_naming_it(synth, tmp_path, workers):
    data_dir = tmp_path / "train"
    shutil.copytree(synth / "train", data_dir)
    samples = load_dataset(str(data_dir)).samples
    cfg = load_config(
        overrides=[
            "cache.enabled=false",
            "cache.preload_bytes=0",
            f"data.num_workers={workers}",
            "data.train_size=[64,64]",
            "train.batch_size=2",
        ]
    )
    data = TrainData(cfg, samples, [])
    for sample in samples:
        sample.image_path.unlink()  # after the up-front check: a file removed mid-run
    with pytest.raises(OcrkitError) as error:
        next(data.step_groups(0, 0, torch.device("cpu")))
    message = str(error.value)
    assert "\n" not in message and "Traceback" not in message
    assert "image file not found" in message and str(data_dir) in message

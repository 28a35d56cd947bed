"""Image decoding (EXIF orientation, one-line errors) and normalisation into a canvas slot."""

import numpy as np
import pytest
from PIL import Image

from ocrkit.core.data.image import image_size, load_image
from ocrkit.core.errors import InputError


def test_exif_orientation_applied(tmp_path):
    pixels = np.zeros((20, 40, 3), np.uint8)
    pixels[:, :10] = 255  # a white band on the left of the stored pixels
    image = Image.fromarray(pixels)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    image.save(tmp_path / "rot.jpg", exif=exif.tobytes(), quality=100)
    decoded = load_image(tmp_path / "rot.jpg")
    assert decoded.shape == (40, 20, 3) and image_size(tmp_path / "rot.jpg") == (40, 20)
    assert decoded[:10].mean() > 200 and decoded[-10:].mean() < 50  # the band is now on top


def test_corrupt_image_is_an_input_error(tmp_path):
    (tmp_path / "bad.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    with pytest.raises(InputError, match="bad.jpg: cannot decode image"):
        load_image(tmp_path / "bad.jpg")
    with pytest.raises(InputError, match="not found"):
        load_image(tmp_path / "missing.jpg")


@pytest.mark.parametrize("shape", [(5, 7), (64, 96), (33, 1)])
def test_normalize_matches_the_formula_and_writes_into_a_canvas_slot(shape):
    from ocrkit.core.data.image import normalize

    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (*shape, 3), dtype=np.uint8)
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    expected = (image.transpose(2, 0, 1) / 255.0 - np.array(mean)[:, None, None]) / np.array(std)[:, None, None]
    alone = normalize(image, mean, std)
    assert alone.dtype == np.float32 and alone.shape == (3, *shape)
    assert np.abs(alone - expected).max() < 2e-6
    canvas = np.full((2, 3, shape[0] + 3, shape[1] + 5), 7.0, np.float32)
    returned = normalize(image, mean, std, out=canvas[1, :, : shape[0], : shape[1]])
    assert np.shares_memory(returned, canvas)
    assert np.array_equal(canvas[1, :, : shape[0], : shape[1]], alone)
    assert (
        np.all(canvas[1, :, shape[0] :] == 7.0)
        and np.all(canvas[1, :, :, shape[1] :] == 7.0)
        and np.all(canvas[0] == 7.0)
    )

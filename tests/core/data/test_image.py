"""Image decoding (EXIF orientation, one-line errors) and normalisation into a canvas slot."""

import struct
import warnings
import zlib

import numpy as np
import pytest
from PIL import Image

from ocrkit.core.data.image import check_image, check_images, image_size, load_image
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


# ---------------------------------------------------------------- what an image file must be (check_image)


def _png(path, size=(64, 48)) -> bytes:
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(path)
    return path.read_bytes()


def _with_ihdr_size(png: bytes, width: int, height: int) -> bytes:
    """The PNG with its header claiming another size (CRC recomputed, so only the size is wrong)."""
    header = bytearray(png[8:33])
    struct.pack_into(">II", header, 8, width, height)
    struct.pack_into(">I", header, 21, zlib.crc32(bytes(header[4:21])))
    return png[:8] + bytes(header) + png[33:]


def test_check_image_gives_the_decoded_size(tmp_path):
    _png(tmp_path / "a.png")
    Image.new("RGB", (64, 48)).save(tmp_path / "b.jpg")
    Image.new("RGB", (64, 48)).save(tmp_path / "c.bmp")
    (tmp_path / "d.jpg").write_bytes((tmp_path / "a.png").read_bytes())  # a PNG named .jpg: read as the PNG it is
    assert [check_image(tmp_path / n) for n in ("a.png", "b.jpg", "c.bmp", "d.jpg")] == [(48, 64)] * 4


ALL = ("check", "load", "size")


@pytest.mark.parametrize(
    "make, fragment, readers",
    [
        (lambda p: p.write_bytes(b""), "empty file (0 bytes), not an image", ALL),
        (lambda p: p.write_text("<html>not an image</html>"), "not an image file", ALL),
        (lambda p: p.write_bytes(_png(p)[: len(_png(p)) // 2]), "truncated or corrupt image data", ("check", "load")),
        # without its IEND chunk: Pillow decodes every pixel, but the file is incomplete
        (lambda p: p.write_bytes(_png(p)[:-12]), "truncated or corrupt image data", ("check",)),
        (lambda p: p.mkdir(), "is a directory", ALL),
        (lambda p: None, "image file not found", ALL),
        (lambda p: p.write_bytes(_with_ihdr_size(_png(p), 30_000, 10)), "image is 30000x10 pixels", ALL),
        (lambda p: p.write_bytes(_with_ihdr_size(_png(p), 10_000, 9_000)), "image is 10000x9000 pixels", ALL),
        (lambda p: p.write_bytes(_with_ihdr_size(_png(p), 19_000, 19_000)), "image too large", ALL),  # PIL's bomb error
        (lambda p: Image.fromarray(np.full((8, 8), 40000, np.uint16)).save(p), "I;16 pixels (more than 8 bits", ALL),
    ],
)
def test_bad_image_files_are_one_line_errors(tmp_path, make, fragment, readers):
    path = tmp_path / "x.png"
    make(path)
    for reader in readers:
        read = {"check": check_image, "load": load_image, "size": image_size}[reader]
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # and no DecompressionBombWarning on the way
            with pytest.raises(InputError) as err:
                read(path)
        message = str(err.value)
        assert message.startswith(f"{path}: ") and fragment in message and "\n" not in message


def test_truncated_jpeg_is_named_before_decoding(tmp_path):
    Image.fromarray(np.random.default_rng(2).integers(0, 255, (96, 128, 3), dtype=np.uint8)).save(tmp_path / "a.jpg")
    data = (tmp_path / "a.jpg").read_bytes()
    (tmp_path / "a.jpg").write_bytes(data[: int(len(data) * 0.7)])
    assert image_size(tmp_path / "a.jpg") == (96, 128)  # the header is intact
    with pytest.raises(InputError, match="a.jpg: truncated or corrupt image data"):
        check_image(tmp_path / "a.jpg")


def test_check_images_keeps_the_order_and_returns_the_errors(tmp_path):
    paths = []
    for i in range(6):
        path = tmp_path / f"{i}.png"
        if i == 3:
            path.write_bytes(b"junk")
        else:
            Image.new("RGB", (10 + i, 20)).save(path)
        paths.append(path)
    results = check_images(paths)
    assert [r if isinstance(r, tuple) else "error" for r in results] == [
        (20, 10),
        (20, 11),
        (20, 12),
        "error",
        (20, 14),
        (20, 15),
    ]
    assert "3.png: not an image file" in str(results[3])

"""The store's entry format: exact round trips, masks packed to bits, damaged bytes refused."""

from __future__ import annotations

import numpy as np
import pytest

from ocrkit.core.store.codec import CorruptEntry, decode, encode


def test_codec_round_trips_exactly_and_packs_masks_to_bits():
    rng = np.random.default_rng(0)
    arrays = {
        "thresh": rng.random((64, 80), dtype=np.float32),
        "mask": (rng.random((64, 80)) > 0.5).astype(np.float32),
        "image": rng.integers(0, 255, (5, 7, 3), dtype=np.uint8),
    }
    blob = encode({"kind": "x"}, arrays, bit_arrays=("mask",))
    header, back = decode(blob)
    assert header == {"kind": "x"}
    for name, array in arrays.items():
        assert back[name].dtype == array.dtype and np.array_equal(back[name], array)
    assert len(blob) < arrays["thresh"].nbytes + arrays["image"].nbytes + 64 * 80 // 8 + 1000  # mask: 1 bit a value
    # declared binary but not 0/1: stored raw, still exact
    _, kept = decode(encode({}, {"m": arrays["thresh"]}, bit_arrays=("m",)))
    assert np.array_equal(kept["m"], arrays["thresh"])


@pytest.mark.parametrize("damage", ["truncate", "flip_body", "flip_header", "empty", "foreign"])
def test_codec_rejects_damaged_bytes(damage):
    blob = bytearray(encode({"kind": "x"}, {"a": np.arange(100, dtype=np.float32)}))
    if damage == "truncate":
        blob = blob[:-7]
    elif damage == "flip_body":
        blob[-5] ^= 0x10
    elif damage == "flip_header":
        blob[20] ^= 0x01
    elif damage == "empty":
        blob = bytearray()
    else:
        blob = bytearray(b"PNG\x00" + bytes(100))
    with pytest.raises(CorruptEntry):
        decode(bytes(blob))

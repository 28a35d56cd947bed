"""The maps bench's timing reference (DB's algorithm restated) agrees with the oracle."""

import numpy as np

from conftest import random_quad
from ocrkit.core.config import MapsConfig
from ocrkit.core.geometry.reference_maps import reference_db_maps

CFG = MapsConfig()


def test_db_algorithm_port_agrees_with_the_oracle_where_the_field_notes_say():
    """The bench's timing reference restates DB's algorithm: same masks and shrink map as the
    oracle, threshold map off only where the law-of-cosines shortcut differs (a few pixels)."""
    from ocrkit.core.bench.db_reference import db_reference_maps

    rng = np.random.default_rng(3)
    polygons = [random_quad(rng, 160, 200) for _ in range(20)]
    db = db_reference_maps(polygons, [False] * 20, 160, 200, CFG)
    want = reference_db_maps(polygons, [False] * 20, 160, 200, CFG)
    for key in ("shrink", "shrink_mask", "thresh_mask"):
        np.testing.assert_array_equal(db[key], want[key], err_msg=key)
    off = np.abs(db["thresh"] - want["thresh"]) > 1e-3
    assert 0 < off.mean() < 0.01

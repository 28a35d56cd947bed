"""The recorded resize (plan_resize): content and padded sizes, and the inverse back to the original."""

import numpy as np
import pytest

from ocrkit.core.geometry.transform import plan_resize


def test_plan_resize_keep_ratio_pads_to_multiple():
    t = plan_resize((720, 1280), (736, 1280), keep_ratio=True, pad_multiple=32)
    assert t.content_size == (720, 1280) and t.padded_size == (736, 1280)
    t = plan_resize((300, 200), (640, 640), keep_ratio=True)
    assert t.content_size == (640, 427) and t.padded_size == (640, 448)
    t = plan_resize((300, 200), (640, 320), keep_ratio=False)
    assert t.content_size == t.padded_size == (640, 320)
    assert (t.scale_x, t.scale_y) == (1.6, pytest.approx(640 / 300))


def test_inverse_scales_axes_separately_rounds_and_clips():
    t = plan_resize((300, 200), (640, 320), keep_ratio=False)
    pts = np.array([[10, 20], [199, 299], [150.3, 7.7]], np.float32)
    np.testing.assert_allclose(t.inverse(t.forward(pts)), pts, atol=1e-4)
    back = t.to_original(np.array([[-5, -5], [1000, 1000], [16, 64]], np.float32))
    np.testing.assert_array_equal(back, [[0, 0], [199, 299], [10, 30]])
    assert back.dtype == np.int32

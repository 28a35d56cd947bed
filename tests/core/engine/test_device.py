"""Device resolution: auto, cpu, and one-line errors for CUDA where there is none or an unknown name."""

from __future__ import annotations

import pytest
import torch

from ocrkit.core.engine.device import resolve_device
from ocrkit.core.errors import OcrkitError


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error raised without CUDA")
def test_resolve_device_without_cuda():
    assert resolve_device("auto") == torch.device("cpu")
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(OcrkitError, match="CUDA is not available") as err:
        resolve_device("cuda")
    assert "\n" not in str(err.value)
    with pytest.raises(OcrkitError, match="unknown device"):
        resolve_device("gpu0")

"""ocrkit.core turns OpenCV's thread pool off (it does not survive fork) without importing OpenCV:
an import hook applies the setting however and whenever cv2 is imported. Each case runs in a fresh
interpreter, since this test process has usually imported cv2 already."""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.parametrize(
    "code",
    [
        "import sys, ocrkit.core; assert 'cv2' not in sys.modules; import cv2",  # OpenCV after ocrkit
        "import cv2, ocrkit.core",  # OpenCV first
        "import importlib.util, ocrkit.core; importlib.util.find_spec('cv2'); import cv2",  # looked up first
        "import ocrkit.core, albumentations, cv2",  # imported by a library
        "from ocrkit.core.data.synth import generate_synthetic; import cv2",
    ],
    ids=["after", "before", "find_spec", "library", "synth"],
)
def test_opencv_is_single_threaded_however_it_is_imported(code):
    """ocrkit.core turns OpenCV's thread pool off (it does not survive fork) without importing it."""
    done = subprocess.run(
        [sys.executable, "-c", f"{code}; print(cv2.getNumThreads())"], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["1"]

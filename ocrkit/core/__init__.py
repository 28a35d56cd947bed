"""The ocrkit engine: everything commands, benchmarks and tests call."""

import importlib.abc
import importlib.util
import sys


def _single_threaded(cv2) -> None:
    # OpenCV's own thread pool does not survive fork: a DataLoader worker forked after the parent
    # used OpenCV (e.g. to render the synthetic set) blocks forever on the pool's lock. Parallelism
    # comes from worker processes instead; OpenCV's per-call threading buys little on our sizes.
    cv2.setNumThreads(0)


class _SingleThreadedOpenCV(importlib.abc.MetaPathFinder):
    """Applies ``_single_threaded`` the moment OpenCV is imported, by anyone, before any use.

    Importing OpenCV here instead costs ~140 ms (OpenCV and numpy) in every process that imports
    ocrkit.core, commands that never touch an image (``ocrkit --version``, ``--help``) included.
    """

    def __init__(self) -> None:
        self._finding = False

    def find_spec(self, name, path=None, target=None):
        if name != "cv2" or self._finding:
            return None
        self._finding = True
        try:
            spec = importlib.util.find_spec(name)  # the ordinary finders' answer
        finally:
            self._finding = False
        if spec is None or spec.loader is None:
            return None
        exec_module = spec.loader.exec_module

        def exec_then_configure(module):
            if self in sys.meta_path:  # done after this; OpenCV's loader imports "cv2" again, natively
                sys.meta_path.remove(self)
            exec_module(module)
            _single_threaded(sys.modules[name])

        # Replacing the method on this one loader instance is the point (a wrapper loader would
        # change what OpenCV sees as its __loader__); mypy flags any assignment to a method.
        spec.loader.exec_module = exec_then_configure  # type: ignore[method-assign]
        return spec


if "cv2" in sys.modules:
    _single_threaded(sys.modules["cv2"])
else:
    sys.meta_path.insert(0, _SingleThreadedOpenCV())

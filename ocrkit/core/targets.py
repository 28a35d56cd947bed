"""The names of DB's four training targets, in DB's order.

One definition for the layer that makes the maps (``geometry``: numpy/opencv) and the layer that
learns from them (``model``: torch), which do not import each other.
"""

from __future__ import annotations

MAP_KEYS = ("shrink", "shrink_mask", "thresh", "thresh_mask")

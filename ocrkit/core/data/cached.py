"""The data that ocrkit keeps in the store: how each kind is keyed, produced and re-checked.

Three layers, each a pure function of its fields (docs/store.md has the table):

- ``image``: the decoded RGB uint8 image after its EXIF orientation. Fields: the file's content
  digest and the decoder id. Used by training (before augmentation) and by ``maps precompute``.
- ``maps``: the four DB targets of a sample at the deterministic training geometry (resize to
  fit ``data.train_size``, no augmentation). Fields: the image digest, the sample's polygons and
  don't-care flags, ``train_size`` and every ``maps`` setting. Masks are stored as bits, the
  threshold map as exact float32. Used when training runs without random augmentation
  (``data.augment.enabled = false``, ``--overfit-batches``); after random augmentation the maps
  are regenerated, since they differ every epoch.
- ``tensor``: the eval input of an image before normalisation: decoded and resized to its
  content size (uint8 RGB, channels first as the model takes it), and its recorded resize.
  Fields: the image digest, ``eval_size``, ``keep_ratio``, ``pad_multiple``. Used by validation,
  ``ocrkit eval`` and ``ocrkit predict``, which normalise it straight into the batch
  (``data.mean``/``data.std`` are applied on read, so they are not part of the key: a quarter of
  the bytes of float32, and a read that is cheaper than the normalisation it would save;
  docs/store.md).

Source identity is the xxh3-128 digest of the file's bytes, read on every lookup (0.1 ms for a
130 KB JPEG here): an edited image misses even when its size and mtime are unchanged, which a
size+mtime key would not catch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import xxhash

from ocrkit.core.config import CacheConfig, DataConfig, MapsConfig
from ocrkit.core.data.image import eval_content, load_image
from ocrkit.core.data.kinds import KIND_VERSIONS
from ocrkit.core.data.sample import Sample
from ocrkit.core.errors import InputError
from ocrkit.core.geometry.maps import BINARY_MAP_KEYS, MAP_KEYS, make_db_maps
from ocrkit.core.geometry.transform import ResizeTransform
from ocrkit.core.store.store import Arrays, Store, StoreUnavailable, digest, open_store

MAP_BITS = BINARY_MAP_KEYS
DECODER = "pil-exif-rgb-uint8"


def open_data_store(cfg: CacheConfig) -> Store | None:
    """The store of ``cfg.cache`` holding ocrkit's image, maps and tensor entries (None when the
    cache is disabled)."""
    return open_store(cfg, KIND_VERSIONS)


def source_digest(path: str | Path) -> str:
    try:
        return xxhash.xxh3_128_hexdigest(Path(path).read_bytes())
    except FileNotFoundError:
        raise InputError(path, "image file not found") from None
    except OSError as exc:
        raise InputError(path, f"cannot read image ({exc})") from None


def config_id(config: dict[str, Any]) -> str:
    """A short name for the config half of the fields (what `cache status` shows)."""
    return digest(config)[:12]


class _Layer:
    """One kind of store entry: how it is keyed (``config`` plus per-entry fields), produced on a
    miss and checked on a hit. Without a store (or when it fails to open) every lookup produces.
    """

    kind = ""

    def __init__(self, store: Store | None, config: dict[str, Any]):
        self.store = store
        self.config = config
        self.config_id = config_id(config)

    def check(self, arrays: Arrays, meta: dict[str, Any]) -> str | None:
        """What is wrong with a well-formed entry's arrays for this layer (None: nothing)."""
        raise NotImplementedError

    def _fetch(self, fields: dict[str, Any], produce, bits: tuple[str, ...] = ()) -> tuple[Arrays, dict[str, Any]]:
        if self.store is not None:
            try:
                return self.store.fetch(self.kind, self.config_id, fields, produce, bits, self.check)
            except StoreUnavailable as exc:  # said once per run, not per layer, worker or epoch
                self.store.say_once("unavailable", f"{exc}; continuing without the store")
                self.store = None
        return produce()


# ---------------------------------------------------------------- shape checks (a hit must be usable)


def check_image(arrays: Arrays) -> str | None:
    image = arrays.get("image")
    if image is None or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        return "expected an RGB uint8 image"
    return None


def check_maps(arrays: Arrays, train_size) -> str | None:
    for key in MAP_KEYS:
        array = arrays.get(key)
        if array is None or array.dtype != np.float32 or array.shape != tuple(train_size):
            return f"expected {key} as float32 {list(train_size)}"
    return None


def check_tensor(arrays: Arrays, meta: dict[str, Any]) -> str | None:
    content = arrays.get("content")
    ch, cw = transform_from_meta(meta).content_size
    if content is None or content.dtype != np.uint8 or content.shape != (3, ch, cw):
        return f"expected content as uint8 [3, {ch}, {cw}]"
    return None


# ---------------------------------------------------------------- image


def image_config() -> dict[str, Any]:
    return {"decoder": DECODER}


def produce_image(path: str | Path) -> tuple[Arrays, dict[str, Any]]:
    return {"image": load_image(path)}, {"path": str(path)}


class ImageLayer(_Layer):
    """Decoded RGB uint8 images after EXIF orientation, keyed by the file's content digest; the RAM
    preload is asked first.
    """

    kind = "image"

    def __init__(self, store: Store | None, preloaded: dict[str, np.ndarray] | None = None):
        super().__init__(store, image_config())
        self.preloaded = preloaded or {}

    def check(self, arrays: Arrays, meta: dict[str, Any]) -> str | None:
        return check_image(arrays)

    def load(self, path: str | Path, writable: bool = True) -> np.ndarray:
        """RGB uint8 (H, W, 3). ``writable``: a private copy (the albumentations chain works in
        place); otherwise the preloaded or stored array itself, read-only (a 640² image's copy
        costs ~0.3 ms of a fused sample's few)."""
        return self.load_with_source(path, writable)[0]

    def load_with_source(self, path: str | Path, writable: bool = True) -> tuple[np.ndarray, str | None]:
        """The image and, when the store was consulted, its file's digest (so that a layer
        keyed on the same file need not read and hash it again)."""
        found = self.preloaded.get(str(path))
        if found is not None:
            return (found.copy() if writable else found), None
        if self.store is None:
            return load_image(path), None
        source = source_digest(path)
        arrays, _ = self._fetch({**self.config, "source": source}, lambda: produce_image(path))
        return (np.array(arrays["image"]) if writable else arrays["image"]), source


# ---------------------------------------------------------------- maps


def maps_config(data_cfg: DataConfig, maps_cfg: MapsConfig) -> dict[str, Any]:
    return {
        "geometry": "resize_to_fit",
        "train_size": list(data_cfg.train_size),
        "maps": maps_cfg.model_dump(mode="json"),
    }


def annotation_fields(polygons: Sequence[np.ndarray], ignore: Sequence[bool]) -> dict[str, Any]:
    return {
        "polygons": [np.asarray(p, np.float32).reshape(-1, 2).tolist() for p in polygons],
        "ignore": [bool(f) for f in ignore],
    }


def produce_maps(
    image: np.ndarray, polygons: Sequence[np.ndarray], ignore: Sequence[bool], train_size, maps_cfg: MapsConfig
) -> tuple[np.ndarray, Arrays]:
    """(the resized image, its DB maps) on the deterministic training geometry."""
    from ocrkit.core.data.augment import resize_to_fit  # albumentations: only where augmenting

    resized, moved, flags, _ = resize_to_fit(
        image, [np.asarray(p, np.float32).reshape(-1, 2) for p in polygons], list(ignore), tuple(train_size)
    )
    h, w = train_size
    maps = make_db_maps(moved, flags, h, w, maps_cfg).as_dict()
    return resized, {k: np.ascontiguousarray(maps[k], dtype=np.float32) for k in MAP_KEYS}


class MapsLayer(_Layer):
    """The four DB targets of a sample at the deterministic training geometry (resize to fit
    ``data.train_size``, no augmentation); masks stored as bits, the threshold map as float32.
    """

    kind = "maps"

    def __init__(self, store: Store | None, data_cfg: DataConfig, maps_cfg: MapsConfig):
        super().__init__(store, maps_config(data_cfg, maps_cfg))
        h, w = data_cfg.train_size
        self.train_size = (h, w)
        self.maps_cfg = maps_cfg

    def check(self, arrays: Arrays, meta: dict[str, Any]) -> str | None:
        return check_maps(arrays, self.train_size)

    def fields(self, source: str, sample: Sample) -> dict[str, Any]:
        return {**self.config, "source": source, **annotation_fields(sample.polygons, sample.ignore)}

    def sample(self, sample: Sample, images: ImageLayer) -> tuple[np.ndarray, Arrays]:
        """(resized image, maps) of ``sample`` at the training size, maps from the store if present."""
        image, source = images.load_with_source(sample.image_path)
        if self.store is None:
            return produce_maps(image, sample.polygons, sample.ignore, self.train_size, self.maps_cfg)
        computed: list[np.ndarray] = []

        def produce() -> tuple[Arrays, dict[str, Any]]:
            resized, maps = produce_maps(image, sample.polygons, sample.ignore, self.train_size, self.maps_cfg)
            computed.append(resized)
            return maps, {"path": str(sample.image_path)}

        source = source or source_digest(sample.image_path)
        maps, _ = self._fetch(self.fields(source, sample), produce, MAP_BITS)
        if computed:
            return computed[0], maps
        from ocrkit.core.data.augment import resize_to_fit

        resized = resize_to_fit(image, [], [], self.train_size)[0]
        return resized, {k: np.array(v) for k, v in maps.items()}


# ---------------------------------------------------------------- eval tensors


def tensor_config(data_cfg: DataConfig) -> dict[str, Any]:
    return {
        "eval_size": list(data_cfg.eval_size),
        "keep_ratio": data_cfg.keep_ratio,
        "pad_multiple": data_cfg.pad_multiple,
        "content": "uint8-chw-rgb",
    }


def produce_tensor(path: str | Path, data_cfg: DataConfig) -> tuple[Arrays, dict[str, Any]]:
    content, transform = eval_content(path, data_cfg)
    return {"content": np.ascontiguousarray(content.transpose(2, 0, 1))}, {
        "path": str(path),
        "transform": asdict(transform),
    }


def transform_from_meta(meta: dict[str, Any]) -> ResizeTransform:
    t = meta["transform"]
    return ResizeTransform(tuple(t["orig_size"]), tuple(t["content_size"]), tuple(t["padded_size"]))


class TensorLayer(_Layer):
    """An eval input before normalisation: the image resized to its content size (uint8, channels
    first) with the resize it used; normalised into the batch on read.
    """

    kind = "tensor"

    def __init__(self, store: Store | None, data_cfg: DataConfig):
        super().__init__(store, tensor_config(data_cfg))
        self.data_cfg = data_cfg

    def check(self, arrays: Arrays, meta: dict[str, Any]) -> str | None:
        return check_tensor(arrays, meta)

    def prepare(self, path: str | Path) -> tuple[np.ndarray, ResizeTransform]:
        """(resized content, uint8 3×h×w, read-only; its resize transform)."""
        fields = {**self.config, "source": source_digest(path)} if self.store is not None else {}
        arrays, meta = self._fetch(fields, lambda: produce_tensor(path, self.data_cfg))
        return arrays["content"], transform_from_meta(meta)

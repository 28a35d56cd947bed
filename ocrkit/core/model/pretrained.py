"""Weights of other layouts mapped onto ocrkit's names, checked and loaded (pure torch: the engine
reads the files and downloads).

**Backbones** (``model.pretrained``). ocrkit's ResNet uses torchvision's names (``conv1``, ``bn1``,
``layer1``..``layer4``, ``downsample.0``/``.1``) without the classifier, so a torchvision state dict
maps name for name and its ImageNet classifier ``fc.*`` is reported unused. timm's ``resnet18`` and
``resnet50`` use the same names and shapes (compared tensor by tensor with timm 1.0.31), so
``TIMM_RENAMES``, the explicit table of the timm names that differ, is empty for them; what does
differ is the wrapping: timm's training checkpoints hold the weights under ``state_dict``, and
DataParallel prefixes ``module.``; both are unwrapped. timm's deep-stem variants (``resnet18d``,
``resnet50d``, ...: a stem of three 3×3 convolutions ``conv1.0``..``conv1.6`` and average-pool
shortcuts) have no counterpart in ocrkit's ResNet and are refused with one line.

**DB-family detectors** (``--init-from``). MhLiao/DB saves ``SegDetectorModel.state_dict()``:
``model.module.backbone.*`` (a torchvision-named ResNet plus an unused ``fc`` and ``smooth``) and
``model.module.decoder.*`` (``SegDetector``, or ``SegSpatialScaleDetector`` with ASF), mapped by
``DB_RENAMES``. The mapping is exact because DB's decoder is the same computation as ocrkit's FPN and
heads: 1×1 laterals ``in2..in5``, the same top-down sum, 3×3 ``out2..out5`` to inner/4, the levels
concatenated coarsest first, and ``binarize``/``thresh`` laid out like ``DBHead`` (DB's trailing
Sigmoid has no weights; ocrkit's heads return the logits before it). Refused, with the reason:
deformable backbones (``conv2_offset``: every released DB model is one; dropping the offsets
would load weights that compute something else), ``bias=True`` decoders, ``smooth=True`` or
``serial=True`` threshold heads, and shapes that differ (another ``inner_channels`` or
``head_channels``: the message names the tensor).

Whichever the source: every tensor it provides must have a place of the same shape, and each part
of the network (backbone, FPN, ASF, each head) is loaded whole or left as initialised, never in
part. BatchNorm step counters (``num_batches_tracked``) are neither required nor counted.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field

from torch import Tensor, nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)  # what torchvision's and timm's ImageNet ResNets were trained with
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class TorchvisionWeights:
    """One of torchvision's published weight files. The hex in the file name is the start of the
    file's sha256, which torch.hub checks on download (``check_hash``)."""

    arch: str
    url: str
    tag: str  # torchvision's enum member, e.g. ResNet18_Weights.IMAGENET1K_V1

    @property
    def file_name(self) -> str:
        return self.url.rsplit("/", 1)[-1]

    @property
    def label(self) -> str:
        return f"torchvision {self.arch} ({self.tag})"


# IMAGENET1K_V1 for both: resnet18 has no other, and V1 is the weights DB and mmocr start from.
TORCHVISION_WEIGHTS = {
    "resnet18": TorchvisionWeights(
        "resnet18", "https://download.pytorch.org/models/resnet18-f37072fd.pth", "IMAGENET1K_V1"
    ),
    "resnet50": TorchvisionWeights(
        "resnet50", "https://download.pytorch.org/models/resnet50-0676ba61.pth", "IMAGENET1K_V1"
    ),
}

CLASSIFIER_PREFIX = "fc."  # the ImageNet classifier of torchvision's and timm's ResNets
TIMM_RENAMES: dict[str, str] = {}  # timm name prefix → torchvision/ocrkit name prefix: none for resnet18/50

DB_PREFIXES = ("model.module.", "module.", "model.")  # SegDetectorModel → DataParallel → BasicModel
# (DB name prefix, ocrkit name prefix or None for unused), first match wins.
DB_RENAMES: tuple[tuple[str, str | None], ...] = (
    ("backbone.fc.", None),  # DB's ResNet keeps the ImageNet classifier
    ("backbone.smooth.", None),  # and a 2048→256 convolution its forward never runs
    ("backbone.", "backbone."),
    ("decoder.in2.", "neck.laterals.0."),
    ("decoder.in3.", "neck.laterals.1."),
    ("decoder.in4.", "neck.laterals.2."),
    ("decoder.in5.", "neck.laterals.3."),
    ("decoder.out2.", "neck.smooth.0."),
    ("decoder.out3.0.", "neck.smooth.1."),  # out3..out5 are Sequential(conv, Upsample)
    ("decoder.out4.0.", "neck.smooth.2."),
    ("decoder.out5.0.", "neck.smooth.3."),
    ("decoder.binarize.", "prob_head.layers."),  # DB's name for the probability head
    ("decoder.thresh.", "thresh_head.layers."),
    ("decoder.concat_attention.conv.", "neck.asf.reduce."),
    ("decoder.concat_attention.enhanced_attention.channel_wise.", "neck.asf.channel_gate."),
    ("decoder.concat_attention.enhanced_attention.spatial_wise.", "neck.asf.spatial_gate."),
    ("decoder.concat_attention.enhanced_attention.attention_wise.", "neck.asf.scale_attention."),
)

Mapped = dict[str, tuple[str, Tensor]]  # ocrkit name → (the source's name, tensor)


class WeightsMismatch(ValueError):
    """The weights do not fit the model; the message names the tensor (the caller adds the file)."""


@dataclass
class LoadReport:
    """What a load did: tensors copied, tensors left as initialised (by part), source tensors unused."""

    source: str
    loaded: int
    new: dict[str, int] = field(default_factory=dict)
    unused: list[str] = field(default_factory=list)

    def line(self, what: str) -> str:
        parts = [f"{what}: {self.loaded} tensors from {self.source}"]
        if self.new:
            parts.append("new: " + ", ".join(f"{part} {count}" for part, count in self.new.items()))
        if self.unused:
            parts.append("unused: " + _some(self.unused))
        return "; ".join(parts)


def unwrap_state(obj: object) -> dict[str, Tensor]:
    """A name → tensor dict, from a state dict or a checkpoint holding one under ``state_dict``
    (timm's, and many training scripts'), with DataParallel's ``module.`` prefixes removed."""
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not obj:
        raise WeightsMismatch("not a state dict (expected tensor names mapped to tensors)")
    odd = [str(k) for k, v in obj.items() if not (isinstance(k, str) and isinstance(v, Tensor))]
    if odd:
        raise WeightsMismatch(f"not a state dict: {_some(odd)} is not a named tensor")
    return {key.removeprefix("module."): value for key, value in obj.items()}


def map_backbone(state: Mapping[str, Tensor]) -> tuple[Mapped, list[str]]:
    """torchvision/timm ResNet names → ocrkit's ``backbone.*``; the classifier is unused."""
    mapped: Mapped = {}
    unused = []
    for name, tensor in state.items():
        if name.startswith(CLASSIFIER_PREFIX):
            unused.append(name)
        else:
            mapped["backbone." + _renamed(name, TIMM_RENAMES)] = (name, tensor)
    return mapped, unused


def is_db_state(state: Mapping[str, object]) -> bool:
    """Whether the names are those of a DB-family checkpoint (a backbone and a decoder)."""
    short = {_strip_db_prefix(name).split(".", 1)[0] for name in state}
    return {"backbone", "decoder"} <= short


def map_db_state(state: Mapping[str, Tensor]) -> tuple[Mapped, list[str]]:
    """MhLiao/DB names → ocrkit's, per ``DB_RENAMES``; a name no row matches keeps its own name
    (and so is refused as having no place)."""
    mapped: Mapped = {}
    unused = []
    for name, tensor in state.items():
        short = _strip_db_prefix(name)
        for old, new in DB_RENAMES:
            if short.startswith(old):
                if new is None:
                    unused.append(name)
                else:
                    mapped[new + short[len(old) :]] = (name, tensor)
                break
        else:
            mapped[short] = (name, tensor)
    return mapped, unused


def load_backbone(model: nn.Module, state: Mapping[str, Tensor], source: str) -> LoadReport:
    """Copy a torchvision/timm ResNet into ``model.backbone`` (a DBNet); the rest stays as built."""
    mapped, unused = map_backbone(state)
    return load_mapped(model, mapped, unused, source)


def load_db_state(model: nn.Module, state: Mapping[str, Tensor], source: str) -> LoadReport:
    """Copy a MhLiao/DB detector into a DBNet: backbone, FPN (and ASF), heads, as far as it has them."""
    mapped, unused = map_db_state(state)
    return load_mapped(model, mapped, unused, source)


def load_mapped(model: nn.Module, mapped: Mapped, unused: list[str], source: str) -> LoadReport:
    """Check every mapped tensor against ``model.state_dict()`` (a place, the same shape, whole
    parts, a complete backbone) and copy them in; nothing is copied unless all fit."""
    own = model.state_dict()
    _check_places(mapped, own)
    _check_shapes(mapped, own)
    _check_whole_parts(mapped, own)
    model.load_state_dict({**own, **{name: tensor for name, (_, tensor) in mapped.items()}})
    new = Counter(_display_part(name) for name in own if name not in mapped and _counted(name))
    return LoadReport(source, sum(_counted(name) for name in mapped), dict(new), unused)


def _check_places(mapped: Mapped, own: Mapping[str, Tensor]) -> None:
    homeless = [source for name, (source, _) in mapped.items() if name not in own]
    if not homeless:
        return
    offsets = [name for name in homeless if "conv2_offset" in name]
    if offsets:
        raise WeightsMismatch(
            f"a deformable-convolution ResNet ({offsets[0]}): ocrkit's ResNet has plain convolutions, and "
            "dropping the offsets would load weights that compute something else"
        )
    if any(name.endswith("conv1.0.weight") and "layer" not in name for name in homeless):
        raise WeightsMismatch(
            f"a deep-stem ResNet ({_some(homeless)}; timm's resnet*c/d/s): ocrkit's stem is torchvision's "
            "single 7×7 convolution"
        )
    if any("concat_attention" in name for name in homeless):
        raise WeightsMismatch(f'an adaptive-scale-fusion decoder ({homeless[0]}): set model.neck = "asf"')
    raise WeightsMismatch(f"{len(homeless)} tensors have no place in the model: {_some(homeless)}")


def _check_shapes(mapped: Mapped, own: Mapping[str, Tensor]) -> None:
    for name, (source, tensor) in mapped.items():
        if tensor.shape != own[name].shape:
            raise WeightsMismatch(
                f"{source}: shape {list(tensor.shape)} does not fit the model's {name} {list(own[name].shape)}"
            )


def _check_whole_parts(mapped: Mapped, own: Mapping[str, Tensor]) -> None:
    """A part is loaded whole or not at all, and the backbone always: a half-loaded part is a
    network nobody trained."""
    given = Counter(_part(name) for name in mapped if _counted(name))
    for part, total in Counter(_part(name) for name in own if _counted(name)).items():
        if given[part] == total or (given[part] == 0 and part != "backbone"):
            continue
        lacking = [name for name in own if _part(name) == part and _counted(name) and name not in mapped]
        raise WeightsMismatch(f"no weights for {len(lacking)} of the model's {total} {part} tensors: {_some(lacking)}")


def _part(name: str) -> str:
    """backbone, neck, neck.asf, prob_head or thresh_head."""
    return "neck.asf" if name.startswith("neck.asf.") else name.split(".", 1)[0]


def _display_part(name: str) -> str:
    part = name.split(".", 1)[0]
    return "heads" if part.endswith("_head") else part


def _counted(name: str) -> bool:
    return not name.endswith("num_batches_tracked")


def _renamed(name: str, renames: Mapping[str, str]) -> str:
    for old, new in renames.items():
        if name.startswith(old):
            return new + name[len(old) :]
    return name


def _strip_db_prefix(name: str) -> str:
    for prefix in DB_PREFIXES:
        if name.startswith(prefix):
            return name[len(prefix) :]
    return name


def _some(names: list[str], shown: int = 4) -> str:
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more

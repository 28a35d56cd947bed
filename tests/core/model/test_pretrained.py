"""Pretrained backbones and DB-family detectors mapped onto ocrkit's names (model/pretrained.py).

Where the fixtures come from: ``fixtures/torchvision_resnet{18,50}_state.json`` record the name and
shape of every tensor of torchvision's ``resnet18``/``resnet50`` state dicts, made by running the
class definitions of ``torchvision/models/resnet.py`` from the torchvision 0.29.1 wheel (the
package itself does not import beside this CPU torch: its compiled operators do not load) and
calling ``ResNet(BasicBlock, [2, 2, 2, 2]).state_dict()`` and ``ResNet(Bottleneck, [3, 4, 6,
3]).state_dict()``. Their parameter counts equal torchvision's published ``num_params`` (checked
below). timm 1.0.31's ``resnet18``/``resnet50`` state dicts were compared with the same fixtures
name for name and shape for shape: equal, ``fc`` included, so timm's layout is torchvision's and
``TIMM_RENAMES`` is empty.

The MhLiao/DB names are written out here from DB's modules (``structure/model.py``: SegDetectorModel
wraps BasicModel in DataParallel; ``decoders/seg_detector.py``: ``in2..in5``, ``out2``,
``out3..5`` as ``Sequential(conv, Upsample)``, ``binarize``/``thresh`` Sequentials;
``decoders/feature_attention.py``: ``ScaleFeatureSelection``), not from the mapping under test, and
DB's decoder is recomputed with functional torch to show that the mapped model computes the same.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from ocrkit.core.config import ModelConfig
from ocrkit.core.model import build_model
from ocrkit.core.model.pretrained import (
    TIMM_RENAMES,
    WeightsMismatch,
    load_backbone,
    load_db_state,
    map_backbone,
    unwrap_state,
)

FIXTURES = Path(__file__).parent / "fixtures"
ARCHS = ["resnet18", "resnet50"]
SMALL_HEADS = {"inner_channels": 16, "head_channels": 4}  # a full-width trunk, tiny neck and heads
TORCHVISION_NUM_PARAMS = {"resnet18": 11_689_512, "resnet50": 25_557_032}  # ResNet*_Weights.meta


def recorded_shapes(arch: str) -> dict[str, list[int]]:
    return json.loads((FIXTURES / f"torchvision_{arch}_state.json").read_text())["tensors"]


def random_state(arch: str, seed: int = 0) -> dict[str, torch.Tensor]:
    """A torchvision-layout state dict of ``arch``: the recorded names and shapes, random values."""
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for name, shape in recorded_shapes(arch).items():
        if name.endswith("num_batches_tracked"):
            state[name] = torch.tensor(1000)
        else:
            state[name] = torch.randn(shape, generator=generator)
    return state


def saved_and_reloaded(state: object, tmp_path: Path) -> object:
    path = tmp_path / "weights.pth"
    torch.save(state, path)
    return torch.load(path, map_location="cpu", weights_only=True)


def model_for(arch: str, **kw):
    torch.manual_seed(0)
    return build_model(ModelConfig(backbone=arch, **{**SMALL_HEADS, **kw}))


def counted(names) -> list[str]:
    return [n for n in names if not n.endswith("num_batches_tracked")]


# ---------------------------------------------------------------- torchvision and timm backbones


@pytest.mark.parametrize("arch", ARCHS)
def test_the_fixture_is_torchvisions_network(arch):
    shapes = recorded_shapes(arch)
    params = [n for n in shapes if not n.endswith(("running_mean", "running_var", "num_batches_tracked"))]
    assert sum(torch.Size(shapes[n]).numel() for n in params) == TORCHVISION_NUM_PARAMS[arch]


@pytest.mark.parametrize("arch", ARCHS)
def test_every_torchvision_backbone_tensor_has_an_ocrkit_tensor_of_its_shape(arch):
    state = {name: torch.empty(shape) for name, shape in recorded_shapes(arch).items()}
    mapped, unused = map_backbone(state)
    own = {name: list(t.shape) for name, t in model_for(arch).state_dict().items() if name.startswith("backbone.")}
    assert {name: list(t.shape) for name, (_, t) in mapped.items()} == own  # every one, both ways
    assert unused == ["fc.weight", "fc.bias"]


@pytest.mark.parametrize("arch", ARCHS)
def test_a_saved_and_reloaded_torchvision_state_loads_into_the_backbone_only(arch, tmp_path):
    state = saved_and_reloaded(random_state(arch), tmp_path)
    model = model_for(arch)
    before = {name: t.clone() for name, t in model.state_dict().items()}
    report = load_backbone(model, unwrap_state(state), "weights.pth")
    after = model.state_dict()
    for name, tensor in state.items():
        if not name.startswith("fc."):
            assert torch.equal(after["backbone." + name], tensor), name
    for name in after:
        if not name.startswith("backbone."):
            assert torch.equal(after[name], before[name]), name  # neck and heads stay as built
    backbone_tensors = len(counted(n for n in state if not n.startswith("fc.")))
    assert report.loaded == backbone_tensors
    assert report.new == {"neck": 8, "heads": 26}  # 4 laterals + 4 smoothing convs; 2 heads of 13
    assert report.line("pretrained backbone") == (
        f"pretrained backbone: {backbone_tensors} tensors from weights.pth; new: neck 8, heads 26; "
        "unused: fc.weight, fc.bias"
    )


def test_resnet18_loads_100_tensors():
    report = load_backbone(model_for("resnet18"), random_state("resnet18"), "x")
    assert report.loaded == 100  # 20 convolutions + 20 BatchNorms × (weight, bias, mean, var)


def test_the_step_counters_may_be_absent():
    # files saved before torch 0.4.1 have no num_batches_tracked; nothing is lost without them
    state = {n: t for n, t in random_state("resnet18").items() if not n.endswith("num_batches_tracked")}
    assert load_backbone(model_for("resnet18"), state, "x").loaded == 100


def test_a_shape_mismatch_is_refused_naming_the_tensor_and_nothing_is_copied():
    state = random_state("resnet18")
    state["layer3.1.conv2.weight"] = torch.randn(256, 256, 1, 1)
    model = model_for("resnet18")
    before = model.backbone.conv1.weight.clone()
    with pytest.raises(WeightsMismatch) as error:
        load_backbone(model, state, "x")
    message = str(error.value)
    assert "layer3.1.conv2.weight: shape [256, 256, 1, 1]" in message and "[256, 256, 3, 3]" in message
    assert "\n" not in message
    assert torch.equal(model.backbone.conv1.weight, before)


def test_weights_of_the_other_depth_are_refused_naming_a_tensor():
    with pytest.raises(WeightsMismatch, match=r"tensors have no place in the model: layer1\.0\.conv3\.weight"):
        load_backbone(model_for("resnet18"), random_state("resnet50"), "x")


def test_an_incomplete_backbone_is_refused_naming_what_is_missing():
    state = random_state("resnet18")
    del state["layer4.1.bn2.running_var"]
    with pytest.raises(WeightsMismatch, match=r"no weights for 1 of the model's 100 backbone tensors: "):
        load_backbone(model_for("resnet18"), state, "x")


@pytest.mark.parametrize("arch", ARCHS)
def test_a_timm_training_checkpoint_loads(arch, tmp_path):
    # timm's train.py saves {"epoch", "arch", "state_dict", ...}; a DataParallel model adds "module."
    weights = random_state(arch, seed=3)
    checkpoint = {"epoch": 3, "arch": arch, "state_dict": {"module." + n: t for n, t in weights.items()}}
    state = unwrap_state(saved_and_reloaded(checkpoint, tmp_path))
    assert TIMM_RENAMES == {}  # timm's resnet18/50 names are torchvision's (see the module docstring)
    model = model_for(arch)
    report = load_backbone(model, state, "timm.pth")
    assert report.unused == ["fc.weight", "fc.bias"]
    assert torch.equal(model.backbone.layer4[1].conv2.weight, weights["layer4.1.conv2.weight"])


def test_a_timm_deep_stem_is_refused_in_one_line():
    state = {n: t for n, t in random_state("resnet18").items() if not n.startswith(("conv1.", "bn1."))}
    state |= {"conv1.0.weight": torch.randn(32, 3, 3, 3), "conv1.1.weight": torch.randn(32)}
    with pytest.raises(WeightsMismatch, match="deep-stem ResNet .*conv1.0.weight.*single 7×7"):
        load_backbone(model_for("resnet18"), state, "x")


@pytest.mark.parametrize("content", [[1, 2], {}, {"a": torch.zeros(1), "b": "text"}])
def test_what_is_not_a_state_dict_is_refused(content):
    with pytest.raises(WeightsMismatch, match="not a state dict"):
        unwrap_state(content)


def test_the_real_torchvision_matches_the_fixture():
    try:
        from torchvision.models import resnet18, resnet50
    except Exception as exc:  # not installed, or installed for another torch (its operators fail to load)
        pytest.skip(f"torchvision does not import here: {exc.__class__.__name__}: {exc}")
    for arch, make in (("resnet18", resnet18), ("resnet50", resnet50)):
        state = make().state_dict()
        assert {n: list(t.shape) for n, t in state.items()} == recorded_shapes(arch)
        load_backbone(model_for(arch), state, arch)


# ---------------------------------------------------------------- MhLiao/DB checkpoints (--init-from)

INNER = 32  # DB's heads and levels are inner // 4 wide: ocrkit's head_channels = INNER // 4
DB_MODEL = {"inner_channels": INNER, "head_channels": INNER // 4}


def _conv(out: int, inp: int, k: int) -> list[int]:
    return [out, inp, k, k]


def _bn(prefix: str, channels: int) -> dict[str, list[int]]:
    names = ("weight", "bias", "running_mean", "running_var")
    return {f"{prefix}.{n}": [channels] for n in names} | {f"{prefix}.num_batches_tracked": []}


def _db_head(name: str) -> dict[str, list[int]]:
    quarter = INNER // 4
    shapes = {f"{name}.0.weight": _conv(quarter, INNER, 3)} | _bn(f"{name}.1", quarter)
    shapes |= {f"{name}.3.weight": [quarter, quarter, 2, 2], f"{name}.3.bias": [quarter]}  # ConvTranspose2d
    shapes |= _bn(f"{name}.4", quarter) | {f"{name}.6.weight": [quarter, 1, 2, 2], f"{name}.6.bias": [1]}
    return shapes


def db_shapes(arch: str, thresh: bool = True, asf: bool = False) -> dict[str, list[int]]:
    """The names and shapes of DB's SegDetectorModel.state_dict() (bias=False, smooth=False,
    serial=False, as DB's configs have them), inner_channels = INNER."""
    c2, c3, c4, c5 = (64, 128, 256, 512) if arch == "resnet18" else (256, 512, 1024, 2048)
    shapes = {f"backbone.{n}": s for n, s in recorded_shapes(arch).items()}  # fc included
    shapes |= {"backbone.smooth.weight": _conv(256, 2048, 1), "backbone.smooth.bias": [256]}
    for level, channels in (("in5", c5), ("in4", c4), ("in3", c3), ("in2", c2)):
        shapes[f"decoder.{level}.weight"] = _conv(INNER, channels, 1)
    for level in ("out5.0", "out4.0", "out3.0", "out2"):
        shapes[f"decoder.{level}.weight"] = _conv(INNER // 4, INNER, 3)
    shapes |= {f"decoder.{n}": s for n, s in _db_head("binarize").items()}
    if thresh:
        shapes |= {f"decoder.{n}": s for n, s in _db_head("thresh").items()}
    if asf:
        quarter = INNER // 4
        attention = "decoder.concat_attention.enhanced_attention"
        shapes |= {
            "decoder.concat_attention.conv.weight": _conv(quarter, INNER, 3),
            "decoder.concat_attention.conv.bias": [quarter],
            f"{attention}.channel_wise.1.weight": _conv(quarter // 4, quarter, 1),
            f"{attention}.channel_wise.3.weight": _conv(quarter, quarter // 4, 1),
            f"{attention}.spatial_wise.0.weight": _conv(1, 1, 3),
            f"{attention}.spatial_wise.2.weight": _conv(1, 1, 1),
            f"{attention}.attention_wise.0.weight": _conv(4, quarter, 1),
        }
    return shapes


def db_state(arch: str = "resnet18", prefix: str = "model.module.", **kw) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    state = {}
    for name, shape in db_shapes(arch, **kw).items():
        if name.endswith("num_batches_tracked"):
            state[prefix + name] = torch.tensor(7)
        elif name.endswith("running_var"):
            state[prefix + name] = torch.rand(shape, generator=generator) + 0.5
        else:
            state[prefix + name] = torch.randn(shape, generator=generator) * 0.1
    return state


def _db_bn(x, d, name):
    return F.batch_norm(x, d[f"{name}.running_mean"], d[f"{name}.running_var"], d[f"{name}.weight"], d[f"{name}.bias"])


def db_decoder(d: dict[str, torch.Tensor], features, asf: bool = False) -> torch.Tensor:
    """DB's SegDetector (and SegSpatialScaleDetector) forward in eval mode, written out: the
    probability map, ``binarize`` ending in its Sigmoid."""
    c2, c3, c4, c5 = features
    in5, in4, in3, in2 = (F.conv2d(c, d[f"in{i}.weight"]) for i, c in ((5, c5), (4, c4), (3, c3), (2, c2)))
    up = lambda x: F.interpolate(x, scale_factor=2, mode="nearest")  # noqa: E731
    out4 = up(in5) + in4
    out3 = up(out4) + in3
    out2 = up(out3) + in2
    p5 = F.interpolate(F.conv2d(in5, d["out5.0.weight"], padding=1), scale_factor=8, mode="nearest")
    p4 = F.interpolate(F.conv2d(out4, d["out4.0.weight"], padding=1), scale_factor=4, mode="nearest")
    p3 = F.interpolate(F.conv2d(out3, d["out3.0.weight"], padding=1), scale_factor=2, mode="nearest")
    p2 = F.conv2d(out2, d["out2.weight"], padding=1)
    fuse = torch.cat((p5, p4, p3, p2), 1)
    if asf:
        fuse = db_scale_feature_selection(d, fuse, [p5, p4, p3, p2])
    x = F.relu(_db_bn(F.conv2d(fuse, d["binarize.0.weight"], padding=1), d, "binarize.1"))
    x = F.relu(_db_bn(F.conv_transpose2d(x, d["binarize.3.weight"], d["binarize.3.bias"], stride=2), d, "binarize.4"))
    return torch.sigmoid(F.conv_transpose2d(x, d["binarize.6.weight"], d["binarize.6.bias"], stride=2))


def db_scale_feature_selection(d, concat_x, features):
    """DB's ScaleFeatureSelection with ScaleChannelSpatialAttention, written out."""
    a = "concat_attention.enhanced_attention"
    x = F.conv2d(concat_x, d["concat_attention.conv.weight"], d["concat_attention.conv.bias"], padding=1)
    pooled = F.adaptive_avg_pool2d(x, 1)
    channel = F.conv2d(F.relu(F.conv2d(pooled, d[f"{a}.channel_wise.1.weight"])), d[f"{a}.channel_wise.3.weight"])
    x = torch.sigmoid(channel) + x
    mean = torch.mean(x, dim=1, keepdim=True)
    spatial = F.relu(F.conv2d(mean, d[f"{a}.spatial_wise.0.weight"], padding=1))
    spatial = F.conv2d(spatial, d[f"{a}.spatial_wise.2.weight"])
    x = torch.sigmoid(spatial) + x
    score = torch.sigmoid(F.conv2d(x, d[f"{a}.attention_wise.0.weight"]))
    return torch.cat([score[:, i : i + 1] * f for i, f in enumerate(features)], dim=1)


@pytest.mark.parametrize("asf", [False, True], ids=["SegDetector", "SegSpatialScaleDetector"])
def test_a_db_checkpoint_maps_onto_the_same_computation(asf):
    state = db_state(asf=asf)
    model = model_for("resnet18", **DB_MODEL, neck="asf" if asf else "fpn").eval()
    report = load_db_state(model, state, "db.pth")
    assert report.new == {} and report.loaded == len(counted(model.state_dict()))
    unused = ("fc.weight", "fc.bias", "smooth.weight", "smooth.bias")  # DB's classifier, DB's unused conv
    assert report.unused == [f"model.module.backbone.{n}" for n in unused]
    decoder = {n.removeprefix("model.module.decoder."): t for n, t in state.items() if ".decoder." in n}
    images = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        expected = db_decoder(decoder, model.backbone(images), asf=asf)
        got = torch.sigmoid(model(images)["prob_logits"])
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("prefix", ["model.module.", "module.", ""])
def test_db_prefixes_are_recognised(prefix):
    report = load_db_state(model_for("resnet50", **DB_MODEL), db_state("resnet50", prefix=prefix), "db.pth")
    assert report.new == {}


def test_a_db_checkpoint_without_threshold_head_leaves_it_new():
    report = load_db_state(model_for("resnet18", **DB_MODEL), db_state(thresh=False), "db.pth")
    assert report.new == {"heads": 13}


def test_an_asf_db_checkpoint_into_an_fpn_model_says_which_setting():
    with pytest.raises(WeightsMismatch, match='adaptive-scale-fusion decoder .*set model.neck = "asf"'):
        load_db_state(model_for("resnet18", **DB_MODEL), db_state(asf=True), "db.pth")


def test_a_deformable_db_backbone_is_refused_with_the_reason():
    state = db_state()
    state["model.module.backbone.layer2.0.conv2_offset.weight"] = torch.zeros(27, 128, 3, 3)
    with pytest.raises(WeightsMismatch, match=r"deformable-convolution ResNet \(model\.module\.backbone\.layer2"):
        load_db_state(model_for("resnet18", **DB_MODEL), state, "db.pth")


def test_a_db_decoder_of_another_width_is_refused_naming_the_tensor():
    with pytest.raises(WeightsMismatch, match=r"model\.module\.decoder\.in5\.weight: shape \[32, 512, 1, 1\]"):
        load_db_state(model_for("resnet18", inner_channels=64, head_channels=16), db_state(), "db.pth")


def test_a_db_decoder_with_biases_is_refused_naming_the_tensor():
    state = db_state() | {"model.module.decoder.in5.bias": torch.zeros(INNER)}
    with pytest.raises(WeightsMismatch, match=r"no place in the model: model\.module\.decoder\.in5\.bias"):
        load_db_state(model_for("resnet18", **DB_MODEL), state, "db.pth")

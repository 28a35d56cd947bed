"""Checkpoints are read with torch.load(weights_only=True): real ones load and resume; a foreign
file is refused with one line naming it, and nothing in it is executed. The same for the weights
a new run starts from: model.pretrained (a file, or torchvision's download through torch.hub's
cache) and MhLiao/DB checkpoints given to --init-from."""

import hashlib
import json
import os
import pickle
import shutil
from pathlib import Path
from urllib.error import URLError

import pytest
import torch
from typer.testing import CliRunner

from conftest import MODEL_W4, TINY_TRAIN_W8, set_args
from ocrkit.cli.app import app
from ocrkit.core.config import OcrkitConfig, load_config
from ocrkit.core.engine.checkpoint import (
    FORMAT,
    load_checkpoint,
    load_pretrained,
    load_pretrained_backbone,
    load_weights,
    read_init_source,
)
from ocrkit.core.errors import ConfigError, InputError, OcrkitError
from ocrkit.core.model import build_model
from ocrkit.core.model.pretrained import DB_RENAMES, TORCHVISION_WEIGHTS, TorchvisionWeights

runner = CliRunner()

TINY = [*TINY_TRAIN_W8, *set_args("train.overlays=0")]


class _MakesMarker:
    """Unpickling this object opens (creates) the marker file: what a hostile checkpoint would do."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _assert_one_line(message: str, path) -> None:
    assert "\n" not in message and str(path) in message, message


def test_a_real_checkpoint_holds_only_tensors_and_plain_data_and_resumes(synth, tmp_path):
    common = [
        "--data",
        synth / "train",
        "--val-data",
        synth / "val",
        "--quiet",
        "--set",
        f"log.dir={tmp_path}",
        *TINY,
        "--epochs",
        2,
        "--batch-size",
        4,
        "--set",
        "train.optimizer=adamw",
        "--set",
        "train.ema.enabled=true",
        "--set",
        "train.time_limit=30",
    ]
    first = runner.invoke(app, [str(a) for a in ["train", *common, "--name", "ck", "--set", "train.stop_at_step=3"]])
    assert first.exit_code == 0, first.output
    checkpoint = tmp_path / "train" / "ck" / "last.pt"
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)  # no allow-list needed
    assert state["format"] == FORMAT
    assert {"model", "optimizer", "scheduler", "train_state", "ema", "torch_rng"} <= set(state)
    assert load_checkpoint(checkpoint)["train_state"]["step"] == 3
    resumed = runner.invoke(
        app, ["train", "--resume", str(checkpoint.parent), "--quiet", "--set", "train.stop_at_step=1000"]
    )
    assert resumed.exit_code == 0, resumed.output
    assert load_checkpoint(checkpoint)["train_state"]["step"] == 4


@pytest.mark.parametrize("container", ["torch.save", "pickle.dump"])
def test_a_pickle_that_would_run_code_is_refused_without_running_it(tmp_path, container):
    marker = tmp_path / "executed"
    path = tmp_path / "hostile.pt"
    payload = {"format": FORMAT, "model": {}, "config": {}, "x": _MakesMarker(marker)}
    if container == "torch.save":
        torch.save(payload, path)
    else:
        with open(path, "wb") as f:
            pickle.dump(payload, f)
    with pytest.raises(InputError) as error:
        load_checkpoint(path)
    _assert_one_line(str(error.value), path)
    assert not marker.exists()


def test_the_cli_refuses_a_hostile_checkpoint_in_one_line(synth, tmp_path):
    marker = tmp_path / "executed"
    path = tmp_path / "hostile.pt"
    torch.save({"format": FORMAT, "x": _MakesMarker(marker)}, path)
    result = runner.invoke(app, ["eval", "--checkpoint", str(path), "--data", str(synth / "val")])
    assert result.exit_code != 0
    lines = [line for line in result.output.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and str(path) in lines[0], result.output
    assert "Traceback" not in result.output and not marker.exists()


@pytest.mark.parametrize(
    "content, fragment",
    [
        (os.urandom(4096), "not an ocrkit checkpoint"),  # whichever error torch raises for these bytes
        (b"", "not an ocrkit checkpoint: unreadable"),
        ({"model": {"w": torch.zeros(2)}}, "not an ocrkit checkpoint"),  # a torch file, not ours
        ([1, 2, 3], "not an ocrkit checkpoint"),
        ({"format": FORMAT, "model": {}}, "incomplete ocrkit checkpoint: no config"),
        ({"format": FORMAT, "batch": {}, "config": {}}, "incomplete ocrkit checkpoint: no model"),
    ],
)
def test_files_that_are_not_ocrkit_checkpoints_give_one_line_naming_the_file(tmp_path, content, fragment):
    path = tmp_path / "foreign.pt"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        torch.save(content, path)
    with pytest.raises(InputError, match=fragment) as error:
        load_checkpoint(path)
    _assert_one_line(str(error.value), path)


def test_resuming_from_a_weights_only_checkpoint_is_one_line_naming_what_is_missing(synth, tmp_path):
    common = [
        "--data",
        synth / "train",
        "--val-data",
        synth / "val",
        "--quiet",
        "--set",
        f"log.dir={tmp_path}",
        *TINY,
        "--epochs",
        1,
        "--batch-size",
        4,
    ]
    first = runner.invoke(app, [str(a) for a in ["train", *common, "--name", "w"]])
    assert first.exit_code == 0, first.output
    full = load_checkpoint(tmp_path / "train" / "w" / "last.pt")
    weights_only = tmp_path / "weights" / "last.pt"
    weights_only.parent.mkdir()
    torch.save({k: full[k] for k in ("format", "model", "config")}, weights_only)
    (weights_only.parent / "config.toml").write_text((tmp_path / "train" / "w" / "config.toml").read_text())
    resumed = runner.invoke(app, ["train", "--resume", str(weights_only), "--quiet"])
    assert resumed.exit_code != 0 and "Traceback" not in resumed.output
    lines = [line for line in resumed.output.splitlines() if line.strip()]
    assert len(lines) == 1 and str(weights_only) in lines[0] and "optimizer" in lines[0], resumed.output


# ---------------------------------------------------------------- the weights a new run starts from

FIXTURES = Path(__file__).parents[1] / "model" / "fixtures"  # torchvision's names and shapes (see there)
SMALL_HEADS = ["model.inner_channels=16", "model.head_channels=4"]


def torchvision_state(arch: str = "resnet18") -> dict[str, torch.Tensor]:
    shapes = json.loads((FIXTURES / f"torchvision_{arch}_state.json").read_text())["tensors"]
    generator = torch.Generator().manual_seed(0)
    return {
        name: torch.tensor(9) if name.endswith("num_batches_tracked") else torch.randn(shape, generator=generator)
        for name, shape in shapes.items()
    }


def pretrained_config(source, *sets: str) -> OcrkitConfig:
    return load_config(overrides=[f"model.pretrained={source}", *SMALL_HEADS, *sets])


def saved(state, path: Path) -> Path:
    torch.save(state, path)
    return path


def test_a_pretrained_file_loads_into_the_backbone_with_one_line(tmp_path):
    path = saved(torchvision_state(), tmp_path / "r18.pth")
    cfg = pretrained_config(path)
    state, source = load_pretrained(cfg)
    model = build_model(cfg.model)
    line = load_pretrained_backbone(model, (state, source))
    assert line == f"pretrained backbone: 100 tensors from {path}; new: neck 8, heads 26; unused: fc.weight, fc.bias"
    assert torch.equal(model.backbone.conv1.weight, state["conv1.weight"])


def test_a_pretrained_file_that_would_run_code_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "executed"
    path = saved({"conv1.weight": _MakesMarker(marker)}, tmp_path / "hostile.pth")
    with pytest.raises(InputError) as error:
        load_pretrained(pretrained_config(path))
    _assert_one_line(str(error.value), path)
    assert not marker.exists()


def test_a_pretrained_file_that_does_not_fit_is_one_line_naming_file_and_tensor(tmp_path):
    path = saved(torchvision_state("resnet50"), tmp_path / "r50.pth")
    cfg = pretrained_config(path)  # model.backbone = resnet18
    with pytest.raises(InputError, match=r"no place in the model: layer1\.0\.conv3\.weight") as error:
        load_pretrained_backbone(build_model(cfg.model), load_pretrained(cfg))
    _assert_one_line(str(error.value), path)


def test_an_ocrkit_checkpoint_as_pretrained_points_to_init_from(tmp_path):
    path = saved({"format": FORMAT, "model": {}, "config": {}}, tmp_path / "last.pt")
    with pytest.raises(InputError, match="start from it with --init-from"):
        load_pretrained(pretrained_config(path))


def test_pretrained_weights_keep_the_imagenet_normalisation(tmp_path):
    path = saved(torchvision_state(), tmp_path / "r18.pth")
    with pytest.raises(ConfigError, match=r"model.pretrained: ImageNet weights expect data.mean = \[0.485"):
        load_pretrained(pretrained_config(path, "data.mean=[0.5,0.5,0.5]"))


def test_pretrained_weights_need_the_standard_width():
    with pytest.raises(ConfigError) as error:
        load_config(overrides=["model.pretrained=torchvision", "model.base_width=24"])
    assert "--set model.base_width=24 and --set model.pretrained=torchvision: model.base_width: must be 64" in str(
        error.value
    )


@pytest.fixture
def hub(tmp_path, monkeypatch) -> Path:
    """torch.hub's cache in a temporary TORCH_HOME; its checkpoints folder."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(torch.hub, "_hub_dir", None)
    return tmp_path / "torch" / "hub" / "checkpoints"


def _no_download(*args, **kwargs):
    raise AssertionError("downloaded although the file was in the cache")


def _file_with_its_hash_name(tmp_path: Path) -> tuple[Path, str]:
    """A resnet18 state dict saved to a file, and the start of its sha256 (torch.hub's naming)."""
    path = saved(torchvision_state(), tmp_path / "download.pth")
    return path, hashlib.sha256(path.read_bytes()).hexdigest()[:8]


def test_without_network_torchvision_is_one_line_naming_the_url_and_where_to_put_the_file(hub, monkeypatch):
    def offline(url, dst, hash_prefix=None, progress=True):
        raise URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    with pytest.raises(OcrkitError) as error:
        load_pretrained(pretrained_config("torchvision"))
    message = str(error.value)
    url = "https://download.pytorch.org/models/resnet18-f37072fd.pth"
    assert message == (
        f"model.pretrained = 'torchvision': cannot download {url} ([Errno -3] Temporary failure in name "
        f"resolution); download it elsewhere and place it at {hub / 'resnet18-f37072fd.pth'}"
    )


def test_a_file_placed_in_the_cache_by_hand_is_used_without_downloading(hub, tmp_path, monkeypatch):
    path, prefix = _file_with_its_hash_name(tmp_path)
    url = f"https://download.pytorch.org/models/resnet18-{prefix}.pth"
    monkeypatch.setitem(TORCHVISION_WEIGHTS, "resnet18", TorchvisionWeights("resnet18", url, "IMAGENET1K_V1"))
    hub.mkdir(parents=True)
    shutil.copy(path, hub / f"resnet18-{prefix}.pth")
    monkeypatch.setattr(torch.hub, "download_url_to_file", _no_download)
    cfg = pretrained_config("torchvision")
    line = load_pretrained_backbone(build_model(cfg.model), load_pretrained(cfg))
    assert line.startswith("pretrained backbone: 100 tensors from torchvision resnet18 (IMAGENET1K_V1); ")


def test_a_cached_file_that_does_not_match_the_hash_in_its_name_is_refused(hub, monkeypatch):
    hub.mkdir(parents=True)
    placed = hub / "resnet18-f37072fd.pth"
    torch.save(torchvision_state(), placed)  # right layout, not torchvision's bytes
    monkeypatch.setattr(torch.hub, "download_url_to_file", _no_download)
    with pytest.raises(InputError, match="does not start with f37072fd as the file name says") as error:
        load_pretrained(pretrained_config("torchvision"))
    _assert_one_line(str(error.value), placed)


def test_the_download_goes_through_torch_hub_with_its_hash_checked_and_is_cached(hub, tmp_path, monkeypatch):
    path, prefix = _file_with_its_hash_name(tmp_path)
    url = f"https://download.pytorch.org/models/resnet50-{prefix}.pth"
    monkeypatch.setitem(TORCHVISION_WEIGHTS, "resnet18", TorchvisionWeights("resnet18", url, "IMAGENET1K_V1"))
    calls = []

    def download(url, dst, hash_prefix=None, progress=True):
        calls.append((url, Path(dst).name, hash_prefix))
        shutil.copy(path, dst)

    monkeypatch.setattr(torch.hub, "download_url_to_file", download)
    first, _ = load_pretrained(pretrained_config("torchvision"))
    second, _ = load_pretrained(pretrained_config("torchvision"))
    assert calls == [(url, f"resnet50-{prefix}.pth", prefix)]  # check_hash: torch.hub verifies the prefix
    assert torch.equal(first["layer4.1.conv2.weight"], second["layer4.1.conv2.weight"])


def test_a_download_with_the_wrong_hash_is_one_line(hub, monkeypatch):
    def corrupted(url, dst, hash_prefix=None, progress=True):
        raise RuntimeError(f'invalid hash value (expected "{hash_prefix}", got "0123abcd...")')

    monkeypatch.setattr(torch.hub, "download_url_to_file", corrupted)
    with pytest.raises(OcrkitError) as error:
        load_pretrained(pretrained_config("torchvision"))
    message = str(error.value)
    assert "\n" not in message and 'invalid hash value (expected "f37072fd"' in message
    assert str(hub / "resnet18-f37072fd.pth") in message


def db_layout(model_state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """An ocrkit model's weights under MhLiao/DB's names (DB_RENAMES read backwards), as DB saves
    them: SegDetectorModel → DataParallel → BasicModel. The mapping itself is checked against DB's
    own names and computation in tests/core/model/test_pretrained.py."""
    renamed = {}
    for name, tensor in model_state.items():
        db_name = next(old + name[len(new) :] for old, new in DB_RENAMES if new is not None and name.startswith(new))
        renamed["model.module." + db_name] = tensor
    return renamed | {"model.module.backbone.fc.weight": torch.zeros(10, 8)}  # DB keeps the classifier


def test_init_from_maps_a_db_checkpoint(tmp_path):
    cfg = load_config(overrides=list(MODEL_W4))
    torch.manual_seed(3)
    source = build_model(cfg.model).state_dict()
    path = saved(db_layout(source), tmp_path / "db.pth")
    state = read_init_source(path)
    model = build_model(cfg.model)
    line = load_weights(model, state, path, cfg.model)
    loaded = sum(not n.endswith("num_batches_tracked") for n in source)
    assert (
        line
        == f"--init-from: {loaded} tensors from MhLiao/DB checkpoint {path}; unused: model.module.backbone.fc.weight"
    )
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, source[name]), name


def test_init_from_refuses_a_db_checkpoint_of_another_width_in_one_line(tmp_path):
    source = build_model(load_config(overrides=list(MODEL_W4)).model).state_dict()
    path = saved(db_layout(source), tmp_path / "db.pth")
    cfg = load_config(overrides=["model.base_width=8", "model.inner_channels=16", "model.head_channels=4"])
    with pytest.raises(InputError, match=r"model\.module\.backbone\.conv1\.weight: shape \[4, 3, 7, 7\]") as error:
        load_weights(build_model(cfg.model), read_init_source(path), path, cfg.model)
    _assert_one_line(str(error.value), path)


def test_a_checkpoint_from_before_model_neck_loads_as_fpn_and_not_into_asf(tmp_path):
    cfg = load_config(overrides=list(MODEL_W4))
    config = cfg.model_dump(mode="json")
    del config["model"]["neck"], config["model"]["pretrained"]  # what checkpoints held before them
    state = {"format": FORMAT, "model": build_model(cfg.model).state_dict(), "config": config}
    load_weights(build_model(cfg.model), state, tmp_path / "old.pt", cfg.model)
    asf = load_config(overrides=[*MODEL_W4, "model.neck=asf"])
    with pytest.raises(InputError, match=r"another architecture: model.neck=fpn \(here asf\)"):
        load_weights(build_model(asf.model), state, tmp_path / "old.pt", asf.model)


def test_where_a_run_started_is_not_part_of_its_architecture(tmp_path):
    # a checkpoint of a pretrained run fine-tunes or evaluates with any model.pretrained
    cfg = load_config(overrides=["model.pretrained=torchvision", *SMALL_HEADS])
    state = {"format": FORMAT, "model": build_model(cfg.model).state_dict(), "config": cfg.model_dump(mode="json")}
    plain = load_config(overrides=SMALL_HEADS)
    assert load_weights(build_model(plain.model), state, tmp_path / "p.pt", plain.model) is None


def test_a_new_run_starts_from_pretrained_weights_and_a_resume_does_not_reload_them(synth, tmp_path):
    weights = saved(torchvision_state(), tmp_path / "r18.pth")
    common = ["--data", synth / "train", "--val-data", synth / "val", "--set", f"log.dir={tmp_path}", *TINY]
    common += set_args("model.base_width=64", *SMALL_HEADS, f"model.pretrained={weights}")
    first = runner.invoke(app, [str(a) for a in ["train", *common, "--epochs", 1, "--batch-size", 4, "--name", "pt"]])
    assert first.exit_code == 0, first.output
    assert f"pretrained backbone: 100 tensors from {weights}; new: neck 8, heads 26" in first.output
    run_dir = tmp_path / "train" / "pt"
    assert f"pretrained = {json.dumps(str(weights))}" in (run_dir / "config.toml").read_text()
    weights.unlink()  # a resume needs the run's checkpoint only
    resumed = runner.invoke(app, ["train", "--resume", str(run_dir), "--set", "train.stop_at_step=1000"])
    assert resumed.exit_code == 0, resumed.output
    assert "pretrained backbone" not in resumed.output


def test_the_cli_starts_from_a_db_checkpoint_and_leaves_model_pretrained_aside(synth, tmp_path, monkeypatch):
    widths = set_args("model.base_width=64", *SMALL_HEADS)
    source = build_model(load_config(overrides=widths[1::2]).model).state_dict()
    path = saved(db_layout(source), tmp_path / "db.pth")
    monkeypatch.setattr(torch.hub, "download_url_to_file", _no_download)
    args = ["train", "--data", synth / "train", "--val-data", synth / "val", "--set", f"log.dir={tmp_path}", *TINY]
    args += [*widths, "--epochs", 1, "--batch-size", 4, "--init-from", path, *set_args("model.pretrained=torchvision")]
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    loaded = sum(not n.endswith("num_batches_tracked") for n in source)
    assert f"--init-from: {loaded} tensors from MhLiao/DB checkpoint {path}; unused: " in result.output
    assert "model.pretrained is not applied: --init-from loads a whole detector" in result.output

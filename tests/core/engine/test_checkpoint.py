"""Checkpoints are read with torch.load(weights_only=True): real ones load and resume; a foreign
file is refused with one line naming it, and nothing in it is executed."""

import os
import pickle

import pytest
import torch
from typer.testing import CliRunner

from conftest import TINY_TRAIN_W8, set_args
from ocrkit.cli.app import app
from ocrkit.core.engine.checkpoint import FORMAT, load_checkpoint
from ocrkit.core.errors import InputError

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

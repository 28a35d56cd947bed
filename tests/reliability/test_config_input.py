"""Config and command-line input through the real CLI: every kind of bad input is one line that
starts with ``error:``, names the key (and the file and line for a TOML file, the variable for the
environment), exits non-zero and shows no traceback.

Kinds: out-of-range values, unknown keys, wrong types, unreadable and malformed TOML files, bad
``OCRKIT_*`` variables, and contradictory flags or settings; through ``--set``, the dedicated flags,
a ``--config`` TOML file and the environment.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from conftest import assert_one_line_error, run

# name -> file content; {tmp} in a case's arguments and fragments is the folder they are written to
FILES: dict[str, str | bytes] = {
    "syntax.toml": "[train]\nlr = 0.1\nepochs = = 3\n",
    "end.toml": "[train]\nlr =",
    "duplicate.toml": "[train]\nlr = 0.1\nlr = 0.2\n",
    "latin1.toml": b"[train]\n# caf\xe9\nlr = 0.1\n",
    "unknown_key.toml": "[train]\nlr = 0.1\nlrr = 2\n",
    "unknown_section.toml": "[train]\nlr = 0.1\n\n[trian]\nlr = 1\n",
    "top_level.toml": "lr = 0.1\n",
    "wrong_type.toml": '[data]\ntrain_size = [64, 64]\n\n[train]\nepochs = "three"\n',
    "out_of_range.toml": "[train]\n# the learning rate\nlr = -0.5\n",
    "dotted.toml": "[train]\nema.decay = 1.5\n",
    "size.toml": "[data]\neval_size = [100, 64]\n",
    "auto_scaler.toml": '[train]\nprecision = "auto"\n\n[train.scaler]\nenabled = true\n',
    "thresholds.toml": "[maps]\nthresh_min = 0.8\nthresh_max = 0.5\n",
    "multiline.toml": '[data]\ntrain = """\nlr = 3\n"""\n\n[train]\nlr = "fast"\n',
}

SHOW = ("config", "show")
CASES = [
    # ---- out of range
    ("range: --set", [*SHOW, "--set", "train.lr=-1"], None, ["--set train.lr=-1", "train.lr", "greater than 0"]),
    ("range: --set nested", [*SHOW, "--set", "train.ema.decay=1.5"], None, ["train.ema.decay", "less than 1"]),
    ("range: --set size", [*SHOW, "--set", "data.train_size=[33,64]"], None, ["data.train_size", "multiples of 32"]),
    ("range: flag", ["train", "--epochs", "0"], None, ["command-line flag", "train.epochs", "(got 0)"]),
    ("range: typer flag", ["train", "--accumulate", "0"], None, ["ocrkit train", "'--accumulate'"]),
    ("range: toml", [*SHOW, "-c", "{tmp}/out_of_range.toml"], None, ["{tmp}/out_of_range.toml:3: train.lr"]),
    ("range: toml dotted", [*SHOW, "-c", "{tmp}/dotted.toml"], None, ["{tmp}/dotted.toml:2: train.ema.decay"]),
    ("range: toml size", [*SHOW, "-c", "{tmp}/size.toml"], None, ["{tmp}/size.toml:2: data.eval_size"]),
    ("range: env", SHOW, {"OCRKIT_TRAIN__LR": "-1"}, ["OCRKIT_TRAIN__LR='-1'", "train.lr"]),
    # ---- unknown keys
    ("unknown: --set key", [*SHOW, "--set", "train.lrr=1"], None, ["train.lrr: unknown key"]),
    ("unknown: --set section", [*SHOW, "--set", "trian.lr=1"], None, ["trian: unknown key"]),
    ("unknown: --set no value", [*SHOW, "--set", "train.lr"], None, ["--set 'train.lr'", "KEY=VALUE"]),
    ("unknown: toml key", [*SHOW, "-c", "{tmp}/unknown_key.toml"], None, ["{tmp}/unknown_key.toml:3: train.lrr"]),
    ("unknown: toml section", [*SHOW, "-c", "{tmp}/unknown_section.toml"], None, ["unknown_section.toml:4: trian"]),
    ("unknown: toml top level", [*SHOW, "-c", "{tmp}/top_level.toml"], None, ["{tmp}/top_level.toml:1: lr: unknown"]),
    ("unknown: env key", SHOW, {"OCRKIT_TRAIN__LRR": "1"}, ["OCRKIT_TRAIN__LRR='1'", "train.lrr: unknown key"]),
    ("unknown: env section", SHOW, {"OCRKIT_TRIAN__LR": "1"}, ["OCRKIT_TRIAN__LR", "unknown config section"]),
    ("unknown: env one underscore", SHOW, {"OCRKIT_TRAIN_LR": "1"}, ["OCRKIT_TRAIN_LR", "OCRKIT_TRAIN__LR"]),
    ("unknown: option", [*SHOW, "--bogus"], None, ["ocrkit config show", "--bogus"]),
    ("unknown: command", ["trian"], None, ["No such command 'trian'"]),
    # ---- wrong types
    ("type: --set", [*SHOW, "--set", "train.epochs=abc"], None, ["--set train.epochs=abc", "valid integer"]),
    ("type: --set literal", [*SHOW, "--set", "model.backbone=vgg"], None, ["model.backbone", "'resnet18'"]),
    ("type: --set section", [*SHOW, "--set", "train=1"], None, ["--set train=1", "train: Input should be"]),
    ("type: --set into a value", [*SHOW, "--set", "train.lr.x=1"], None, ["--set train.lr.x=1", "train.lr"]),
    ("type: flag", ["train", "--epochs", "abc"], None, ["ocrkit train", "'--epochs'", "valid integer"]),
    ("type: toml", [*SHOW, "-c", "{tmp}/wrong_type.toml"], None, ["{tmp}/wrong_type.toml:5: train.epochs"]),
    ("type: toml multiline", [*SHOW, "-c", "{tmp}/multiline.toml"], None, ["{tmp}/multiline.toml:7: train.lr"]),
    ("type: env", SHOW, {"OCRKIT_TRAIN__EPOCHS": "abc"}, ["OCRKIT_TRAIN__EPOCHS='abc'", "train.epochs"]),
    ("type: env bool", SHOW, {"OCRKIT_LOG__QUIET": "maybe"}, ["OCRKIT_LOG__QUIET='maybe'", "log.quiet"]),
    ("type: env json", SHOW, {"OCRKIT_DATA__TRAIN_SIZE": "64x64"}, ["OCRKIT_DATA__TRAIN_SIZE", "[640, 640]"]),
    ("type: env section", SHOW, {"OCRKIT_TRAIN": "fast"}, ["OCRKIT_TRAIN='fast'", "train: ", "JSON"]),
    ("type: env json value", SHOW, {"OCRKIT_TRAIN": '{"lr": "x"}'}, ["OCRKIT_TRAIN=", "train.lr"]),
    # ---- unreadable TOML
    ("unreadable: missing", [*SHOW, "-c", "{tmp}/missing.toml"], None, ["{tmp}/missing.toml: config file not found"]),
    ("unreadable: directory", [*SHOW, "-c", "{tmp}"], None, ["{tmp}: is a directory"]),
    ("unreadable: train", ["train", "-c", "{tmp}/missing.toml"], None, ["{tmp}/missing.toml: config file not found"]),
    ("unreadable: not utf-8", [*SHOW, "-c", "{tmp}/latin1.toml"], None, ["{tmp}/latin1.toml:2: not valid TOML"]),
    # ---- malformed TOML
    ("malformed: syntax", [*SHOW, "-c", "{tmp}/syntax.toml"], None, ["{tmp}/syntax.toml:3:10: not valid TOML"]),
    ("malformed: end", [*SHOW, "-c", "{tmp}/end.toml"], None, ["{tmp}/end.toml:2: not valid TOML", "end of the file"]),
    ("malformed: duplicate", [*SHOW, "-c", "{tmp}/duplicate.toml"], None, ["{tmp}/duplicate.toml:3:"]),
    ("malformed: train", ["train", "-c", "{tmp}/syntax.toml"], None, ["{tmp}/syntax.toml:3:10: not valid TOML"]),
    # ---- contradictions
    ("contradiction: resume", ["train", "--resume", "{tmp}/a", "--init-from", "{tmp}/b"], None, ["pick one"]),
    ("contradiction: overfit", ["train", "--overfit-batches", "1", "--val-data", "{tmp}"], None, ["--val-data"]),
    (
        "contradiction: auto scaler",
        [*SHOW, "--set", "train.precision=auto", "--set", "train.scaler.enabled=true"],
        None,
        ["--set train.scaler.enabled=true and --set train.precision=auto: train.scaler.enabled"],
    ),
    (
        "contradiction: flag and --set",
        ["train", "--precision", "bf16", "--set", "train.scaler.enabled=true"],
        None,
        ["--set train.scaler.enabled=true and command-line flag: train.scaler.enabled: a GradScaler is only for"],
    ),
    (
        "contradiction: toml",
        [*SHOW, "-c", "{tmp}/auto_scaler.toml"],
        None,
        ["{tmp}/auto_scaler.toml:5 and {tmp}/auto_scaler.toml:2: train.scaler.enabled"],
    ),
    (
        "contradiction: toml and env",
        [*SHOW, "-c", "{tmp}/auto_scaler.toml"],
        {"OCRKIT_TRAIN__PRECISION": "bf16-mixed"},
        ["{tmp}/auto_scaler.toml:5 and OCRKIT_TRAIN__PRECISION='bf16-mixed': train.scaler.enabled"],
    ),
    (
        "contradiction: maps",
        [*SHOW, "-c", "{tmp}/thresholds.toml"],
        None,
        ["{tmp}/thresholds.toml:2 and {tmp}/thresholds.toml:3: maps.thresh_min"],
    ),
]


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("config-input")
    for name, content in FILES.items():
        path = root / name
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return root


@pytest.mark.parametrize("args, env, fragments", [case[1:] for case in CASES], ids=[case[0] for case in CASES])
def test_bad_input_is_one_line_naming_the_key(files, args, env, fragments):
    result = run(*(a.format(tmp=files) for a in args), env=env)
    assert_one_line_error(result, *(f.format(tmp=files) for f in fragments))


def test_a_config_file_without_read_permission_is_one_line(tmp_path, monkeypatch):
    path = tmp_path / "secret.toml"
    path.write_text("[train]\nlr = 0.1\n")
    path.chmod(0)
    if os.geteuid() == 0:  # root reads a file whatever its mode: the error the read would raise
        real = Path.read_bytes

        def read_bytes(self: Path) -> bytes:
            if self == path:
                raise PermissionError(13, "Permission denied", str(self))
            return real(self)

        monkeypatch.setattr(Path, "read_bytes", read_bytes)
    assert_one_line_error(run(*SHOW, "-c", path), f"{path}: cannot read the config file: Permission denied")


def test_good_input_still_works_and_help_stays_help(files, tmp_path):
    """The same sources, valid: no error; and the usage texts are not turned into errors."""
    good = tmp_path / "good.toml"
    good.write_text("[train]\n# fine\nlr = 0.05\n\n[train.scaler]\ninit_scale = 1024.0\n[TRAIN.ema]\ndecay = 0.99\n")
    result = run(*SHOW, "-c", good, "--set", "train.epochs=4", env={"OCRKIT_DATA__TRAIN_SIZE": "[64, 64]"})
    assert result.exit_code == 0, result.output
    assert "lr = 0.05" in result.output and "epochs = 4" in result.output and "decay = 0.99" in result.output
    for args in (["--help"], ["train", "--help"], ["config"]):
        result = run(*args)
        assert "Usage" in result.output and "error:" not in result.output, result.output

from pathlib import Path

import pytest

from ocrkit.core.config import OcrkitConfig, config_to_toml, load_config, parse_override, save_config
from ocrkit.core.errors import ConfigError


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_match_db_reference():
    cfg = load_config()
    assert cfg.maps.shrink_ratio == 0.4 and cfg.maps.min_text_size == 8
    assert (cfg.loss.alpha, cfg.loss.beta) == (5.0, 10.0)
    assert cfg.model.backbone == "resnet18" and cfg.model.k == 50


def test_precedence_defaults_toml_env_flags_set(tmp_path, monkeypatch):
    toml = write(tmp_path / "c.toml", "[train]\nlr = 0.05\nepochs = 3\nbatch_size = 2\nseed = 9\n")
    monkeypatch.setenv("OCRKIT_TRAIN__EPOCHS", "7")
    monkeypatch.setenv("OCRKIT_TRAIN__BATCH_SIZE", "5")
    monkeypatch.setenv("OCRKIT_TRAIN__LR", "0.2")
    cfg = load_config(toml, ["train.lr=0.1"], {"train.batch_size": 4, "train.momentum": None})
    assert cfg.train.seed == 9  # TOML beats default
    assert cfg.train.epochs == 7  # env beats TOML
    assert cfg.train.batch_size == 4  # flag beats env
    assert cfg.train.lr == 0.1  # --set beats everything
    assert cfg.train.momentum == 0.9  # an unset flag (None) changes nothing


def test_set_parses_toml_values():
    assert parse_override("data.eval_size=[640, 960]") == (["data", "eval_size"], [640, 960])
    assert parse_override("train.precision=bf16-mixed") == (["train", "precision"], "bf16-mixed")
    assert load_config(None, ["data.eval_size=[640,960]"]).data.eval_size == (640, 960)
    assert load_config(None, ["train.precision=bf16"]).train.precision == "bf16-mixed"


@pytest.mark.parametrize(
    "override, key",
    [
        ("train.lr=abc", "train.lr"),
        ("train.bogus=1", "train.bogus"),
        ("nosection.x=1", "nosection"),
        ("data.eval_size=[33,64]", "data.eval_size"),
        ("maps.thresh_min=0.9", "maps"),
        ("model.backbone=vgg", "model.backbone"),
    ],
)
def test_bad_values_name_the_key(override, key):
    with pytest.raises(ConfigError) as err:
        load_config(None, [override])
    assert key in str(err.value) and "\n" not in str(err.value)


def test_bad_env_and_file_errors(tmp_path, monkeypatch):
    monkeypatch.setenv("OCRKIT_MODEL__K", "-1")
    with pytest.raises(ConfigError, match="model.k"):
        load_config()
    monkeypatch.delenv("OCRKIT_MODEL__K")
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.toml")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(write(tmp_path / "bad.toml", "[train\nlr=1"))
    with pytest.raises(ConfigError, match="train.nope: unknown key"):
        load_config(write(tmp_path / "unknown.toml", "[train]\nnope = 1\n"))
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        load_config(None, ["train.lr"])


def test_saved_config_round_trips(tmp_path):
    cfg = load_config(None, ["train.lr=0.03", "data.train=/x/y", "model.backbone=resnet50"])
    save_config(cfg, tmp_path / "config.toml")
    again = load_config(tmp_path / "config.toml")
    assert again == cfg
    assert "[postprocess]" in config_to_toml(cfg)
    assert isinstance(again, OcrkitConfig)


def test_base_layer_sits_between_defaults_and_toml(tmp_path, monkeypatch):
    base = {"train": {"lr": 0.3, "epochs": 11, "seed": 4}, "model": {"base_width": 16}}
    toml = write(tmp_path / "c.toml", "[train]\nepochs = 5\n")
    monkeypatch.setenv("OCRKIT_TRAIN__SEED", "6")
    cfg = load_config(toml, ["train.lr=0.2"], base=base)
    assert cfg.model.base_width == 16  # from the base
    assert cfg.train.epochs == 5  # TOML beats the base
    assert cfg.train.seed == 6  # env beats the base
    assert cfg.train.lr == 0.2  # --set beats all
    assert load_config().model.base_width == 64  # the base does not leak into later loads

"""`ocrkit config show`: the precedence of defaults, TOML, environment and --set; one-line errors."""

from typer.testing import CliRunner

from conftest import assert_one_line_error, run

runner = CliRunner()


def test_config_show_precedence_through_cli(tmp_path):
    (tmp_path / "c.toml").write_text("[train]\nlr = 0.05\nepochs = 3\n")
    result = run(
        "config",
        "show",
        "--config",
        tmp_path / "c.toml",
        "--set",
        "train.epochs=4",
        env={"OCRKIT_TRAIN__LR": "0.02", "OCRKIT_MODEL__BACKBONE": "resnet50"},
    )
    assert result.exit_code == 0, result.output
    assert "lr = 0.02" in result.output and "epochs = 4" in result.output
    assert 'backbone = "resnet50"' in result.output


def test_config_errors_are_one_line():
    assert_one_line_error(run("config", "show", "--set", "train.lr=abc"), "train.lr")
    assert_one_line_error(run("config", "show", "--set", "train.nope=1"), "train.nope: unknown key")
    assert_one_line_error(run("config", "show", "--config", "/no/such.toml"), "/no/such.toml")

"""The Typer app itself: `ocrkit --version`."""

from typer.testing import CliRunner

from conftest import run

runner = CliRunner()


def test_version():
    result = run("--version")
    assert result.exit_code == 0 and result.output.startswith("ocrkit ")


def test_warnings_print_square_brackets_literally(capsys):
    # rich read "[cache]" as a markup tag and dropped it from every store warning
    from ocrkit.cli.common import _one_line_warning

    _one_line_warning("[cache] this data needs about 9 GB", UserWarning, "f.py", 1)
    assert "warning: [cache] this data needs about 9 GB" in capsys.readouterr().err

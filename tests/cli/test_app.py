"""The Typer app itself: `ocrkit --version`."""

from typer.testing import CliRunner

from conftest import run

runner = CliRunner()


def test_version():
    result = run("--version")
    assert result.exit_code == 0 and result.output.startswith("ocrkit ")

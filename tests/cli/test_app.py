"""The Typer app itself: `ocrkit --version`."""

from typer.testing import CliRunner

from ocrkit.cli.app import app

runner = CliRunner()


def run(*args, env=None):
    return runner.invoke(app, [str(a) for a in args], env=env)


def test_version():
    result = run("--version")
    assert result.exit_code == 0 and result.output.startswith("ocrkit ")

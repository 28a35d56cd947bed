"""The light commands start without the engine: importing the CLI, ``--version``, ``--help``,
``config show``, ``eval --gt-dir/--pred-dir`` and ``data synth`` load neither torch nor numba nor
diskcache (together ~3 s of imports). Each case runs in a fresh interpreter, since this test
process has usually imported all of them already. (OpenCV, which ``ocrkit.core`` does not import,
stays single-threaded however it gets imported: tests/core/test_core_init.py.)"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from ocrkit.core.data.formats import write_icdar_gt, write_predictions

HEAVY = ("torch", "numba", "diskcache")

# Runs the Typer app in-process with the given arguments, then reports its exit code and which of
# HEAVY it loaded, as JSON in a file (the commands' own output goes to stdout/stderr).
SCRIPT = textwrap.dedent(
    """
    import json, sys
    from ocrkit.cli.app import app
    args, report = json.loads(sys.argv[1]), sys.argv[2]
    code = 0
    if args is not None:
        try:
            code = app(args, standalone_mode=False) or 0
        except SystemExit as exc:
            code = exc.code or 0
    heavy = [name for name in json.loads(sys.argv[3]) if name in sys.modules]
    with open(report, "w") as handle:
        json.dump({"code": code, "heavy": heavy}, handle)
    """
)


def run_cli(args: list[str] | None, tmp_path: Path) -> dict:
    report = tmp_path / "report.json"
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, json.dumps(args), str(report), json.dumps(HEAVY)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(report.read_text())
    result["stdout"] = done.stdout
    return result


def rect(x0: float, y0: float, x1: float, y1: float) -> np.ndarray:
    return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], np.float32)


@pytest.fixture
def scored_files(tmp_path: Path) -> tuple[Path, Path]:
    """Two images of ground truth (one don't-care region) and predictions: 2 of 3 care words found."""
    gts, preds = tmp_path / "gts", tmp_path / "preds"
    write_icdar_gt(gts / "gt_a.txt", [rect(0, 0, 100, 20), rect(0, 50, 100, 60)], ["HELLO", "###"], [False, True])
    write_icdar_gt(gts / "gt_b.txt", [rect(0, 0, 50, 20), rect(60, 0, 120, 20)], ["WORLD", "AGAIN"], [False, False])
    write_predictions(preds / "res_a.txt", [rect(0, 0, 100, 20)], [0.9])
    write_predictions(preds / "res_b.txt", [rect(0, 0, 50, 20)], [0.8])
    return gts, preds


def test_importing_the_cli_loads_no_engine(tmp_path):
    assert run_cli(None, tmp_path)["heavy"] == []


@pytest.mark.parametrize("args", [["--version"], ["--help"], ["config", "show"]], ids=" ".join)
def test_light_commands_load_no_engine(args, tmp_path):
    result = run_cli(args, tmp_path)
    assert result["code"] == 0 and result["stdout"]
    assert result["heavy"] == []


def test_eval_of_prediction_files_loads_no_engine(scored_files, tmp_path):
    gts, preds = scored_files
    result = run_cli(["eval", "--gt-dir", str(gts), "--pred-dir", str(preds), "--json"], tmp_path)
    assert result["code"] == 0
    scores = json.loads(result["stdout"])
    assert (scores["precision"], scores["recall"], scores["gt_care"]) == (1.0, 2 / 3, 3)
    assert result["heavy"] == []


def test_data_synth_loads_no_engine(tmp_path):
    """Rendering uses OpenCV, Pillow and shapely; the DB maps (numba) are made later, by training."""
    out = tmp_path / "synth"
    result = run_cli(
        ["data", "synth", str(out), "--train", "1", "--val", "1", "--size", "64", "64", "--quiet"], tmp_path
    )
    assert result["code"] == 0
    assert len(list((out / "val" / "images").iterdir())) == 1
    assert result["heavy"] == []

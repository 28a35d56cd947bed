"""`ocrkit doctor`: every section, on a machine without a GPU, and failures reported, not raised."""

import json

from typer.testing import CliRunner

from conftest import MODEL_W4, set_args
from ocrkit.cli.app import app
from ocrkit.core.bench import doctor
from ocrkit.core.bench.doctor import SECTIONS

runner = CliRunner()
TINY = set_args(*MODEL_W4, "data.train_size=[64,64]", "train.batch_size=2")


def doctor_json(*extra):
    result = runner.invoke(app, ["doctor", "--json", "--device", "cpu", *TINY, *extra])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def test_doctor_json_has_every_section_and_measured_rates():
    report = doctor_json()
    assert set(SECTIONS) <= set(report)
    assert report["versions"]["torch"] and report["versions"]["numba"] and report["versions"]["opencv"]
    assert set(report["cpu"]["features"]) >= {"AVX2", "AVX-512", "AVX512-BF16", "AMX-BF16"}
    assert report["cpu"]["cores"] >= 1 and report["cpu"]["torch_threads"] >= 1
    assert isinstance(report["gpus"], list)
    assert report["store"]["free_gb"] > 0 and report["store"]["write_mb_per_s"] > 0
    precision = report["rates"]["precision"]
    assert set(precision["probe"]["timings"]) == {"32-true", "16-mixed", "bf16-mixed"}
    assert precision["probe"]["timings"]["32-true"]["full_s"] > 0 and precision["auto"] in ("32-true", "bf16-mixed")
    assert report["rates"]["maps"]["ms_per_image"] > 0 and report["rates"]["sample"]["ms_per_image"] > 0
    advice = " ".join(report["advice"])
    assert f"--precision {precision['auto']}" in advice and "data.num_workers" in advice


def test_a_failing_probe_is_reported_and_the_rest_still_runs(monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("maps exploded")

    monkeypatch.setattr(doctor, "maps_rate", broken)
    report = doctor_json()
    assert report["rates"]["maps"] == {"error": "RuntimeError: maps exploded"}
    assert report["rates"]["sample"]["ms_per_image"] > 0 and isinstance(report["advice"], list)


def test_the_screen_report_names_each_mode_and_the_advice():
    result = runner.invoke(app, ["doctor", "--device", "cpu", *TINY])
    assert result.exit_code == 0, result.output
    assert "32-true:" in result.output and "bf16-mixed:" in result.output and "advice:" in result.output
    assert "Traceback" not in result.output

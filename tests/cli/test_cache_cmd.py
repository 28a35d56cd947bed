"""`ocrkit maps precompute` and every `ocrkit cache` command, through the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import pytest
from typer.testing import CliRunner

from conftest import MODEL_W8, set_args
from ocrkit.cli.app import app
from ocrkit.core.data.kinds import KIND_VERSIONS
from ocrkit.core.data.synth import generate_synthetic
from ocrkit.core.store.store import Store

runner = CliRunner()
TINY = set_args(
    *MODEL_W8,
    "data.train_size=[64,64]",
    "data.eval_size=[96,128]",
    "data.num_workers=0",
    "train.overlays=0",
    "train.eval_batch_size=2",
)


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture
def data(tmp_path) -> Path:
    generate_synthetic(tmp_path / "synth", n_train=6, n_val=2, size=(96, 128), seed=0, progress=False)
    return tmp_path / "synth"


@pytest.fixture
def store_at(tmp_path) -> list[str]:
    return ["--set", f"cache.dir={tmp_path / 'cache'}"]


def damage_one_entry(root: Path, prefix: str) -> str:
    """Flip a byte of one stored entry (whether diskcache keeps it inline or in a file)."""
    store = Store(root / "store", 10**9, KIND_VERSIONS)
    key = next(k for k in store.keys() if k.startswith(prefix))
    blob = bytearray(store.read_raw(key))
    blob[-3] ^= 0xFF
    store.entries.set(key, bytes(blob), tag=store.tag_of(key))
    store.close()
    return key


def cache(store_at, *args):
    return run("cache", *args, *store_at, "--set", "data.train_size=[64,64]", "--set", "data.eval_size=[96,128]")


def test_precompute_skips_what_is_present_and_status_counts_it(data, store_at):
    half = data / "half"
    (half / "images").mkdir(parents=True)
    (half / "gts").mkdir()
    for image in sorted((data / "train" / "images").iterdir())[:3]:  # an "interrupted" first run
        (half / "images" / image.name).write_bytes(image.read_bytes())
        gt = f"gt_{image.stem}.txt"
        (half / "gts" / gt).write_bytes((data / "train" / "gts" / gt).read_bytes())
    first = run("maps", "precompute", "--data", half, "--workers", 0, *store_at, "--set", "data.train_size=[64,64]")
    assert first.exit_code == 0 and "3 computed, 0 already present" in first.output, first.output
    again = run(
        "maps", "precompute", "--data", data / "train", "--workers", 2, *store_at, "--set", "data.train_size=[64,64]"
    )
    assert again.exit_code == 0 and "3 computed, 3 already present" in again.output, again.output

    status = cache(store_at, "status", "--json")
    assert status.exit_code == 0, status.output
    info = json.loads(status.output)
    [group] = info["groups"]
    assert group["kind"] == "maps" and group["entries"] == 6 and group["current_config"] and group["bytes"] > 0
    assert info["current"]["maps"]["config"] == group["config"]
    other = json.loads(run("cache", "status", "--json", *store_at, "--set", "data.train_size=[96,96]").output)
    assert not other["groups"][0]["current_config"]  # another training size maps elsewhere
    assert "this config maps to" in cache(store_at, "status").output


def test_health_verdicts_and_exit_codes(data, store_at, tmp_path):
    assert cache(store_at, "health").exit_code == 0  # empty: HEALTHY
    trained = run(
        "train",
        "--data",
        data / "train",
        "--val-data",
        data / "val",
        "--epochs",
        2,
        "--batch-size",
        3,
        "--set",
        "train.val_every=1",
        "--set",
        f"log.dir={tmp_path}",
        *TINY,
        *store_at,
    )
    assert trained.exit_code == 0, trained.output
    assert "cache epoch 2: image 100% (6/6), tensor 100% (2/2)" in trained.output
    healthy = cache(store_at, "health", "--json")
    assert healthy.exit_code == 0, healthy.output
    report = json.loads(healthy.output)
    assert report["verdict"] == "HEALTHY" and report["kinds"]["image"]["hit_rate"] == pytest.approx(0.5)

    damage_one_entry(tmp_path / "cache", "image/")  # found on the next read, and regenerated
    run(
        "train",
        "--data",
        data / "train",
        "--quiet",
        "--epochs",
        1,
        "--batch-size",
        3,
        "--set",
        f"log.dir={tmp_path}",
        *TINY,
        *store_at,
    )
    warned = cache(store_at, "health")
    assert warned.exit_code == 1 and "corrupt entries found and regenerated" in warned.output, warned.output

    # entries that are never kept: the store evicts everything (limit of a few bytes)
    tiny = [*store_at, "--set", "cache.size_limit_gb=1e-9"]
    evicting = run(
        "train",
        "--data",
        data / "train",
        "--quiet",
        "--epochs",
        3,
        "--batch-size",
        3,
        "--set",
        f"log.dir={tmp_path}",
        *TINY,
        *tiny,
        "--set",
        "cache.dir=" + str(tmp_path / "c2"),
    )
    assert evicting.exit_code == 0, evicting.output
    assert "needs about" in evicting.output  # the up-front size warning
    assert "hit rate is still 0 in epoch 2" in evicting.output
    failing = run("cache", "health", "--set", f"cache.dir={tmp_path / 'c2'}", "--set", "cache.size_limit_gb=1e-9")
    assert failing.exit_code == 2 and "verdict: FAIL" in failing.output, failing.output


def test_validate_finds_corrupt_and_stale_entries_and_fix_deletes_them(data, store_at):
    assert (
        run(
            "maps",
            "precompute",
            "--data",
            data / "train",
            "--workers",
            0,
            *store_at,
            "--set",
            "data.train_size=[64,64]",
        ).exit_code
        == 0
    )
    clean = cache(store_at, "validate", "--full")
    assert clean.exit_code == 0 and "6 ok" in clean.output, clean.output
    damage_one_entry(Path(store_at[1].split("=", 1)[1]), "maps/")
    for image in sorted((data / "train" / "images").iterdir())[:2]:  # sources edited after their maps were stored
        cv2.imwrite(str(image), 255 - cv2.imread(str(image)))
    found = cache(store_at, "validate", "--json")
    assert found.exit_code == 1, found.output
    report = json.loads(found.output)
    assert len(report["corrupt"]) == 1 and len(report["stale"]) >= 1 and report["checked"] == 6
    sampled = cache(store_at, "validate", "--sample", 2)
    assert "checked 2 of 6" in sampled.output
    fixed = cache(store_at, "validate", "--fix")
    assert fixed.exit_code == 0 and "deleted" in fixed.output
    assert "ok" in cache(store_at, "validate").output and cache(store_at, "validate").exit_code == 0


def test_clear_export_and_bad_requests(data, store_at, tmp_path):
    assert (
        run(
            "maps",
            "precompute",
            "--data",
            data / "train",
            "--workers",
            0,
            *store_at,
            "--set",
            "data.train_size=[64,64]",
        ).exit_code
        == 0
    )
    out = tmp_path / "stats.json"
    exported = cache(store_at, "export", "--output", out)
    assert exported.exit_code == 0, exported.output
    doc = json.loads(out.read_text())
    assert (
        doc["status"]["entries"] == 6
        and doc["health"] == "HEALTHY"
        and set(doc["stats"]) == {"image", "maps", "tensor"}
    )

    nothing = cache(store_at, "clear")
    assert nothing.exit_code != 0 and "exactly one of --all, --stale, --kind" in nothing.output
    assert "unknown kind" in cache(store_at, "clear", "--kind", "nope").output
    assert "removed 0 entries" in cache(store_at, "clear", "--stale").output
    assert "removed 6 entries" in cache(store_at, "clear", "--kind", "maps").output
    assert (
        run(
            "maps",
            "precompute",
            "--data",
            data / "train",
            "--workers",
            0,
            *store_at,
            "--set",
            "data.train_size=[64,64]",
        ).exit_code
        == 0
    )
    assert "removed 6 entries" in cache(store_at, "clear", "--all").output
    assert json.loads(cache(store_at, "status", "--json").output)["entries"] == 0
    disabled = run("cache", "status", "--set", "cache.enabled=false")
    assert disabled.exit_code != 0 and "disabled" in disabled.output

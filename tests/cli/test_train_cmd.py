"""`ocrkit train` (with eval and predict after it): run directories, resume, logging, --init-from,
--profile, errors."""

import json
import math
import time
from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import conftest
from conftest import TINY_TRAIN_W8, run, set_args

TINY = [*TINY_TRAIN_W8, *set_args("train.overlays=1")]


def assert_one_line_error(result, fragment):
    assert result.exit_code != 0, result.output
    lines = [line for line in result.output.strip().splitlines() if line.strip()]
    assert lines and lines[-1].startswith("error:") and fragment in lines[-1], result.output
    assert "Traceback" not in result.output


def train(synth, log_dir, *extra):
    return run(
        "train",
        "--data",
        synth / "train",
        "--val-data",
        synth / "val",
        "--quiet",
        "--set",
        f"log.dir={log_dir}",
        *TINY,
        *extra,
    )


def test_train_eval_predict_end_to_end(synth, tmp_path):
    result = train(synth, tmp_path, "--epochs", 2, "--batch-size", 4, "--name", "tiny")
    assert result.exit_code == 0, result.output
    run_dir = tmp_path / "train" / "tiny"
    for name in ("config.toml", "last.pt", "best.pt", "metrics.csv"):
        assert (run_dir / name).is_file(), name
    assert list((run_dir / "tb").glob("events.out.tfevents.*"))
    assert len(list(run_dir.glob("val/step*/overlays/*.png"))) == 2  # one per validation
    assert "ocrkit eval --checkpoint" in result.output and "best val hmean" in result.output

    state = torch.load(run_dir / "last.pt", weights_only=False)
    assert state["train_state"]["step"] == 4 and state["train_state"]["epoch"] == 2
    assert {"model", "optimizer", "scheduler", "scaler", "config", "ocrkit_version", "best_metric"} <= set(state)
    assert state["config"]["model"]["base_width"] == 8

    again = train(synth, tmp_path, "--epochs", 1, "--batch-size", 4, "--name", "tiny")
    assert again.exit_code == 0 and (tmp_path / "train" / "tiny2" / "last.pt").is_file()  # auto-increment

    out = tmp_path / "eval"
    evaluated = run(
        "eval",
        "--checkpoint",
        run_dir / "last.pt",
        "--data",
        synth / "val",
        "--out",
        out,
        "--json",
        "--set",
        "postprocess.thresh=0.05",
        "--set",
        "postprocess.box_thresh=0.05",
    )
    assert evaluated.exit_code == 0, evaluated.output
    scores = json.loads(evaluated.output)
    assert len(list(out.glob("res_*.txt"))) == 4 and len(list((out / "json").glob("*.json"))) == 4
    rescored = json.loads(run("eval", "--gt-dir", synth / "val", "--pred-dir", out, "--json").output)
    assert (rescored["precision"], rescored["recall"], rescored["hmean"]) == (
        scores["precision"],
        scores["recall"],
        scores["hmean"],
    )

    predicted = run(
        "predict", synth / "val" / "images", "--checkpoint", run_dir / "best.pt", "--out", tmp_path / "pred"
    )
    assert predicted.exit_code == 0, predicted.output
    for stem in ("synth_000001", "synth_000004"):
        assert (tmp_path / "pred" / f"res_{stem}.txt").is_file()
        assert json.loads((tmp_path / "pred" / f"{stem}.json").read_text())["detections"] is not None
        assert (tmp_path / "pred" / f"{stem}_overlay.png").stat().st_size > 0


def next_second() -> None:
    """Wait for the wall clock's next whole second. TensorBoard names event files
    events.out.tfevents.<whole seconds>.<host>.<pid>.<counter> (the counter not zero-padded) and
    reads them in sorted order, so a resume's purge only works if its file sorts after the files
    it purges: written in the same second in this process, counter 10 sorts before counter 9."""
    second = int(time.time())
    while int(time.time()) == second:
        time.sleep(0.02)


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, weights_only=False)["model"]


def test_resume_equals_straight_run_and_logs_stay_monotonic(synth, tmp_path):
    straight = train(synth, tmp_path, "--epochs", 2, "--batch-size", 4, "--name", "straight")
    assert straight.exit_code == 0, straight.output
    # interrupted mid-epoch (step 3 of 4), same schedule, then resumed
    first = train(synth, tmp_path, "--epochs", 2, "--batch-size", 4, "--name", "split", "--set", "train.stop_at_step=3")
    assert first.exit_code == 0, first.output
    split_dir = tmp_path / "train" / "split"
    paused = torch.load(split_dir / "last.pt", weights_only=False)["train_state"]
    assert (paused["step"], paused["epoch"], paused["batch_in_epoch"]) == (3, 1, 1)
    next_second()
    resumed = run("train", "--resume", split_dir, "--quiet", "--set", "train.stop_at_step=1000")
    assert resumed.exit_code == 0, resumed.output

    a, b = _weights(tmp_path / "train" / "straight" / "last.pt"), _weights(split_dir / "last.pt")
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=1e-6, msg=key)
    state = torch.load(split_dir / "last.pt", weights_only=False)
    assert state["train_state"]["step"] == 4
    straight_lr = torch.load(tmp_path / "train" / "straight" / "last.pt", weights_only=False)["scheduler"]
    assert state["scheduler"]["_last_lr"] == straight_lr["_last_lr"]

    events = EventAccumulator(str(split_dir / "tb"))
    events.Reload()
    tags = events.Tags()["scalars"]
    assert {
        "train/loss",
        "train/lr",
        "health/grad_norm",
        "health/update_ratio",
        "train/img_per_s",
        "val/hmean",
        "val/precision",
    } <= set(tags)
    for tag in tags:
        steps = [e.step for e in events.Scalars(tag)]
        assert steps == sorted(set(steps)), (tag, steps)  # strictly increasing, across the resume
    assert [e.step for e in events.Scalars("val/hmean")] == [2, 4]
    assert [e.step for e in events.Scalars("train/loss")] == [1, 2, 3, 4]

    # metrics.csv across the pause: no (step, tag) twice, the step column never goes backwards, and
    # every step the straight run logged is there
    rows = [line.split(",") for line in (split_dir / "metrics.csv").read_text().splitlines()[1:]]
    steps = [int(row[0]) for row in rows]
    assert steps == sorted(steps), steps
    assert len({(row[0], row[2]) for row in rows}) == len(rows)
    straight_rows = (tmp_path / "train" / "straight" / "metrics.csv").read_text().splitlines()[1:]
    assert {(r[0], r[2]) for r in rows} == {(r.split(",")[0], r.split(",")[2]) for r in straight_rows}


def test_resume_after_a_crash_purges_logged_steps_past_the_checkpoint(synth, tmp_path):
    """A run killed after logging steps the checkpoint never saw: on resume those steps are
    dropped from TensorBoard and metrics.csv, so the re-done steps are logged exactly once."""
    assert (
        train(
            synth, tmp_path, "--epochs", 2, "--batch-size", 4, "--name", "crash", "--set", "train.stop_at_step=2"
        ).exit_code
        == 0
    )
    run_dir = tmp_path / "train" / "crash"
    from ocrkit.core.engine.logger import RunLogger

    ghost = RunLogger(run_dir, tensorboard=True)  # the steps logged just before the crash
    ghost.scalars({"train/loss": 99.0}, step=3, epoch=1)
    ghost.close()
    next_second()
    assert run("train", "--resume", run_dir, "--quiet", "--set", "train.stop_at_step=1000").exit_code == 0
    events = EventAccumulator(str(run_dir / "tb"))
    events.Reload()
    losses = events.Scalars("train/loss")
    assert [e.step for e in losses] == [1, 2, 3, 4] and 99.0 not in [e.value for e in losses]
    rows = (run_dir / "metrics.csv").read_text().splitlines()
    assert sum(r.startswith("3,") and ",train/loss," in r for r in rows) == 1


def test_init_from_loads_weights_only(synth, tmp_path):
    assert train(synth, tmp_path, "--epochs", 1, "--batch-size", 4, "--name", "base").exit_code == 0
    base = tmp_path / "train" / "base" / "last.pt"
    result = train(
        synth,
        tmp_path,
        "--epochs",
        1,
        "--batch-size",
        4,
        "--name",
        "ft",
        "--init-from",
        base,
        "--set",
        "train.lr=1e-12",
    )
    assert result.exit_code == 0, result.output
    state = torch.load(tmp_path / "train" / "ft" / "last.pt", weights_only=False)
    assert state["train_state"]["step"] == 2  # a new run: its own counter
    for key, value in _weights(base).items():
        if value.is_floating_point() and "running" not in key and "num_batches" not in key:
            torch.testing.assert_close(state["model"][key], value, rtol=0, atol=1e-6)


def test_overfit_one_batch_reaches_high_hmean(synth, tmp_path):
    result = run(
        "train",
        "--data",
        synth / "train",
        "--quiet",
        "--overfit-batches",
        1,
        "--batch-size",
        2,
        "--epochs",
        400,
        "--set",
        f"log.dir={tmp_path}",
        *TINY,
        "--set",
        "data.train_size=[128,160]",
        "--set",
        "model.base_width=16",
        "--set",
        "model.inner_channels=64",
        "--set",
        "model.head_channels=16",
        "--set",
        "train.optimizer=adamw",
        "--set",
        "train.lr=0.002",
        "--set",
        "train.weight_decay=0",
        "--set",
        "train.poly_power=0",
        "--set",
        "train.val_every=400",
        "--set",
        "train.overlays=0",
    )
    assert result.exit_code == 0, result.output
    assert "best val hmean" in result.output
    best = float(result.output.split("best val hmean")[1].split()[0])
    assert best >= 0.95, result.output


def test_bad_input_is_one_line(synth, tmp_path):
    assert_one_line_error(train(synth, tmp_path, "--data", tmp_path / "missing"), "data path not found")
    empty = tmp_path / "empty"
    (empty / "images").mkdir(parents=True)
    (empty / "gts").mkdir()
    assert_one_line_error(train(synth, tmp_path, "--data", empty), "set is empty")

    assert train(synth, tmp_path, "--epochs", 1, "--batch-size", 4, "--name", "r18").exit_code == 0
    checkpoint = tmp_path / "train" / "r18" / "last.pt"
    other = run("eval", "--checkpoint", checkpoint, "--data", synth / "val", "--set", "model.base_width=16")
    assert_one_line_error(other, "another architecture")
    init_other = train(synth, tmp_path, "--init-from", checkpoint, "--set", "model.backbone=resnet50")
    assert_one_line_error(init_other, "another architecture")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    assert_one_line_error(run("eval", "--checkpoint", tmp_path / "junk.pt", "--data", synth / "val"), "junk.pt")

    broken = tmp_path / "broken"
    for sub in ("images", "gts"):
        (broken / sub).mkdir(parents=True)
    (broken / "images" / "a.jpg").write_bytes(b"\xff\xd8 garbage")
    (broken / "gts" / "gt_a.txt").write_text("1,1,50,1,50,20,1,20,word\n")
    assert_one_line_error(train(synth, tmp_path, "--data", broken, "--batch-size", 1), "a.jpg")
    assert_one_line_error(train(synth, tmp_path, "--resume", checkpoint, "--init-from", checkpoint), "pick one")


def _logged(run_dir: Path, prefix: str) -> dict[tuple[int, str], str]:
    lines = (run_dir / "metrics.csv").read_text().splitlines()[1:]
    rows = [line.split(",") for line in lines]
    return {(int(step), tag): value for step, _, tag, value in rows if tag.startswith(prefix)}


def test_profile_breaks_the_step_down_without_changing_the_run(synth, tmp_path):
    plain = train(synth, tmp_path, "--epochs", 2, "--batch-size", 4, "--name", "plain")
    profiled = train(
        synth,
        tmp_path,
        "--epochs",
        2,
        "--batch-size",
        4,
        "--name",
        "profiled",
        "--profile",
        "--profile-trace",
        1,
        "--set",
        "train.profile_trace_start=2",
    )
    assert plain.exit_code == 0 and profiled.exit_code == 0, profiled.output
    plain_dir, profiled_dir = tmp_path / "train" / "plain", tmp_path / "train" / "profiled"
    # the same losses step by step: profiling observes, it does not change the run
    assert _logged(plain_dir, "train/loss") == _logged(profiled_dir, "train/loss")
    stages = _logged(profiled_dir, "profile/")
    assert not _logged(plain_dir, "profile/")
    assert {tag for _, tag in stages} == {
        f"profile/{s}_ms" for s in ("data", "forward", "loss", "backward", "optimizer", "logging", "step")
    } | {"profile/tflops", "profile/mfu"}
    assert sorted({step for step, _ in stages}) == [2, 4]  # once per epoch, at its last step
    from ocrkit.core.config import load_config
    from ocrkit.core.engine.flops import train_flops_per_image

    saved = load_config(profiled_dir / "config.toml")
    flops = train_flops_per_image(saved.model, saved.data.train_size)
    for step in (2, 4):
        parts = sum(
            float(stages[(step, f"profile/{s}_ms")])
            for s in ("data", "forward", "loss", "backward", "optimizer", "logging")
        )
        assert float(stages[(step, "profile/step_ms")]) == pytest.approx(parts, rel=1e-3)
        assert float(stages[(step, "profile/forward_ms")]) > 0 and float(stages[(step, "profile/backward_ms")]) > 0
        # achieved TFLOP/s = FLOPs per image x images per second of the profiled steps (batch 4)
        images_per_s = 4 / (float(stages[(step, "profile/step_ms")]) / 1e3)
        assert float(stages[(step, "profile/tflops")]) == pytest.approx(flops * images_per_s / 1e12, rel=1e-3)
        assert 0 < float(stages[(step, "profile/mfu")]) < 1
    tb = EventAccumulator(str(profiled_dir / "tb"))
    tb.Reload()
    assert "profile/step_ms" in tb.Tags()["scalars"]
    assert list((profiled_dir / "profile").glob("*.pt.trace.json"))  # the bounded torch.profiler window


def test_launcher_options_without_devices_are_one_line():
    conftest.assert_one_line_error(run("train", "--nodes", "2", "--master-addr", "h"), "go with --devices")


def test_devices_under_torchrun_is_one_line():
    env = {"RANK": "0", "WORLD_SIZE": "2", "LOCAL_RANK": "0", "LOCAL_WORLD_SIZE": "2"}
    conftest.assert_one_line_error(run("train", "--devices", "2", env=env), "--devices starts torchrun", "[rank 0]")


def test_predict_refuses_several_processes(tmp_path):
    from ocrkit.core.engine.eval_job import refuse_several_processes
    from ocrkit.core.errors import OcrkitError

    os_env = {"RANK": "1", "WORLD_SIZE": "2"}
    with pytest.MonkeyPatch.context() as patch:
        for key, value in os_env.items():
            patch.setenv(key, value)
        with pytest.raises(OcrkitError, match="ocrkit predict runs in one process"):
            refuse_several_processes("predict")


def test_label_maps_on_the_device_train_like_the_loader_maps(synth, tmp_path):
    """data.label_maps = device: the same run step for step (the maps' masks are identical and
    the threshold map agrees within float32 rounding, so the losses agree closely)."""
    loader = train(synth, tmp_path, "--epochs", 1, "--batch-size", 4, "--name", "loader")
    device = train(
        synth, tmp_path, "--epochs", 1, "--batch-size", 4, "--name", "device", "--set", "data.label_maps=device"
    )
    assert loader.exit_code == 0 and device.exit_code == 0, device.output
    first = _logged(tmp_path / "train" / "loader", "train/loss")
    second = _logged(tmp_path / "train" / "device", "train/loss")
    assert first.keys() == second.keys() and len(first) >= 2
    for key in first:
        assert float(second[key]) == pytest.approx(float(first[key]), rel=1e-3)
    # what a GPU run does by default: the jitter on the device too (float ops, not uint8 ones)
    both = ("--set", "data.label_maps=device", "--set", "data.augment.jitter_on=device")
    gpu_like = train(synth, tmp_path, "--epochs", 1, "--batch-size", 4, "--name", "gpu-like", *both)
    assert gpu_like.exit_code == 0, gpu_like.output
    third = _logged(tmp_path / "train" / "gpu-like", "train/loss")
    assert third.keys() == first.keys() and all(math.isfinite(float(v)) for v in third.values())

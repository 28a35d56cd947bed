"""Run directories: runs/<kind>/<name>, auto-incremented (name, name2, name3, ...), never shared."""

from __future__ import annotations

import threading

import pytest

from ocrkit.core.engine.rundir import create_run_dir
from ocrkit.core.errors import OcrkitError


def test_the_first_run_gets_its_name_under_its_kind_and_missing_parents_are_made(tmp_path):
    root = tmp_path / "not" / "yet" / "runs"
    run = create_run_dir(root, "train", "exp")
    assert run == root / "train" / "exp" and run.is_dir() and not any(run.iterdir())
    assert create_run_dir(str(root), "eval", "exp") == root / "eval" / "exp"  # a str root; kinds apart


def test_a_taken_name_is_numbered_from_two_and_existing_files_are_left_alone(tmp_path):
    first = create_run_dir(tmp_path, "train", "exp")
    (first / "last.pt").write_bytes(b"weights")
    assert [create_run_dir(tmp_path, "train", "exp").name for _ in range(3)] == ["exp2", "exp3", "exp4"]
    assert (first / "last.pt").read_bytes() == b"weights"
    (tmp_path / "train" / "exp6").mkdir()  # a gap is filled, a taken number skipped
    assert create_run_dir(tmp_path, "train", "exp").name == "exp5"
    assert create_run_dir(tmp_path, "train", "exp").name == "exp7"
    (tmp_path / "train" / "solo").write_text("a file, not a run")  # a file of that name counts as taken
    assert create_run_dir(tmp_path, "train", "solo").name == "solo2"
    assert create_run_dir(tmp_path, "train", "exp2x").name == "exp2x"  # names are not parsed


def test_runs_started_together_never_share_a_directory(tmp_path):
    made, barrier = [], threading.Barrier(8)

    def start():
        barrier.wait()
        made.append(create_run_dir(tmp_path, "train", "race"))

    threads = [threading.Thread(target=start) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(p.name for p in made) == sorted(["race", *(f"race{i}" for i in range(2, 9))])


def test_a_name_with_a_slash_is_made_or_refused_in_one_line(tmp_path):
    try:
        run = create_run_dir(tmp_path, "train", "group/exp")
    except OcrkitError:
        return
    assert run == tmp_path / "train" / "group" / "exp" and run.is_dir()


@pytest.mark.parametrize("name", ["/abs/exp", "../escape", "a/../../b", ""])
def test_a_name_that_would_leave_the_runs_folder_is_one_line(tmp_path, name):
    with pytest.raises(OcrkitError, match="--name"):
        create_run_dir(tmp_path, "train", name)

import subprocess
from pathlib import Path

import pytest

from ocrkit.core.atomic import atomic_output, remove_stale_temps, temp_path, write_bytes_atomic, write_text_atomic


def test_interrupted_write_keeps_the_old_file_and_leaves_no_temp(tmp_path: Path):
    target = tmp_path / "sub" / "file.txt"
    write_text_atomic(target, "good\n")
    with pytest.raises(RuntimeError):
        with atomic_output(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed mid-write")
    assert target.read_text() == "good\n"
    assert [p.name for p in target.parent.iterdir()] == ["file.txt"]


def test_completed_write_replaces(tmp_path: Path):
    target = tmp_path / "file.bin"
    with atomic_output(target, fsync=True) as tmp:
        tmp.write_bytes(b"\x00\x01")
    assert target.read_bytes() == b"\x00\x01"
    assert list(tmp_path.iterdir()) == [target]


def test_a_durable_write_replaces_and_leaves_no_temp(tmp_path: Path):
    target = tmp_path / "run" / "config.toml"
    write_text_atomic(target, "a = 1\n", fsync=True)
    write_bytes_atomic(target, b"a = 2\n", fsync=True)
    assert target.read_text() == "a = 2\n"
    assert list(target.parent.iterdir()) == [target]


def test_temps_of_killed_writers_are_removed_and_those_of_live_ones_kept(tmp_path: Path):
    dead = subprocess.Popen(["true"])
    dead.wait()
    mine = temp_path(tmp_path / "last.pt")
    stale = tmp_path / f".last.pt.{dead.pid}.0123abcd.tmp"
    for path in (mine, stale, tmp_path / "last.pt", tmp_path / ".hidden.tmp"):
        path.write_bytes(b"x")
    assert remove_stale_temps(tmp_path) == [stale]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([mine.name, "last.pt", ".hidden.tmp"])
    assert remove_stale_temps(tmp_path / "absent") == []

from pathlib import Path

import pytest

from ocrkit.core.atomic import atomic_output, write_text_atomic


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

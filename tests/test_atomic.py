"""Atomic writes: all or nothing, readable by the group, no temporary files left behind."""
import os

import pytest

from helpers.atomic import atomic_write, write_json


def test_write_replaces_the_file_whole(tmp_path):
    target = tmp_path / "sub" / "f.json"
    write_json(target, {"a": 1})
    assert target.read_text() == '{\n "a": 1\n}\n'
    assert oct(os.stat(target).st_mode & 0o777) == "0o644"


def test_failure_keeps_the_previous_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "f.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_write(target, "w") as f:
            f.write("half of the new")
            raise RuntimeError("disk full")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.txt"]

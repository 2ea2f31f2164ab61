import json
import os

import pytest

from reidlib.atomic import atomic_write, atomic_write_json, atomic_write_text, is_leftover, remove_leftovers


def test_a_failed_write_keeps_the_old_content_and_leaves_nothing(tmp_path):
    path = tmp_path / "metrics.json"
    atomic_write_text(path, "old")

    def half_then_crash(fh):
        fh.write(b"ne")
        raise KeyboardInterrupt  # as Ctrl-C in the middle of a write

    with pytest.raises(KeyboardInterrupt):
        atomic_write(path, half_then_crash)
    assert path.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json"]


def test_json_is_strict_and_refused_before_any_file_exists(tmp_path):
    path = tmp_path / "m.json"
    with pytest.raises(ValueError):
        atomic_write_json(path, {"mAP": float("nan")})
    assert not any(tmp_path.iterdir())
    atomic_write_json(path, {"mAP": 0.5})
    assert json.loads(path.read_text()) == {"mAP": 0.5}


def test_written_files_get_the_usual_mode(tmp_path):
    old = os.umask(0o022)
    try:
        path = atomic_write_text(tmp_path / "a.txt", "x")
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o644


def test_leftovers_of_interrupted_writes_are_removed_with_a_notice(tmp_path):
    leftover = tmp_path / ".latest.pt.k2j_x9ab.tmp"
    leftover.write_bytes(b"half a checkpoint")
    keep = [tmp_path / "latest.pt", tmp_path / "notes.tmp", tmp_path / ".hidden"]
    for p in keep:
        p.write_text("mine")
    lines = []
    assert remove_leftovers(tmp_path, notice=lines.append) == [leftover]
    assert not leftover.exists() and all(p.exists() for p in keep)
    assert lines == [f"removed {leftover}, left by an interrupted write"]
    assert is_leftover(".metrics.json.abc123.tmp") and not is_leftover("metrics.json")
    assert remove_leftovers(tmp_path / "missing") == []

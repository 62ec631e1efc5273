"""One atomic folder write and one completion marker for every artifact."""

import hashlib
import os

import pytest

from pebench_core.config import ConfigError
from pebench_core.storage import MARKER, atomic_dir, is_complete, mark_complete, read_marker, swap_in, sweep_temps, temp_dir_for


def test_the_marker_is_written_last_and_read_back(tmp_path):
    final = tmp_path / "artifact"
    with atomic_dir(final, marker={"artifact": "x", "n": 3}) as tmp:
        (tmp / "data.bin").write_bytes(b"123")
        assert not is_complete(tmp)  # not before the body is done
    marker = read_marker(final)
    assert is_complete(final) and marker["artifact"] == "x" and marker["n"] == 3
    assert marker["files"] == {"data.bin": [3, hashlib.sha256(b"123").hexdigest()]}
    assert sorted(p.name for p in final.iterdir()) == sorted([MARKER, "data.bin"])
    assert [p.name for p in tmp_path.iterdir()] == ["artifact"]  # no temporary folder left


def test_a_failed_write_keeps_the_old_artifact(tmp_path):
    final = tmp_path / "artifact"
    with atomic_dir(final, marker={"v": 1}) as tmp:
        (tmp / "v").write_text("1")
    with pytest.raises(RuntimeError):
        with atomic_dir(final, marker={"v": 2}) as tmp:
            (tmp / "v").write_text("2")
            raise RuntimeError("killed")
    assert read_marker(final)["v"] == 1 and (final / "v").read_text() == "1"
    assert [p.name for p in tmp_path.iterdir()] == ["artifact"]


def test_swap_in_replaces_a_folder(tmp_path):
    final, new = tmp_path / "a", tmp_path / "b"
    final.mkdir(), new.mkdir()
    (final / "old").write_text(""), (new / "new").write_text("")
    swap_in(new, final)
    assert [p.name for p in final.iterdir()] == ["new"] and not new.exists()


def test_temps_of_dead_processes_are_swept_and_live_ones_kept(tmp_path):
    final = tmp_path / "stage"
    dead = tmp_path / ".stage.tmp-999999999-abc"  # no such pid
    aside = tmp_path / ".stage.old-999999999-abc"
    live = tmp_path / f".stage.tmp-{os.getpid()}-xyz"
    other = tmp_path / ".stagehand.tmp-999999999-abc"  # another artifact's temp
    for p in (dead, aside, live, other):
        p.mkdir()
    assert sorted(sweep_temps(final)) == sorted([dead, aside])
    assert live.exists() and other.exists()
    tmp = temp_dir_for(final)  # sweeps too, then makes a fresh one
    assert tmp.name.startswith(f".stage.tmp-{os.getpid()}-") and tmp.is_dir()


def test_a_missing_or_broken_marker_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="not a finished artifact"):
        read_marker(tmp_path)
    (tmp_path / MARKER).write_text("{broken")
    with pytest.raises(ConfigError, match="malformed"):
        read_marker(tmp_path)
    mark_complete(tmp_path, {"ok": True})
    assert read_marker(tmp_path) == {"ok": True, "files": {}}


def test_verify_names_what_changed_after_the_write(tmp_path):
    from pebench_core.storage import verify

    final = tmp_path / "a"
    with atomic_dir(final, marker={}) as tmp:
        (tmp / "w.bin").write_bytes(b"abcd")
        (tmp / "sub").mkdir()
        (tmp / "sub" / "x.txt").write_text("x")
    assert verify(final) is None
    (final / "w.bin").write_bytes(b"abcx")  # same size, other bytes
    assert verify(final) == "w.bin differs from what was written"
    (final / "w.bin").write_bytes(b"ab")
    assert verify(final) == "w.bin has 2 bytes, 4 when written"
    (final / "w.bin").write_bytes(b"abcd")
    (final / "extra").write_text("")
    assert verify(final) == "extra was added after it was written"
    (final / "extra").unlink()
    (final / "sub" / "x.txt").unlink()
    assert verify(final) == "sub/x.txt is missing"
    (final / MARKER).write_text("{")
    assert verify(final).startswith("its marker cannot be read")

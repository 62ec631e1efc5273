"""One atomic folder write and one completion marker for every artifact."""

import errno
import hashlib
import os
import re

import pytest

from pebench_core.config import ConfigError
from pebench_core.storage import (
    MARKER,
    NoSpaceError,
    atomic_dir,
    atomic_write_bytes,
    is_complete,
    mark_complete,
    read_marker,
    swap_in,
    sweep_temps,
    temp_dir_for,
)

DISK_FULL = OSError(errno.ENOSPC, "No space left on device")
# what safetensors raises (its own type, not an OSError) when the device fills
SAFETENSORS_FULL = RuntimeError(
    'Error while serializing: IoError(Os { code: 28, kind: StorageFull, message: "No space left on device" })'
)


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


def _needed(message: str) -> int:
    return int(re.search(r"needs about ([\d,]+) bytes", message).group(1).replace(",", ""))


@pytest.mark.parametrize("error", [DISK_FULL, SAFETENSORS_FULL], ids=["oserror", "safetensors"])
def test_a_full_disk_is_one_line_naming_the_folder_and_the_bytes(tmp_path, error):
    stage = tmp_path / "models" / "finetune"
    with atomic_dir(stage / "old-key", marker={}) as tmp:  # an earlier build of the same stage
        (tmp / "model.safetensors").write_bytes(b"w" * 5000)
    with pytest.raises(NoSpaceError) as caught:
        with atomic_dir(stage / "new-key", marker={}) as tmp:
            (tmp / "model.safetensors").write_bytes(b"w" * 1200)
            raise error
    message = str(caught.value)
    assert "\n" not in message and f"device of {stage} while writing new-key" in message
    assert 5000 < _needed(message) < 6000 and " are free" in message  # the earlier build (with its marker): the better guess
    assert sorted(p.name for p in stage.iterdir()) == ["old-key"]  # nothing half-written left


def test_a_full_disk_inside_a_nested_write_names_the_outer_folder(tmp_path):
    with pytest.raises(NoSpaceError, match=r"while writing stage: it needs about 300 bytes"):
        with atomic_dir(tmp_path / "stage", marker={}) as outer:
            (outer / "a").write_bytes(b"x" * 300)
            with atomic_dir(outer / "weights"):
                raise DISK_FULL
    assert list(tmp_path.iterdir()) == []


def test_a_single_file_that_does_not_fit_names_its_size(tmp_path, monkeypatch):
    def full(fd):
        raise DISK_FULL

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(NoSpaceError, match=r"while writing results.parquet: it needs about 4,096 bytes"):
        atomic_write_bytes(tmp_path / "results.parquet", b"x" * 4096)
    assert list(tmp_path.iterdir()) == []


def test_other_errors_are_not_taken_for_a_full_disk(tmp_path):
    with pytest.raises(PermissionError):
        with atomic_dir(tmp_path / "stage"):
            raise PermissionError(errno.EACCES, "Permission denied")

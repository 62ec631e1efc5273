"""Atomic writes and the one completion marker every artifact folder carries.

Every artifact a run keeps (the world, model checkpoints and adapters, the vision
pre-training cache, evaluation and unlearning folders) is written the same way:

1. into a temporary sibling folder named ``.<name>.tmp-<pid>-<random>``
   (:func:`temp_dir_for`, which first sweeps the temporary folders of processes that are
   gone: a run killed with ``kill -9`` never cleans up after itself);
2. the completion marker :data:`MARKER` written last inside it (:func:`mark_complete`);
3. swapped in under its final name (:func:`swap_in`).

So a folder either holds a finished artifact with its marker, or is treated as absent and
rebuilt (:func:`is_complete`), and an interrupted run resumes cleanly. The marker also
records a content digest of every file (:func:`folder_digest`); :func:`verify` checks it on
reuse, so a file truncated, overwritten or deleted after the write is noticed and the
artifact rebuilt, never reused. Single files go through :func:`atomic_write_bytes` (a
temporary file and a rename).
"""

from __future__ import annotations

import contextlib
import errno
import glob
import hashlib
import json
import os
import re
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

import pandas as pd

from .errors import ConfigError

MARKER = ".complete.json"


def ensure_writable_dir(path: Path, what: str = "output folder") -> Path:
    """Create ``path`` (and parents) or stop with a message naming it."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{what} {path} exists and is not a folder; choose another path")
    try:
        path.mkdir(parents=True, exist_ok=True)
        # unique per call: two threads of one process (chapters side by side) probe one folder
        probe = path / f".write-test-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise ConfigError(f"{what} {path} cannot be written: {exc.strerror or exc}") from None
    return path


# ------------------------------------------------------------------ a full disk
class NoSpaceError(ConfigError):
    """The device filled while the artifact ``folder`` was written (a :class:`ConfigError`: one line)."""

    def __init__(self, message: str, folder: Path):
        super().__init__(message)
        self.folder = Path(folder)


def no_space_left(exc: BaseException) -> bool:
    """Whether ``exc`` says the device (or the user's quota) is full. safetensors and pyarrow
    report it in their own exception types, hence the text as well as the errno; a
    :class:`NoSpaceError` already raised counts too (:func:`atomic_dir` says whose it is)."""
    if isinstance(exc, NoSpaceError):
        return True  # said already, for the artifact it names
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    text = str(exc)
    return any(s in text for s in ("No space left on device", "StorageFull", "Disk quota exceeded"))


def folder_bytes(folder: Path) -> int:
    """The bytes of every file under ``folder`` (0 if it is gone)."""
    with contextlib.suppress(OSError):
        return sum(p.stat().st_size for p in Path(folder).rglob("*") if p.is_file())
    return 0


def space_error(final: Path, written: int, similar: Iterable[Path] = ()) -> NoSpaceError:
    """The one line a full disk gets: the folder, about how many bytes the artifact needs and
    how many are free. The need is the largest of what was written before the disk filled and
    the sizes of the finished artifacts beside ``final`` or in ``similar`` (the same kind of
    artifact: the fine-tuned model weighs what the base weighs)."""
    final = Path(final)
    kin = [*final.parent.glob("*"), *similar]
    need = max([written, *(folder_bytes(p) for p in kin if p.is_dir() and p != final and is_complete(p))])
    anchor = next(p for p in (final.parent, *final.parents) if p.exists())
    free = shutil.disk_usage(anchor).free
    size = f"about {need:,} bytes and {free:,} are free" if need else f"more than the {free:,} bytes that are free"
    return NoSpaceError(
        f"no space left on the device of {final.parent} while writing {final.name}: it needs {size}; "
        "free some space and rerun (finished stages are kept)",
        final,
    )


# ------------------------------------------------------------------ single files
def atomic_write_bytes(path: Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` via a temporary file in the same folder and a rename."""
    path = Path(path)
    ensure_writable_dir(path.parent)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if no_space_left(exc):
            raise space_error(path, len(data)) from None
        raise
    return path


def atomic_write_json(path: Path, obj: Any) -> Path:
    return atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n").encode())


def atomic_write_parquet(path: Path, df: pd.DataFrame) -> Path:
    path = Path(path)
    ensure_writable_dir(path.parent)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        df.to_parquet(tmp, index=False)
        os.replace(tmp, path)
    except BaseException as exc:
        written = Path(tmp).stat().st_size if Path(tmp).exists() else 0
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if no_space_left(exc):
            raise space_error(path, written) from None
        raise
    return path


# ------------------------------------------------------------------ folders
def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists but is not ours (EPERM)
        return True
    return True


def sweep_temps(final: Path) -> list[Path]:
    """Delete the temporary (and set-aside) folders of earlier writes of ``final`` whose
    process is gone; folders of live processes are left alone. Returns what was removed."""
    final = Path(final)
    removed = []
    for p in final.parent.glob(f".{glob.escape(final.name)}.*-*-*"):
        m = re.match(r"\.(?:tmp|old)-(\d+)-", p.name[len(final.name) + 1 :])
        if m and p.is_dir() and not _alive(int(m.group(1))):
            shutil.rmtree(p, ignore_errors=True)
            removed.append(p)
    return removed


def temp_dir_for(final: Path) -> Path:
    """A new temporary sibling folder for building ``final`` (stale ones swept first)."""
    final = Path(final)
    ensure_writable_dir(final.parent)
    sweep_temps(final)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-{os.getpid()}-", dir=final.parent))
    umask = os.umask(0)
    os.umask(umask)
    tmp.chmod(0o777 & ~umask)  # mkdtemp makes it private; an artifact should not be
    return tmp


def swap_in(tmp: Path, final: Path) -> None:
    """Put the finished folder ``tmp`` under the name ``final``, replacing what is there:
    the old folder is renamed aside first, so ``final`` is never missing a finished artifact
    halfway through a delete."""
    final = Path(final)
    old = None
    if final.exists():
        old = final.parent / f".{final.name}.old-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        os.replace(final, old)
    os.replace(tmp, final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def atomic_dir(final: Path, marker: Mapping[str, Any] | None = None, similar: Iterable[Path] = ()) -> Iterator[Path]:
    """Yield a temporary sibling folder; on success write ``marker`` (if given) into it as
    the completion marker and swap it in as ``final``. On any error the temporary folder is
    removed, so ``final`` either holds the new artifact complete or is left as it was; a full
    disk is then one line (:func:`space_error`, which reads ``similar`` for its estimate)."""
    tmp = temp_dir_for(final)
    try:
        yield tmp
        if marker is not None:
            mark_complete(tmp, marker)
        swap_in(tmp, final)
    except BaseException as exc:
        written = folder_bytes(tmp)
        shutil.rmtree(tmp, ignore_errors=True)
        # a full disk inside this folder (a checkpoint saved into a stage's) is this folder's to
        # report; one met by another stage built meanwhile (a parent) stays that stage's
        if no_space_left(exc) and not (isinstance(exc, NoSpaceError) and not exc.folder.is_relative_to(tmp)):
            raise space_error(final, written, similar) from None
        raise


# ------------------------------------------------------------------ the marker
def folder_digest(folder: Path) -> dict[str, list]:
    """``{relative path: [size, sha256]}`` of every file under ``folder`` but the marker."""
    folder = Path(folder)
    out: dict[str, list] = {}
    for p in sorted(folder.rglob("*")):
        if p.is_file() and p.name != MARKER:
            h = hashlib.sha256()
            with p.open("rb") as fh:
                for block in iter(lambda: fh.read(1 << 20), b""):
                    h.update(block)
            out[p.relative_to(folder).as_posix()] = [p.stat().st_size, h.hexdigest()]
    return out


def mark_complete(folder: Path, meta: Mapping[str, Any]) -> Path:
    """Write the completion marker (the artifact's metadata and the digest of its files)
    into ``folder``: last, always."""
    body = {**json.loads(json.dumps(dict(meta), default=str)), "files": folder_digest(folder)}
    return atomic_write_json(Path(folder) / MARKER, body)


def verify(folder: Path) -> str | None:
    """Why the finished artifact in ``folder`` cannot be reused (a file missing, added, of
    another size or content than when it was written, or an unreadable marker), or ``None``
    when it is intact. A marker without a digest (written before digests) is not verified."""
    folder = Path(folder)
    try:
        files = json.loads((folder / MARKER).read_text()).get("files")
    except (OSError, ValueError) as exc:
        return f"its marker cannot be read ({exc})"
    if files is None:
        return None
    now = folder_digest(folder)
    for name, (size, sha) in files.items():
        if name not in now:
            return f"{name} is missing"
        if now[name][0] != size:
            return f"{name} has {now[name][0]} bytes, {size} when written"
        if now[name][1] != sha:
            return f"{name} differs from what was written"
    extra = sorted(set(now) - set(files))
    return f"{extra[0]} was added after it was written" if extra else None


def is_complete(folder: Path) -> bool:
    return (Path(folder) / MARKER).is_file()


def read_marker(folder: Path) -> dict:
    """The metadata stored with a finished artifact (a missing marker is a clear error)."""
    path = Path(folder) / MARKER
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{folder} is not a finished artifact: {MARKER} is missing") from None
    except ValueError as exc:
        raise ConfigError(f"{path} is malformed: {exc}") from None

"""Atomic file writes: a reader (or a crash) never sees half a checkpoint or report.

Everything is written to a temporary file in the destination folder and moved into place with
``os.replace``, which is atomic on POSIX and Windows for files on one filesystem.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from edgeblood.errors import EdgebloodError


@contextlib.contextmanager
def atomic_path(dest: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside ``dest``; on success move it onto ``dest``, on error delete it."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=suffix or ".tmp", dir=dest.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        if tmp_path.is_file():  # mkstemp makes 0600; give the file the permissions a plain open() would
            os.chmod(tmp_path, 0o666 & ~_umask())
        os.replace(tmp_path, dest)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_text(dest: str | os.PathLike, text: str) -> Path:
    with atomic_path(dest) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(dest)


def write_json(dest: str | os.PathLike, obj: Any) -> Path:
    return write_text(dest, json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


def write_bytes(dest: str | os.PathLike, data: bytes) -> Path:
    with atomic_path(dest) as tmp:
        tmp.write_bytes(data)
    return Path(dest)


def _json_default(obj: Any) -> Any:
    # numpy scalars / arrays and paths show up in metrics; make them plain JSON.
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


@contextlib.contextmanager
def exclusive_lock(lock_file: str | os.PathLike) -> Iterator[None]:
    """An exclusive advisory lock (POSIX ``flock``) around a read-modify-write of a shared JSON file.

    Atomic replacement alone keeps a file whole, but two processes that each read, merge and write
    (``edgeblood evaluate`` on val while another evaluates test; two exports into one folder) would
    drop one another's entries. A no-op where fcntl is missing (Windows: last writer wins, the file
    itself is still replaced atomically).
    """
    lock_file = Path(lock_file)
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:
        yield
        return
    with open(lock_file, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def check_output_file(dest: str | os.PathLike, option: str = "--out") -> Path:
    """Refuse, before any work, an output file that cannot be written: a folder in its place, or a
    file where one of its parent folders should be (one line naming the fix)."""
    dest = Path(dest).expanduser()
    if dest.is_dir():
        raise EdgebloodError(f"{option} {dest} is a folder; name a file inside it, e.g. {option} {dest / ('result' + (dest.suffix or '.csv'))}")
    _check_parents(dest.parent, option, dest)
    return dest


def check_output_dir(dest: str | os.PathLike, option: str = "--out") -> Path:
    """The same for an output folder: a file in its place or above it is refused before any work."""
    dest = Path(dest).expanduser()
    if dest.exists() and not dest.is_dir():
        raise EdgebloodError(f"{option} {dest} is a file, not a folder; move it away or pass another folder")
    _check_parents(dest.parent, option, dest)
    return dest


def _check_parents(folder: Path, option: str, dest: Path) -> None:
    for parent in (folder, *folder.parents):
        if parent.exists():
            if not parent.is_dir():
                raise EdgebloodError(f"{option} {dest}: {parent} is a file, so nothing can be written below it; choose another path")
            if not os.access(parent, os.W_OK | os.X_OK):
                raise EdgebloodError(f"{option} {dest}: cannot write below {parent} (permission denied); choose a writable folder")
            return

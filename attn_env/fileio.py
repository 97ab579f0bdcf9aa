"""Atomic file and folder writes: nothing a user saved is ever half-written.

The one home of the write-then-rename pattern used by checkpoints, results,
plots and attention banks. A file is written to a temporary name in its target
folder (so the rename is atomic on every POSIX file system), flushed to disk,
given the mode ``open`` would have given it (``0o666`` minus the umask;
``mkstemp`` alone leaves ``0o600``) and renamed over the target. A crash at any
moment leaves either the old file or the new one, never a mix.

Nothing but a regular file is ever replaced: a symlink, a device, a fifo or a
folder at the target path is refused with one line (``ValueError``), so
``--plot /dev/null`` run as root cannot turn ``/dev/null`` into a PNG, and a
link cannot redirect a write elsewhere.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = [
    "atomic_save",
    "atomic_write_text",
    "check_writable_target",
    "fsync_dir",
    "umask_mode",
]


def umask_mode(full: int) -> int:
    """``full`` minus the process umask (what ``open`` or ``mkdir`` would give)."""
    mask = os.umask(0)
    os.umask(mask)
    return full & ~mask


def fsync_dir(path: str | Path) -> None:
    """Make a rename inside ``path`` durable (no-op where a folder cannot be opened)."""
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


_KINDS = (
    (stat.S_ISLNK, "a symlink"),
    (stat.S_ISDIR, "a folder"),
    (stat.S_ISFIFO, "a fifo"),
    (stat.S_ISCHR, "a device"),
    (stat.S_ISBLK, "a device"),
    (stat.S_ISSOCK, "a socket"),
)


def check_writable_target(path: str | Path) -> None:
    """``ValueError`` naming ``path`` unless it is missing or a regular file.

    Checked with ``os.lstat``, so a symlink is refused whatever it points at.
    """
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if stat.S_ISREG(mode):
        return
    kind = next((name for test, name in _KINDS if test(mode)), "not a regular file")
    raise ValueError(
        f"refusing to write {str(path)!r}: it is {kind}, not a regular file; "
        "choose another path"
    )


def atomic_save(path: str | Path, save: Callable[[Path], Any]) -> Path:
    """Write ``path`` through ``save(tmp_path)``, then rename it into place.

    ``tmp_path`` lies in the same folder and keeps the final suffix (SB3's and
    matplotlib's savers look at it). If ``save`` raises, the temporary file is
    removed and ``path`` is untouched. ``path`` must be missing or a regular
    file (:func:`check_writable_target`); the new file gets ``0o666`` minus the
    umask and new parent folders ``0o777`` minus the umask.
    """
    path = Path(path)
    check_writable_target(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(
        dir=path.parent, prefix=f".{path.stem}.", suffix=path.suffix
    )
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        save(tmp)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp, umask_mode(0o666))
        check_writable_target(path)  # nothing appeared there meanwhile
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` atomically."""
    return atomic_save(path, lambda tmp: tmp.write_text(text))

"""Atomic file and folder writes: nothing a user saved is ever half-written.

The one home of the write-then-rename pattern used by checkpoints, results,
plots and attention banks. A file is written to a temporary name in its target
folder (so the rename is atomic on every POSIX file system), flushed to disk,
given the mode ``open`` would have given it (``0o666`` minus the umask;
``mkstemp`` alone leaves ``0o600``) and renamed over the target. A crash at any
moment leaves either the old file or the new one, never a mix.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["atomic_save", "atomic_write_text", "fsync_dir", "umask_mode"]


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


def atomic_save(path: str | Path, save: Callable[[Path], Any]) -> Path:
    """Write ``path`` through ``save(tmp_path)``, then rename it into place.

    ``tmp_path`` lies in the same folder and keeps the final suffix (SB3's and
    matplotlib's savers look at it). If ``save`` raises, the temporary file is
    removed and ``path`` is untouched.
    """
    path = Path(path)
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
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` atomically."""
    return atomic_save(path, lambda tmp: tmp.write_text(text))

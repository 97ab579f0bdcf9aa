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
import math
import os
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from attn_env.errors import UserError

__all__ = [
    "MAX_JSON_BYTES",
    "MAX_NESTING",
    "atomic_save",
    "atomic_write_text",
    "check_user_file",
    "check_writable_target",
    "fsync_dir",
    "json_depth",
    "nesting_over",
    "read_user_bytes",
    "read_user_json",
    "strict_json_loads",
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
    raise UserError(
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


# -- reading files a user hands in --------------------------------------------------

MAX_JSON_BYTES = 64 * 2**20
"Default size cap of a JSON file a user hands in (manifests, solutions, caches)."
MAX_NESTING = 64
"Deepest nesting of JSON arrays/objects (or YAML collections) accepted."


def check_user_file(
    path: str | Path,
    what: str,
    max_bytes: int,
    inside: str | Path | None = None,
) -> Path:
    """``path`` if it is a regular file of at most ``max_bytes``, else one line.

    Checked *before* anything opens it, so a fifo cannot hang a read and a
    symlink to ``/dev/zero`` cannot feed one without end. With ``inside``, the
    file (symlinks resolved) must also lie inside that folder.

    Raises:
        FileNotFoundError: ``path`` is missing (the message names it).
        UserError: not a regular file, too large, or outside ``inside``.
    """
    path = Path(path)
    try:
        info = path.stat()  # follows symlinks: the kind of what would be read
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: {what} not found") from None
    except (OSError, RuntimeError) as err:  # a symlink loop, a bad component
        raise UserError(f"{path}: cannot read the {what} ({_brief(err)})") from None
    if not stat.S_ISREG(info.st_mode):
        kind = next(
            (name for test, name in _KINDS if test(info.st_mode)), "not a regular file"
        )
        raise UserError(f"{path}: the {what} is {kind}, not a regular file")
    if info.st_size > max_bytes:
        raise UserError(
            f"{path}: the {what} is {info.st_size:,} bytes, over the cap of "
            f"{max_bytes:,}"
        )
    if inside is not None and not path.resolve().is_relative_to(Path(inside).resolve()):
        raise UserError(f"{path}: the {what} leads outside {str(inside)!r}")
    return path


def read_user_bytes(
    path: str | Path, what: str, max_bytes: int, inside: str | Path | None = None
) -> bytes:
    """The bytes of a file a user handed in, checked by :func:`check_user_file`.

    Reads at most ``max_bytes + 1`` bytes, so a file that grows after the
    check is refused rather than read without end.
    """
    path = check_user_file(path, what, max_bytes, inside)
    with open(path, "rb") as fh:
        data = fh.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise UserError(f"{path}: the {what} is over the cap of {max_bytes:,} bytes")
    return data


def json_depth(text: str) -> int:
    """How deeply ``text``'s JSON arrays and objects nest (strings skipped)."""
    import re

    import numpy as np

    bare = re.sub(r'"(?:[^"\\]|\\.)*"', '""', text)
    code = np.frombuffer(bare.encode("utf-8", "replace"), dtype=np.uint8)
    step = np.isin(code, (ord("["), ord("{"))).astype(np.int64) - np.isin(
        code, (ord("]"), ord("}"))
    )
    return int(np.cumsum(step).max(initial=0))


def nesting_over(text: str, cap: int) -> int | None:
    """How deeply ``text`` nests if that is over ``cap``, else ``None``.

    Counting brackets first bounds the depth cheaply (a JSONL row of a corpus
    rarely holds more than one), so :func:`json_depth` runs only when needed.
    """
    if text.count("[") + text.count("{") <= cap:
        return None
    depth = json_depth(text)
    return depth if depth > cap else None


def strict_json_loads(text: str) -> Any:
    """``json.loads`` refusing ``NaN``, ``Infinity`` and floats that overflow
    (``1e400``) with a ``ValueError``: every number read is finite."""
    import json

    def refuse(name: str) -> Any:
        raise ValueError(f"{name} is not a number JSON allows")

    def finite(literal: str) -> float:
        value = float(literal)
        if math.isinf(value):
            raise ValueError(f"{literal[:40]} overflows a float")
        return value

    return json.loads(text, parse_constant=refuse, parse_float=finite)


def read_user_json(
    path: str | Path,
    what: str,
    max_bytes: int = MAX_JSON_BYTES,
    inside: str | Path | None = None,
    max_depth: int = MAX_NESTING,
) -> Any:
    """Parse a JSON file a user handed in, with limits; one line naming it if bad.

    Regular files only, at most ``max_bytes``, nesting at most ``max_depth``;
    ``NaN``, ``Infinity`` and floats that overflow (``1e400``) are refused.
    The caller still checks the type and range of every field it uses.

    Raises:
        FileNotFoundError: ``path`` is missing.
        UserError: anything else wrong with the file (one line naming it).
    """
    data = read_user_bytes(path, what, max_bytes, inside)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise UserError(
            f"{path}: the {what} is not UTF-8 text ({err.reason})"
        ) from None
    if (depth := nesting_over(text, max_depth)) is not None:
        raise UserError(
            f"{path}: the {what} nests {depth} levels deep, over the cap of {max_depth}"
        )
    try:
        return strict_json_loads(text)
    except (ValueError, RecursionError) as err:
        raise UserError(
            f"{path}: the {what} is not valid JSON ({_brief(err)})"
        ) from None


def _brief(err: BaseException, limit: int = 160) -> str:
    text = " ".join(str(err).split()) or type(err).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."

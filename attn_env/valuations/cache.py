"""The on-disk cache: the folder banks live in, the banks that ship prebuilt in
the package (``prebuilt/<key>/``, looked up after the cache folder), and content
digests of model files.

A bank's key names the model by the SHA-256 of its files' bytes, so that a
reinstalled or copied model (same bytes, new path or mtime) reuses its banks
and a changed one never does. Hashing MiniLM's 91 MB of weights takes about
0.1 s, on every env that opens a bank; :func:`file_digest` therefore remembers
each digest in ``<bank dir>/.digests/``, one small text file per file version,
named by a hash of the file's path, inode, size, mtime and ctime. Any rewrite
of the file changes its ctime (which no user call can set back), so a stale
digest is never read; a later lookup costs one ``stat`` and one small read.
The memo is only written where the bank folder already exists, and a memo that
cannot be written or read is skipped: the digest is then just computed.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
from pathlib import Path

from attn_env.errors import UserError
from attn_env.fileio import atomic_write_text, read_user_bytes

__all__ = [
    "bank_root",
    "default_bank_dir",
    "file_digest",
    "shipped_bank",
    "shipped_bank_dir",
]

_HEX64 = re.compile(r"[0-9a-f]{64}")
_CHUNK = 1 << 20


def default_bank_dir() -> Path:
    """The parent folder of cached banks.

    Returns:
        ``$ATTN_MARKET_CACHE`` if set, else ``~/.cache/attn-market/banks``.
    """
    env = os.environ.get("ATTN_MARKET_CACHE")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "attn-market" / "banks"


def bank_root(bank_dir: str | Path | None) -> Path:
    """The parent folder of banks: ``bank_dir``, or :func:`default_bank_dir`.

    A path that exists but is no folder is refused in one line, even when a
    shipped bank would make the folder unneeded: a mistyped ``bank_dir`` is
    said, not ignored. A missing folder is fine (a build makes it).
    """
    root = Path(bank_dir).expanduser() if bank_dir is not None else default_bank_dir()
    if root.exists() and not root.is_dir():
        raise UserError(f"bank folder {str(root)!r} is not a folder; give a folder")
    return root


def shipped_bank_dir() -> Path:
    """The folder of banks shipped prebuilt in the package (``prebuilt/``).

    Which banks ship and how they are rebuilt: :mod:`attn_env.valuations.
    shipped_banks`.
    """
    return Path(__file__).resolve().parent / "prebuilt"


def shipped_bank(key: str) -> Path | None:
    """The shipped bank folder of ``key`` when the package holds one, else ``None``."""
    folder = shipped_bank_dir() / key
    return folder if (folder / "manifest.json").is_file() else None


def file_digest(path: str | Path, cache_dir: str | Path | None = None) -> str:
    """SHA-256 of a file's bytes (hex), remembered per file version.

    Args:
        path: a regular file.
        cache_dir: the folder whose ``.digests/`` holds the memo (default
            :func:`default_bank_dir`); nothing is remembered when it does not
            exist.

    Returns:
        64 hex digits.
    """
    path = Path(path).resolve()
    st = path.stat()
    version = f"{path}\0{st.st_ino}\0{st.st_size}\0{st.st_mtime_ns}\0{st.st_ctime_ns}"
    root = Path(cache_dir) if cache_dir is not None else default_bank_dir()
    memo = root / ".digests" / hashlib.sha256(version.encode()).hexdigest()[:32]
    with contextlib.suppress(OSError, UnicodeDecodeError, UserError):
        # a regular file of a few bytes only: a fifo or device there is skipped
        known = read_user_bytes(memo, "digest memo", 128).decode().strip()
        if _HEX64.fullmatch(known):
            return known
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    digest = h.hexdigest()
    if root.is_dir():
        with contextlib.suppress(OSError, ValueError):
            memo.parent.mkdir(exist_ok=True)
            atomic_write_text(memo, digest + "\n")
    return digest

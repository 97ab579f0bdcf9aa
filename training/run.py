"""The run folder of ``attn-market train``, as one sandboxed object: :class:`RunFolder`.

Layout of a run folder ``DIR`` (both backends)::

    DIR/.lock                       the writer's lock (pid, host, start time)
    DIR/config.yaml                 the resolved experiment config
    DIR/manifest.json               the current checkpoint and its contents
    DIR/checkpoints/<steps>-<i>/    one folder per checkpoint: <learner>.safetensors
    DIR/checkpoints/.staging-*      a checkpoint being written (renamed when complete)
    DIR/pool/<learner>/<steps>.safetensors  self-play snapshots
    DIR/tb/<learner>/               TensorBoard logs (``tb/rllib`` for RLlib)

**A run touches only its own folder.** Every path a run reads, writes or
deletes is checked *before* the operation (:meth:`RunFolder.path`): a relative
path without ``..``, every component that exists a real folder or file, never a
symlink (``lstat``), so a ``checkpoints/`` or ``pool/<learner>`` link, a symlink
loop or a manifest path leading out ends in one line
(:class:`~attn_env.errors.UnsafePathError`) and nothing is written or deleted.
Pruning deletes only what this run's naming scheme made (``<steps>-<i>``
checkpoint folders, its own ``.staging-<token>-*`` folders, pool files the pool
recorded), each verified to be a real folder or file first.

**One writer at a time.** A fresh run takes an empty or missing folder only; a
resumed one a folder with a manifest. Either holds ``fcntl.flock`` on
``DIR/.lock`` while it writes: a second writer fails at once naming the holder's
pid. The kernel drops the lock when its holder dies, so a killed run's lock is
simply taken over (and its leftover staging folders cleaned).

**Manifests are untrusted input.** :func:`read_manifest` reads them with
:func:`attn_env.fileio.read_user_json` (regular file, size and nesting caps, no
NaN) and :func:`check_run_manifest` checks the type and range of every field a
loader or ``--resume`` uses, parsing it into the typed
:class:`~training.manifest.RunManifest` (:meth:`RunFolder.load_manifest`);
:meth:`RunFolder.save` writes one.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import secrets
import shutil
import socket
import stat
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path, PurePosixPath
from typing import Any

from attn_env.errors import UnsafePathError, UserError
from attn_env.fileio import atomic_write_text, fsync_dir, read_user_json, umask_mode
from training.manifest import (
    FORMAT,
    MAX_STEPS,
    WEIGHTS,
    RunManifest,
    is_learner_name,
    is_pool_file,
    parse_manifest,
)

__all__ = [
    "CHECKPOINTS",
    "CONFIG",
    "FORMAT",
    "LOCK",
    "MANIFEST",
    "MAX_STEPS",
    "WEIGHTS",
    "RunFolder",
    "RunManifest",
    "check_run_manifest",
    "inside_run",
    "is_checkpoint_name",
    "is_pool_file",
    "read_manifest",
    "write_checkpoint",
]

MANIFEST = "manifest.json"
CONFIG = "config.yaml"
LOCK = ".lock"
CHECKPOINTS = "checkpoints"
POOL = "pool"
TB = "tb"
OLD_FORMATS = ("attn-market-run/1",)
KEEP_CHECKPOINTS = 2
MAX_MANIFEST_BYTES = 16 * 2**20
_CHECKPOINT = re.compile(r"([0-9]{12,16})-([0-9]{1,4})")


def is_checkpoint_name(name: str) -> bool:
    """Whether ``name`` is a checkpoint folder name of the scheme ``<steps>-<i>``."""
    return _CHECKPOINT.fullmatch(name) is not None


# -- paths inside a run folder --------------------------------------------------------


def _root(run_dir: str | Path) -> Path:
    """``run_dir`` resolved once (the user's own path may hold symlinks)."""
    try:
        return Path(run_dir).resolve()
    except (OSError, RuntimeError) as err:  # a symlink loop on the way
        raise UnsafePathError(
            f"{run_dir}: cannot open the run folder ({err})"
        ) from None


def _parts(where: Path, rel: Any, what: str, folder: str) -> tuple[str, ...]:
    """The parts of ``rel``, a relative POSIX path without ``..``; else one line."""
    if not isinstance(rel, str) or not rel or "\\" in rel or "\0" in rel:
        raise UnsafePathError(f"{where}: {what} {rel!r} is not a relative path")
    pure = PurePosixPath(rel)
    if pure.is_absolute() or ".." in pure.parts or os.path.isabs(rel):
        raise UnsafePathError(
            f"{where}: {what} {rel!r} lies outside the {folder}; refusing it"
        )
    return pure.parts


def checked_path(
    run_dir: str | Path,
    rel: Any,
    what: str,
    where: str | Path | None = None,
    folder: str = "run folder",
) -> Path:
    """``run_dir / rel`` once no component of it is a symlink or a non-folder.

    Components that exist are checked with ``lstat``: each folder on the way a
    real folder, none a symlink (wherever it points: a link is how a path leads
    out). Missing components are fine (the caller creates or reports them).
    Messages start with ``where`` (default: the run's manifest, which names the
    path) and call ``run_dir`` the ``folder``.

    Raises:
        UnsafePathError: one line naming ``rel`` and the component at fault.
    """
    run_dir = Path(run_dir)
    where = run_dir / MANIFEST if where is None else Path(where)
    root = _root(run_dir)
    parts = _parts(where, rel, what, folder)
    cur = root
    for i, part in enumerate(parts):
        cur = cur / part
        try:
            mode = os.lstat(cur).st_mode
        except FileNotFoundError:
            return root.joinpath(*parts)
        except OSError as err:
            raise UnsafePathError(
                f"{run_dir / rel}: cannot check the {what} ({err.strerror})"
            ) from None
        shown = "/".join(parts[: i + 1])
        if stat.S_ISLNK(mode):
            raise UnsafePathError(
                f"{where}: {what} {rel!r}: {shown!r} is a symlink, "
                f"which could lead outside the {folder}; refusing it"
            )
        if i < len(parts) - 1 and not stat.S_ISDIR(mode):
            raise UnsafePathError(f"{where}: {what} {rel!r}: {shown!r} is not a folder")
    return cur


def inside_run(run_dir: str | Path, rel: Any, what: str) -> Path:
    """``run_dir / rel``, refused (one line) unless it stays inside the run folder.

    The path as given (not resolved), after :func:`checked_path`.
    """
    checked_path(run_dir, rel, what)
    return Path(run_dir) / PurePosixPath(rel)


# -- the manifest ---------------------------------------------------------------------


def read_manifest(run_dir: str | Path) -> dict[str, Any]:
    """The manifest of a run folder, checked for format and a checkpoint of this run.

    Raises:
        FileNotFoundError: no ``manifest.json`` (the message names the folder).
        UserError: one line naming the manifest: not JSON, not an object, an
            old or unknown format, or a ``checkpoint`` that is not a
            ``checkpoints/<steps>-<i>`` folder of the run.
    """
    path = checked_path(run_dir, MANIFEST, "manifest")
    shown = Path(run_dir) / MANIFEST
    if not os.path.lexists(path):
        raise FileNotFoundError(
            f"{str(run_dir)!r} holds no trained run (no {MANIFEST}); "
            "train one with `attn-market train CONFIG --out DIR`"
        )
    try:
        manifest = read_user_json(path, "run manifest", MAX_MANIFEST_BYTES)
    except UserError as err:
        raise UserError(str(err).replace(str(path), str(shown), 1)) from None
    if not isinstance(manifest, dict):
        raise UserError(
            f"{shown}: a run manifest must be a JSON object, "
            f"got {type(manifest).__name__}"
        )
    fmt = manifest.get("format")
    if fmt in OLD_FORMATS:
        raise UserError(
            f"{shown}: run format {fmt!r} stores pickled SB3 models, which can run "
            "code when loaded and are never read; retrain it with "
            "`attn-market train CONFIG --out NEW_DIR`"
        )
    if fmt != FORMAT:
        raise UserError(f"{shown}: unknown run format {fmt!r}, expected {FORMAT!r}")
    if "checkpoint" not in manifest:
        raise UserError(f"{shown}: manifest lacks key(s) 'checkpoint'")
    _check_checkpoint(run_dir, manifest["checkpoint"])
    return manifest


def _check_checkpoint(run_dir: str | Path, rel: Any) -> None:
    """The manifest's checkpoint is ``checkpoints/<steps>-<i>``, a real folder."""
    parts = _parts(Path(run_dir) / MANIFEST, rel, "checkpoint", "run folder")
    if len(parts) != 2 or parts[0] != CHECKPOINTS or not is_checkpoint_name(parts[1]):
        raise UnsafePathError(
            f"{Path(run_dir) / MANIFEST}: checkpoint {rel!r} is not a "
            f"{CHECKPOINTS}/<steps>-<i> folder of this run; refusing it"
        )
    checked_path(run_dir, rel, "checkpoint")


def check_run_manifest(run_dir: str | Path, manifest: dict[str, Any]) -> RunManifest:
    """The typed manifest, or ``UserError`` (one line, naming the manifest) unless a
    loader can use it (:func:`training.manifest.parse_manifest`)."""
    return parse_manifest(run_dir, manifest)


# -- the run folder -------------------------------------------------------------------


class RunFolder:
    """A run folder that one process writes: layout, lock, checkpoints, pruning.

    Build it with :meth:`fresh` (a new run) or :meth:`resume` (continue one);
    both take the lock. Every method checks the paths it touches first
    (:func:`checked_path`). Use it as a context manager or call :meth:`close`.

    Args:
        path: the run folder (as the user named it; messages show this).
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.root = _root(self.path)
        self.token = secrets.token_hex(6)
        "Names this writer's staging folders (``.staging-<token>-*``)."
        self._stale: list[str] = []
        "Tokens of dead former holders of the lock (their staging is ours to drop)."
        self._fd: int | None = None

    # -- opening ----------------------------------------------------------------------

    @classmethod
    def fresh(cls, path: str | Path) -> RunFolder:
        """A new run in ``path``: missing or empty (a lock file of a dead run aside).

        Raises:
            UserError: ``path`` holds a run (pass ``--resume``), holds anything
                else, is not a folder, or another writer holds it.
        """
        run = cls(path)
        run._refuse_unless_empty()
        run.root.mkdir(parents=True, exist_ok=True)
        run.lock()
        try:
            run._refuse_unless_empty()  # nothing appeared before we held the lock
        except BaseException:
            run.close()
            raise
        return run

    @classmethod
    def resume(cls, path: str | Path) -> tuple[RunFolder, RunManifest]:
        """The run in ``path`` (locked) and its checked, typed manifest."""
        run = cls(path)
        run._check_is_folder(must_exist=True)
        run.lock()
        try:
            manifest = run.load_manifest()
        except BaseException:
            run.close()
            raise
        return run, manifest

    def _check_is_folder(self, must_exist: bool) -> bool:
        try:
            mode = os.lstat(self.root).st_mode
        except FileNotFoundError:
            if must_exist:
                raise FileNotFoundError(
                    f"{str(self.path)!r} holds no trained run (no {MANIFEST}: "
                    "no such folder); "
                    "train one with `attn-market train CONFIG --out DIR`"
                ) from None
            return False
        except OSError as err:  # a file on the way, no permission
            raise UserError(
                f"{self.path}: cannot use it as a run folder ({err.strerror})"
            ) from None
        if not stat.S_ISDIR(mode):
            raise UserError(f"{self.path}: the run folder is not a folder")
        return True

    def _refuse_unless_empty(self) -> None:
        if not self._check_is_folder(must_exist=False):
            return
        names = sorted(set(os.listdir(self.root)) - {LOCK})
        if MANIFEST in names:
            raise UserError(
                f"{str(self.path)!r} already holds a trained run; pass --resume to "
                "continue it or choose another --out folder"
            )
        if names:
            shown = ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
            raise UserError(
                f"{str(self.path)!r} is not empty ({shown}) and holds no run of "
                "attn-market; a new run needs a new or empty --out folder"
            )

    # -- the lock ---------------------------------------------------------------------

    def lock(self) -> None:
        """Hold ``flock`` on ``DIR/.lock`` (no-op if held); one line if another does."""
        if self._fd is not None:
            return
        checked_path(self.path, LOCK, "lock file")
        flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
        try:
            fd = os.open(self.root / LOCK, flags, umask_mode(0o666))
        except OSError as err:
            raise UnsafePathError(
                f"{self.path / LOCK}: cannot open the run's lock file ({err.strerror})"
            ) from None
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise UnsafePathError(f"{self.path / LOCK}: not a regular file")
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise UserError(
                    f"{str(self.path)!r} is in use by another training run "
                    f"({_holder(fd)}); wait for it to end or choose another --out"
                ) from None
            old = _lock_info(fd).get("token")
            if isinstance(old, str) and re.fullmatch(r"[0-9a-f]{12}", old):
                self._stale.append(old)  # its holder died: the lock is ours now
            info = {
                "pid": os.getpid(),
                "host": socket.gethostname(),
                "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "token": self.token,
            }
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps(info).encode(), 0)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd

    def close(self) -> None:
        """Release the lock (the lock file stays: removing it would race)."""
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)  # closing the last descriptor drops the flock

    def __enter__(self) -> RunFolder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.close()

    # -- paths ------------------------------------------------------------------------

    def path_of(self, rel: str, what: str) -> Path:
        """``DIR/rel`` checked (:func:`checked_path`); may be missing."""
        return checked_path(self.path, rel, what)

    def folder(self, rel: str, what: str) -> Path:
        """``DIR/rel`` as a real folder, created component by component if missing."""
        parts = _parts(self.path / MANIFEST, rel, what, "run folder")
        for i in range(1, len(parts) + 1):
            sub = "/".join(parts[:i])
            target = checked_path(self.path, sub, what)
            with contextlib.suppress(FileExistsError):
                target.mkdir()
            if not stat.S_ISDIR(os.lstat(target).st_mode):
                raise UnsafePathError(
                    f"{self.path / MANIFEST}: {what} {sub!r} is not a folder"
                )
        return checked_path(self.path, rel, what)

    def learner_folder(self, kind: str, learner: str) -> Path:
        """``DIR/pool/<learner>`` or ``DIR/tb/<learner>``, a real folder."""
        if not is_learner_name(learner):
            raise UserError(f"learner name {learner!r} cannot name a folder")
        return self.folder(f"{kind}/{learner}", f"{kind} folder")

    def pool_folder(self, learner: str) -> Path:
        """Where ``learner``'s self-play snapshots live (a checked real folder)."""
        return self.learner_folder(POOL, learner)

    def tb_folder(self, name: str) -> Path:
        """A TensorBoard log folder ``DIR/tb/<name>`` (a checked real folder)."""
        return self.learner_folder(TB, name)

    def checkpoint_file(self, manifest: RunManifest, name: str, what: str) -> Path:
        """The file ``name`` of the manifest's checkpoint, checked."""
        return self.path_of(f"{manifest.checkpoint}/{name}", what)

    def pool_file(self, learner: str, name: str) -> Path | None:
        """A recorded snapshot of ``learner``: its path if a regular file, else None."""
        path = self.path_of(f"{POOL}/{learner}/{name}", "pool file")
        try:
            return path if stat.S_ISREG(os.lstat(path).st_mode) else None
        except FileNotFoundError:
            return None

    # -- reading and writing ----------------------------------------------------------

    def read_manifest(self) -> dict[str, Any]:
        """The checked manifest (:func:`read_manifest`, :func:`check_run_manifest`)."""
        manifest = read_manifest(self.path)
        check_run_manifest(self.path, manifest)
        return manifest

    def load_manifest(self) -> RunManifest:
        """The checked manifest, typed (:func:`training.manifest.parse_manifest`)."""
        return parse_manifest(self.path, read_manifest(self.path))

    def save(
        self, manifest: RunManifest, files: dict[str, Callable[[Path], Any]]
    ) -> dict[str, Any]:
        """Write a checkpoint of ``files`` described by ``manifest``; the checked
        manifest as written (a dict, as :func:`training.load_policy` reads it)."""
        self.write_checkpoint(manifest.timesteps, files, manifest.to_dict())
        return self.read_manifest()

    def write_text(self, rel: str, text: str, what: str) -> Path:
        """Write ``DIR/rel`` atomically (e.g. ``config.yaml``), holding the lock."""
        self.lock()
        return atomic_write_text(self.path_of(rel, what), text)

    def write_checkpoint(
        self,
        timesteps: int,
        files: dict[str, Callable[[Path], Any]],
        manifest: dict[str, Any],
    ) -> Path:
        """Write one complete checkpoint, point ``manifest.json`` at it, prune.

        Args:
            timesteps: agent-steps trained so far (names the folder).
            files: file name -> ``save(path)`` writing that file.
            manifest: everything else to record; ``format`` and ``checkpoint``
                are filled in here.

        Returns:
            The new checkpoint folder.
        """
        self.lock()
        root = self.folder(CHECKPOINTS, "checkpoints folder")
        final = self._stage(root, timesteps, files)
        data = {
            **manifest,
            "format": FORMAT,
            "checkpoint": f"{CHECKPOINTS}/{final.name}",
        }
        self.write_text(
            MANIFEST, json.dumps(data, indent=2, sort_keys=True), "manifest"
        )
        self.prune_checkpoints(keep=final.name)
        return final

    def _stage(
        self, root: Path, timesteps: int, files: dict[str, Callable[[Path], Any]]
    ) -> Path:
        """Write ``files`` into a staging folder and rename it to a new checkpoint."""
        staging = Path(tempfile.mkdtemp(dir=root, prefix=f".staging-{self.token}-"))
        try:
            for name, save in files.items():
                target = staging / name
                save(target)
                with open(target, "rb+") as fh:
                    os.fsync(fh.fileno())
            os.chmod(staging, umask_mode(0o777))  # mkdtemp makes 0700
            index = 0
            while os.path.lexists(final := root / f"{timesteps:012d}-{index}"):
                index += 1
            self.path_of(f"{CHECKPOINTS}/{final.name}", "checkpoint")
            os.rename(staging, final)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        fsync_dir(root)
        return final

    # -- pruning ----------------------------------------------------------------------

    def prune_checkpoints(self, keep: str) -> None:
        """Drop all but the newest checkpoint folders of the scheme (never ``keep``)
        and this writer's (or a dead writer's) staging folders; nothing else."""
        root = self.path_of(CHECKPOINTS, "checkpoints folder")
        done = sorted(
            (_order(name), name)
            for name in _real_folders(root)
            if is_checkpoint_name(name)
        )
        for _, name in done[:-KEEP_CHECKPOINTS]:
            if name != keep:
                self._remove_folder(f"{CHECKPOINTS}/{name}")
        mine = tuple(f".staging-{t}-" for t in (self.token, *self._stale))
        for name in _real_folders(root):
            if name.startswith(mine):
                self._remove_folder(f"{CHECKPOINTS}/{name}")

    def prune_pool(self, learner: str, recorded: set[str], keep: set[str]) -> None:
        """Delete ``learner``'s snapshots that the pool recorded and no longer keeps.

        Only names of the snapshot scheme, only regular files (``lstat``).
        """
        folder = self.path_of(f"{POOL}/{learner}", "pool folder")
        if not os.path.lexists(folder):
            return
        for name in sorted(recorded - keep):
            if is_pool_file(name) and self.pool_file(learner, name) is not None:
                (folder / name).unlink()

    def _remove_folder(self, rel: str) -> None:
        """``rmtree`` of ``DIR/rel`` after checking it is a real folder of the run."""
        self.lock()
        path = self.path_of(rel, "folder to prune")
        if stat.S_ISDIR(os.lstat(path).st_mode):
            shutil.rmtree(path)  # fd-based: never follows a link inside


def _real_folders(root: Path) -> list[str]:
    """Names of the real folders (not symlinks) directly in ``root``."""
    if not os.path.lexists(root):
        return []
    with os.scandir(root) as entries:
        return [e.name for e in entries if e.is_dir(follow_symlinks=False)]


def _order(name: str) -> tuple[int, int]:
    match = _CHECKPOINT.fullmatch(name)
    assert match is not None
    return int(match[1]), int(match[2])


def _lock_info(fd: int) -> dict[str, Any]:
    """What the lock file says of its holder (``{}`` if unreadable)."""
    try:
        info = json.loads(os.pread(fd, 4096, 0).decode())
    except (OSError, ValueError, RecursionError):
        return {}
    return info if isinstance(info, dict) else {}


def _holder(fd: int) -> str:
    """``pid N on HOST since T`` from the lock file, for the refusal message."""
    info = _lock_info(fd)
    pid = info.get("pid")
    if isinstance(pid, bool) or not isinstance(pid, int):
        return "holder unknown"
    host, since = info.get("host"), info.get("started")
    text = f"pid {pid}"
    if isinstance(host, str):
        text += f" on {host[:64]}"
    if isinstance(since, str):
        text += f" since {since[:32]}"
    return text


@contextlib.contextmanager
def _attached(run_dir: str | Path) -> Iterator[RunFolder]:
    run = RunFolder(run_dir)
    run.root.mkdir(parents=True, exist_ok=True)
    try:
        run.lock()
        yield run
    finally:
        run.close()


def write_checkpoint(
    run_dir: str | Path,
    timesteps: int,
    files: dict[str, Callable[[Path], Any]],
    manifest: dict[str, Any],
) -> Path:
    """:meth:`RunFolder.write_checkpoint` on ``run_dir``, locked for the call."""
    with _attached(run_dir) as run:
        return run.write_checkpoint(timesteps, files, manifest)

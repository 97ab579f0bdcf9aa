"""The run folder that ``attn-market train`` writes, and atomic writes into it.

Layout of a run folder ``DIR``::

    DIR/config.yaml               the resolved experiment config
    DIR/manifest.json             the current checkpoint and its contents (written last)
    DIR/checkpoints/<steps>/      one folder per checkpoint: <learner>.safetensors
    DIR/pool/<learner>/<steps>.safetensors  self-play snapshots (frozen past policies)
    DIR/tb/                       TensorBoard logs

**No code in a run folder.** Weights (and, for ``--resume``, optimizer state)
are safetensors files: raw tensors plus a JSON index, read without pickle.
Everything needed to rebuild a model (algorithm, network shape, activation,
observation and action spaces, SB3 hyperparameters, step counts, action maps)
is plain JSON in ``manifest.json``. Only the files the manifest names are
opened; every named path must stay inside the run folder. Runs of the first
format (SB3 ``.zip`` models, which unpickle on load) are refused, never read.

Crash safety: a checkpoint is written into a fresh temporary folder, renamed
into place, and only then does ``manifest.json`` (replaced atomically with
``os.replace``) point at it. A crash at any moment leaves the manifest naming
the last complete checkpoint; older checkpoint folders are pruned only after the
new manifest is in place.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from attn_env.fileio import atomic_write_text, fsync_dir, umask_mode
from attn_env.observation import ROLES

MANIFEST = "manifest.json"
CONFIG = "config.yaml"
FORMAT = "attn-market-run/2"
OLD_FORMATS = ("attn-market-run/1",)
WEIGHTS = ".safetensors"
"Suffix of every weights file (checkpoint models and self-play snapshots)."
KEEP_CHECKPOINTS = 2
LEARNER_KEYS = (
    "role",
    "seats",
    "algo",
    "action",
    "timesteps",
    "model",
    "policy",
    "sb3",
)
"What each ``learners`` entry of a manifest must hold."
RUN_KEYS = ("algo", "timesteps", "learners", "pool")
"What a manifest must hold besides ``format`` and ``checkpoint``."
_TREE = "attn-market/tree"
"safetensors metadata key of the JSON index that rebuilds nested state dicts."

__all__ = [
    "CONFIG",
    "FORMAT",
    "MANIFEST",
    "WEIGHTS",
    "check_run_manifest",
    "inside_run",
    "load_tensors",
    "read_manifest",
    "save_tensors",
    "write_checkpoint",
]


def read_manifest(run_dir: str | Path) -> dict[str, Any]:
    """The manifest of a run folder, checked for format and a contained checkpoint.

    Raises:
        FileNotFoundError: no ``manifest.json`` (the message names the folder).
        ValueError: one line naming the manifest: not JSON, not an object, an
            old or unknown format, or a ``checkpoint`` outside the run folder.
    """
    path = Path(run_dir) / MANIFEST
    if not path.is_file():
        raise FileNotFoundError(
            f"{str(run_dir)!r} holds no trained run (no {MANIFEST}); "
            "train one with `attn-market train CONFIG --out DIR`"
        )
    try:
        manifest = json.loads(path.read_text())
    except (UnicodeDecodeError, ValueError, RecursionError) as err:
        raise ValueError(
            f"{path}: not a JSON run manifest ({_one_line(err)})"
        ) from None
    if not isinstance(manifest, dict):
        raise ValueError(
            f"{path}: a run manifest must be a JSON object, "
            f"got {type(manifest).__name__}"
        )
    fmt = manifest.get("format")
    if fmt in OLD_FORMATS:
        raise ValueError(
            f"{path}: run format {fmt!r} stores pickled SB3 models, which can run "
            "code when loaded and are never read; retrain it with "
            "`attn-market train CONFIG --out NEW_DIR`"
        )
    if fmt != FORMAT:
        raise ValueError(f"{path}: unknown run format {fmt!r}, expected {FORMAT!r}")
    if "checkpoint" not in manifest:
        raise ValueError(f"{path}: manifest lacks key(s) 'checkpoint'")
    inside_run(run_dir, manifest["checkpoint"], "checkpoint")
    return manifest


def check_run_manifest(run_dir: str | Path, manifest: dict[str, Any]) -> None:
    """``ValueError`` (one line, naming the manifest) unless a loader can use it.

    Checks the keys and types :func:`training.load_policy` and ``--resume``
    read, and that every file it names is a plain ``.safetensors`` name.
    """
    path = Path(run_dir) / MANIFEST
    _need(path, "manifest", manifest, RUN_KEYS)
    learners, pool = manifest["learners"], manifest["pool"]
    if not isinstance(learners, dict) or not learners:
        raise ValueError(f"{path}: 'learners' must be a non-empty object")
    if not isinstance(pool, dict):
        raise ValueError(f"{path}: 'pool' must be an object")
    for name, entry in learners.items():
        what = f"learner {name!r}"
        if not isinstance(entry, dict):
            raise ValueError(f"{path}: {what} must be an object")
        _need(path, what, entry, LEARNER_KEYS)
        _need(path, f"{what} action", entry["action"], ("mode", "role", "low", "high"))
        _need(path, f"{what} policy", entry["policy"], ("class", "kwargs"))
        seats = entry["seats"]
        if not (
            isinstance(seats, list) and seats and all(isinstance(a, str) for a in seats)
        ):
            raise ValueError(f"{path}: {what} 'seats' must be a list of agent names")
        for where, role in (
            ("role", entry["role"]),
            ("action role", entry["action"]["role"]),
        ):
            if role not in ROLES:
                raise ValueError(
                    f"{path}: {what} {where} must be one of {', '.join(ROLES)}, "
                    f"got {role!r}"
                )
        for key in ("timesteps", "n_updates", "episode_num"):
            if not isinstance(entry.get(key, 0), int) or entry.get(key, 0) < 0:
                raise ValueError(f"{path}: {what} {key!r} must be an integer >= 0")
        if not isinstance(entry["sb3"], dict):
            raise ValueError(f"{path}: {what} 'sb3' must be an object")
        _file_name(path, entry["model"], f"{what} model")
    for name, files in pool.items():
        if not isinstance(files, list):
            raise ValueError(f"{path}: pool {name!r} must be a list of file names")
        for f in files:
            _file_name(path, f, f"pool {name!r} file")


def _need(path: Path, what: str, obj: Any, keys: tuple[str, ...]) -> None:
    if not isinstance(obj, dict):
        raise ValueError(f"{path}: {what} must be an object, got {type(obj).__name__}")
    missing = [k for k in keys if k not in obj]
    if missing:
        raise ValueError(f"{path}: {what} lacks key(s) {', '.join(map(repr, missing))}")


def _file_name(manifest: Path, name: Any, what: str) -> None:
    """A bare ``*.safetensors`` file name (no folder part, nothing hidden)."""
    if (
        not isinstance(name, str)
        or not name.endswith(WEIGHTS)
        or name != PurePosixPath(name).name
        or "\\" in name
        or name.startswith(".")
    ):
        raise ValueError(
            f"{manifest}: {what} {name!r} is not a plain {WEIGHTS} file name; "
            "refusing it"
        )


def inside_run(run_dir: str | Path, rel: Any, what: str) -> Path:
    """``run_dir / rel``, refused (one line) unless it stays inside the run folder.

    ``rel`` must be a relative POSIX path without ``..``; symlinks are resolved,
    so a link that leads out of the run folder is refused too.
    """
    run_dir = Path(run_dir)
    where = run_dir / MANIFEST
    if not isinstance(rel, str) or not rel or "\\" in rel or "\0" in rel:
        raise ValueError(f"{where}: {what} {rel!r} is not a relative path")
    pure = PurePosixPath(rel)
    if pure.is_absolute() or ".." in pure.parts or os.path.isabs(rel):
        raise ValueError(
            f"{where}: {what} {rel!r} lies outside the run folder; refusing it"
        )
    target = run_dir / pure
    if not target.resolve().is_relative_to(run_dir.resolve()):
        raise ValueError(
            f"{where}: {what} {rel!r} leads outside the run folder; refusing it"
        )
    return target


def _one_line(err: BaseException, limit: int = 200) -> str:
    text = " ".join(str(err).split()) or type(err).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


# -- tensors without pickle -----------------------------------------------------------


def save_tensors(path: str | Path, tree: Any) -> None:
    """Write nested dicts/lists of tensors and plain values as one safetensors file.

    Tensors go in as tensors (copied to the CPU), numpy arrays as tensors too
    (they come back as tensors), numpy scalars as plain numbers; the nesting
    and the plain values (optimizer hyperparameters, step counts) as a JSON
    index in the file's metadata. :func:`load_tensors` rebuilds ``tree``.
    """
    from safetensors.torch import save_file

    tensors: dict[str, Any] = {}
    index = _encode(tree, "", tensors)
    save_file(tensors, str(path), metadata={_TREE: json.dumps(index)})


def load_tensors(path: str | Path, part: str | None = None, device: str = "cpu") -> Any:
    """What :func:`save_tensors` wrote (only the top-level entry ``part`` if given).

    Never unpickles: safetensors holds raw tensor bytes and the index is JSON.

    Raises:
        FileNotFoundError: ``path`` is missing (the message names it).
        ValueError: ``path`` is not such a file (one line naming it).
    """
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: weights file named by the manifest is missing"
        )
    try:
        with safe_open(str(path), framework="pt", device=device) as fh:
            index = json.loads((fh.metadata() or {})[_TREE])
            if part is not None:
                index = dict(_pairs(index))[part]
            return _decode(index, fh, set(fh.keys()))
    except Exception as err:  # anything wrong with the file: one line naming it
        raise ValueError(
            f"{path}: not a readable attn-market weights file ({_one_line(err)})"
        ) from None


def _encode(obj: Any, key: str, out: dict[str, Any]) -> Any:
    import torch

    if isinstance(obj, np.ndarray):
        obj = torch.from_numpy(np.array(obj))  # a writable copy
    elif isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, torch.Tensor):
        if key in out:
            raise ValueError(f"two tensors would share the name {key!r}")
        out[key] = obj.detach().to("cpu").contiguous().clone()
        return {"$t": key}
    if isinstance(obj, dict):
        for k in obj:
            if isinstance(k, bool) or not isinstance(k, str | int):
                raise TypeError(f"cannot store a dict key {k!r} at {key!r}")
        return {"$d": [[k, _encode(v, f"{key}/{k}", out)] for k, v in obj.items()]}
    if isinstance(obj, list | tuple):
        items = [_encode(v, f"{key}/{i}", out) for i, v in enumerate(obj)]
        return {"$l" if isinstance(obj, list) else "$tu": items}
    if obj is None or isinstance(obj, bool | int | float | str):
        return obj
    raise TypeError(f"cannot store a {type(obj).__name__} at {key!r}")


def _pairs(node: Any) -> list[tuple[Any, Any]]:
    if not (isinstance(node, dict) and set(node) == {"$d"}):
        raise ValueError("malformed index: expected a dict node")
    pairs = node["$d"]
    if not isinstance(pairs, list) or not all(
        isinstance(p, list) and len(p) == 2 and isinstance(p[0], str | int)
        for p in pairs
    ):
        raise ValueError("malformed index: bad dict entries")
    return [(k, v) for k, v in pairs]


def _decode(node: Any, fh: Any, names: set[str]) -> Any:
    if node is None or isinstance(node, bool | int | float | str):
        return node
    if not isinstance(node, dict) or len(node) != 1:
        raise ValueError("malformed index node")
    ((tag, value),) = node.items()
    if tag == "$t":
        if value not in names:
            raise ValueError(f"index names a missing tensor {value!r}")
        return fh.get_tensor(value)
    if tag == "$d":
        return {k: _decode(v, fh, names) for k, v in _pairs(node)}
    if tag in ("$l", "$tu") and isinstance(value, list):
        items = [_decode(v, fh, names) for v in value]
        return items if tag == "$l" else tuple(items)
    raise ValueError(f"malformed index tag {tag!r}")


def write_checkpoint(
    run_dir: str | Path,
    timesteps: int,
    files: dict[str, Callable[[Path], Any]],
    manifest: dict[str, Any],
) -> Path:
    """Write one complete checkpoint and point ``manifest.json`` at it.

    Args:
        run_dir: the run folder.
        timesteps: agent-steps trained so far (names the folder).
        files: file name -> ``save(path)`` writing that file (one
            ``<learner>.safetensors`` per learner).
        manifest: everything else to record; ``format`` and ``checkpoint`` are
            filled in here.

    Returns:
        The new checkpoint folder.
    """
    run_dir = Path(run_dir)
    root = run_dir / "checkpoints"
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=root, prefix=".staging-"))
    try:
        for name, save in files.items():
            target = staging / name
            save(target)
            with open(target, "rb+") as fh:
                os.fsync(fh.fileno())
        os.chmod(staging, umask_mode(0o777))  # mkdtemp makes 0700
        index = 0
        while (final := root / f"{timesteps:012d}-{index}").exists():
            index += 1
        os.replace(staging, final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    fsync_dir(root)
    data = {
        **manifest,
        "format": FORMAT,
        "checkpoint": final.relative_to(run_dir).as_posix(),
    }
    atomic_write_text(run_dir / MANIFEST, json.dumps(data, indent=2, sort_keys=True))
    _prune(root, keep=final)
    return final


def _prune(root: Path, keep: Path) -> None:
    """Drop all but the newest checkpoints (never ``keep``) and stale staging dirs."""
    done = sorted(
        p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")
    )
    for old in done[:-KEEP_CHECKPOINTS]:
        if old != keep:
            shutil.rmtree(old, ignore_errors=True)
    for stale in root.glob(".staging-*"):
        if stale.is_dir():
            shutil.rmtree(stale, ignore_errors=True)

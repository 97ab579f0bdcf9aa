"""The run folder that ``attn-market train`` writes, and atomic writes into it.

Layout of a run folder ``DIR``::

    DIR/config.yaml               the resolved experiment config
    DIR/manifest.json             the current checkpoint and its contents (written last)
    DIR/checkpoints/<steps>/      one folder per checkpoint: <learner>.zip per model
    DIR/pool/<learner>/<steps>.pt self-play snapshots (frozen past policies)
    DIR/tb/                       TensorBoard logs

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
from pathlib import Path
from typing import Any

from attn_env.fileio import atomic_write_text, fsync_dir, umask_mode

MANIFEST = "manifest.json"
CONFIG = "config.yaml"
FORMAT = "attn-market-run/1"
KEEP_CHECKPOINTS = 2

__all__ = [
    "CONFIG",
    "FORMAT",
    "MANIFEST",
    "read_manifest",
    "write_checkpoint",
]


def read_manifest(run_dir: str | Path) -> dict[str, Any]:
    """The manifest of a run folder; ``FileNotFoundError`` naming the folder if none."""
    path = Path(run_dir) / MANIFEST
    if not path.is_file():
        raise FileNotFoundError(
            f"{str(run_dir)!r} holds no trained run (no {MANIFEST}); "
            "train one with `attn-market train CONFIG --out DIR`"
        )
    manifest = json.loads(path.read_text())
    if manifest.get("format") != FORMAT:
        raise ValueError(
            f"{path}: unknown run format {manifest.get('format')!r}, "
            f"expected {FORMAT!r}"
        )
    return manifest


def write_checkpoint(
    run_dir: str | Path,
    timesteps: int,
    models: dict[str, Callable[[Path], Any]],
    manifest: dict[str, Any],
) -> Path:
    """Write one complete checkpoint and point ``manifest.json`` at it.

    Args:
        run_dir: the run folder.
        timesteps: agent-steps trained so far (names the folder).
        models: learner name -> ``save(path)`` writing that learner's ``.zip``.
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
        for name, save in models.items():
            target = staging / f"{name}.zip"
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

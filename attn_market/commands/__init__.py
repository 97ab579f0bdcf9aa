"""Command groups of ``attn-market``; each module's ``register(subparsers)`` adds its
parsers and sets ``func`` (``argparse.Namespace -> exit code``)."""

from __future__ import annotations

import argparse
from pathlib import Path

__all__ = ["check_output_file", "config_from_args"]


def check_output_file(path: str | Path, option: str, make_folder: bool = False) -> None:
    """``ValueError`` naming ``option`` and ``path`` unless a file can be written there.

    Checked before a command does its work, not after: the path must not be a
    folder, and its folder must exist (or, with ``make_folder``, be creatable:
    nothing on the way is a file).
    """
    p = Path(path)
    if p.is_dir():
        raise ValueError(f"{option} {str(path)!r} is a folder; give a file name")
    parent = p.resolve().parent
    if parent.is_dir():
        return
    if not make_folder:
        raise ValueError(
            f"{option} {str(path)!r}: folder {str(parent)!r} does not exist"
        )
    for above in (parent, *parent.parents):
        if above.exists():
            if not above.is_dir():
                raise ValueError(
                    f"{option} {str(path)!r}: {str(above)!r} is not a folder"
                )
            return


def config_from_args(args: argparse.Namespace):
    """The ``ExperimentConfig`` of ``args.config``, with ``--seed`` applied if given."""
    import dataclasses

    from attn_env.config import load_config, validate_experiment

    config = load_config(args.config)
    if getattr(args, "seed", None) is not None:
        config = dataclasses.replace(config, seed=args.seed)
        validate_experiment(config)
    return config

"""Command groups of ``attn-market``; each module's ``register(subparsers)`` adds its
parsers and sets ``func`` (``argparse.Namespace -> exit code``)."""

from __future__ import annotations

import argparse
from pathlib import Path

from attn_env.errors import UserError

__all__ = ["check_output_file", "config_from_args"]


def check_output_file(path: str | Path, option: str, make_folder: bool = False) -> None:
    """``UserError`` naming ``option`` and ``path`` unless a file can be written there.

    Checked before a command does its work, not after: the path must not be a
    folder, and its folder must exist (or, with ``make_folder``, be creatable:
    nothing on the way is a file).
    """
    p = Path(path)
    if p.is_dir():
        raise UserError(f"{option} {str(path)!r} is a folder; give a file name")
    parent = p.resolve().parent
    if parent.is_dir():
        return
    if not make_folder:
        raise UserError(
            f"{option} {str(path)!r}: folder {str(parent)!r} does not exist"
        )
    for above in (parent, *parent.parents):
        if above.exists():
            if not above.is_dir():
                raise UserError(
                    f"{option} {str(path)!r}: {str(above)!r} is not a folder"
                )
            return


def config_from_args(args: argparse.Namespace):
    """The ``ExperimentConfig`` of ``args.config``, with ``--seed`` applied if given.

    ``--episodes`` and ``--num-envs``, where the command has them, are held to
    the caps of the config keys they override (one line naming the option).
    """
    import dataclasses

    from attn_env.checks import check_int
    from attn_env.config import MAX_EPISODES, load_config, validate_experiment

    config = load_config(args.config)
    if getattr(args, "seed", None) is not None:
        config = dataclasses.replace(config, seed=args.seed)
        validate_experiment(config)
    if getattr(args, "episodes", None) is not None:
        check_int(args.episodes, "--episodes", 1, MAX_EPISODES)
    if getattr(args, "num_envs", None) is not None:
        check_int(args.num_envs, "num_envs (--num-envs)", 1, MAX_NUM_ENVS)
    return config


MAX_NUM_ENVS = 16_384
"Most markets ``--num-envs`` may step at once (as ``train.num_envs``)."

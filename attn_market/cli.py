"""The ``attn-market`` command line.

Each command group registers itself here:

- ``simulate``                       -> ``attn_market.commands.simulate``
- ``valuations build|show|validate`` -> ``attn_market.commands.valuations``
- ``train``, ``evaluate``            -> ``attn_market.commands.training``
- ``solve``                          -> ``attn_market.commands.solve``
- ``explain``, ``audit``             -> ``attn_market.commands.integrity``
- ``compare``                        -> ``attn_market.commands.compare``

Each ``register(subparsers)`` adds its parsers and sets ``func`` (a callable
taking the parsed ``argparse.Namespace`` and returning an exit code). Modules
are imported only to build the parser; heavy imports (torch, transformers,
stable-baselines3) happen inside the command functions.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import warnings
from pathlib import Path

from attn_env.checks import ConfigError

_COMMAND_MODULES = (
    "attn_market.commands.simulate",
    "attn_market.commands.valuations",
    "attn_market.commands.training",
    "attn_market.commands.compare",
    "attn_market.commands.integrity",
    "attn_market.commands.solve",
)


class _Parser(argparse.ArgumentParser):
    """argparse with usage errors on one line (``--help`` still shows usage)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {' '.join(message.split())}\n")


def build_parser() -> argparse.ArgumentParser:
    """The parser with every command group registered (subparsers share its class)."""
    parser = _Parser(
        prog="attn-market",
        description="Markets for attention: simulate, train and evaluate bidders.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in _COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


_PACKAGES = frozenset({"attn_env", "agents", "training", "runner", "attn_market"})
"This project's packages: their ``UserWarning``s print as one line."


def _one_line_warning(command: str):
    """``warnings.showwarning`` for the library's own warnings: one line each.

    Warnings of other packages keep their usual form (file and line help there).
    """
    default = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None):
        ours = _PACKAGES.intersection(Path(str(filename)).parts)
        if category is UserWarning and ours:
            text = " ".join(str(message).split())
            print(f"attn-market {command}: warning: {text}", file=sys.stderr)
            return
        default(message, category, filename, lineno, file, line)

    return show


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``attn-market`` console script.

    A user error (bad config, option, value or path) prints one line,
    ``attn-market COMMAND: error: ...``, on stderr and returns 2.
    """
    import yaml

    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _one_line_warning(args.command)
            return int(args.func(args) or 0)
    except (ConfigError, ValueError, OSError, yaml.YAMLError) as err:
        # user errors: a bad config, option, value or path (ValueError covers
        # json.JSONDecodeError and UnicodeDecodeError, OSError the missing,
        # unreadable, folder-for-file and file-for-folder paths); anything
        # else is a bug and keeps its traceback
        message = " ".join(str(err).split()) or type(err).__name__
        print(f"attn-market {args.command}: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

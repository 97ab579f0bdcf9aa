"""The ``attn-market`` command line.

Each command group registers itself here:

- ``simulate``                       -> ``attn_market.commands.simulate``
- ``valuations build|show|validate`` -> ``attn_market.commands.valuations``
- ``train``, ``evaluate``            -> ``attn_market.commands.training``
- ``solve``                          -> ``attn_market.commands.solve``
- ``exploit``                        -> ``attn_market.commands.exploit``
- ``explain``, ``audit``             -> ``attn_market.commands.integrity``
- ``compare``                        -> ``attn_market.commands.compare``
- ``list``                           -> ``attn_market.commands.listing``
- ``sweep``                          -> ``attn_market.commands.sweep``

Each ``register(subparsers)`` adds its parsers and sets ``func`` (a callable
taking the parsed ``argparse.Namespace`` and returning an exit code). Modules
are imported only to build the parser; heavy imports (torch, transformers,
stable-baselines3) happen inside the command functions.

Every command also takes ``--plugin MODULE`` (repeatable: modules that register
mechanisms, valuation sources or agent kinds, imported before the command runs)
and ``--debug`` (the full traceback of any error, user errors included).
Installed plug-ins (entry points of the group ``attn_market.plugins``) are
loaded at start; see ``attn_env.plugins``.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import traceback
import warnings
from collections.abc import Iterator
from pathlib import Path

from attn_env.errors import UserError
from attn_env.plugins import import_plugins, load_entry_points

_COMMAND_MODULES = (
    "attn_market.commands.simulate",
    "attn_market.commands.valuations",
    "attn_market.commands.training",
    "attn_market.commands.compare",
    "attn_market.commands.integrity",
    "attn_market.commands.solve",
    "attn_market.commands.exploit",
    "attn_market.commands.listing",
    "attn_market.commands.sweep",
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
    for leaf in _leaf_parsers(parser):
        _add_common_options(leaf)
    return parser


def _leaf_parsers(parser: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
    """The parsers that run a command (``simulate``, ``valuations build``, ...)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in dict.fromkeys(action.choices.values()):  # aliases once
                yield from _leaf_parsers(sub)
            return
    yield parser


def _add_common_options(parser: argparse.ArgumentParser) -> None:
    """``--plugin MODULE`` (repeatable) and ``--debug``, on every command."""
    if "--plugin" in parser._option_string_actions:
        return
    group = parser.add_argument_group("plug-ins and debugging")
    group.add_argument(
        "--plugin",
        action="append",
        default=[],
        metavar="MODULE",
        help="import MODULE before the command runs (a plug-in that registers "
        "mechanisms, valuation sources or agent kinds; it runs as your code); "
        "repeatable",
    )
    group.add_argument(
        "--debug",
        action="store_true",
        help="print the full traceback of any error, user errors included",
    )


def load_plugins(args: argparse.Namespace) -> None:
    """Installed plug-ins (entry points), then ``--plugin`` modules, in order."""
    load_entry_points()
    import_plugins(getattr(args, "plugin", []), "--plugin")


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

    Whose fault an error is decides how it prints. A user error
    (:class:`~attn_env.errors.UserError`: a bad config, option, value, file or
    path; a plug-in that fails to import; a YAML syntax error; the operating
    system refusing a path the user named) prints one line,
    ``attn-market COMMAND: error: ...``, on stderr and returns 2 (``--debug``
    prints the traceback first). Anything else is a bug of ours: it prints
    "internal error" with the full traceback and returns 1.
    """
    import yaml

    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _one_line_warning(args.command)
            load_plugins(args)
            return int(args.func(args) or 0)
    except (UserError, OSError, yaml.YAMLError) as err:
        if getattr(args, "debug", False):
            traceback.print_exception(err, file=sys.stderr)
        message = " ".join(str(err).split()) or type(err).__name__
        print(f"attn-market {args.command}: error: {message}", file=sys.stderr)
        return 2
    except Exception as err:  # a bug of ours: keep the traceback
        traceback.print_exception(err, file=sys.stderr)
        print(
            f"attn-market {args.command}: internal error ({type(err).__name__}); "
            "this is a bug in attn-market, not in your input: please report it "
            "with the traceback above",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":
    sys.exit(main())

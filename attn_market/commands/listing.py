"""``attn-market list``: every mechanism, valuation source and agent kind by name,
with where it comes from (built in, or the plug-in module and its distribution).

What plug-ins register shows up here once they are loaded: installed ones
(entry points) always, others with ``--plugin MODULE``.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

__all__ = ["catalogue", "register"]

_SPECIAL_KINDS = {
    "learn": "built-in (a learning seat: attn-market train)",
    "policy": "built-in (a trained run folder: params.path)",
}
"Agent kinds the runner resolves itself rather than the agents registry."


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``list [--json]``."""
    p = subparsers.add_parser(
        "list",
        help="list every mechanism, valuation source and agent kind",
        description="Every mechanism, valuation source and agent kind a config can "
        "name, and where each comes from: built-in, or the plug-in module (and its "
        "distribution) that registered it. Add --plugin MODULE to see a module's.",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=_run)


def catalogue() -> dict[str, list[dict[str, str]]]:
    """``{mechanisms, valuation_sources, agent_kinds}``: rows of name and origin
    (mechanisms also their family), in registry order."""
    import agents
    from attn_env import mechanisms, valuations
    from attn_env.plugins import origin_of

    mechs = []
    for name in mechanisms.names():
        cls = mechanisms.mechanism_class(name)
        mechs.append({"name": name, "family": cls.family, "origin": origin_of(cls)})
    sources = [
        {
            "name": name,
            "origin": "built-in"
            if name in valuations.SOURCES
            else origin_of(valuations.source_class(name)),
        }
        for name in valuations.source_names()
    ]
    kinds = [
        {"name": kind, "origin": origin_of(agents._cls(kind))}
        for kind in agents.names()
    ]
    kinds += [{"name": k, "origin": v} for k, v in _SPECIAL_KINDS.items()]
    return {"mechanisms": mechs, "valuation_sources": sources, "agent_kinds": kinds}


def _run(args: argparse.Namespace) -> int:
    table = catalogue()
    if args.json:
        print(json.dumps(table))
        return 0
    for title, rows in (
        ("mechanisms", table["mechanisms"]),
        ("valuation sources", table["valuation_sources"]),
        ("agent kinds", table["agent_kinds"]),
    ):
        print(title)
        _print_rows(rows)
    return 0


def _print_rows(rows: list[dict[str, Any]]) -> None:
    """Aligned columns, never cut: the origin is last and may run long."""
    keys = [k for k in rows[0] if k != "origin"] + ["origin"] if rows else []
    widths = {k: max(len(str(r[k])) for r in rows) for k in keys}
    for r in rows:
        cells = [str(r[k]).ljust(widths[k]) for k in keys[:-1]] + [str(r["origin"])]
        print("  " + "  ".join(cells))

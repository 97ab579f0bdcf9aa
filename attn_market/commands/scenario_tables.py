"""Rich tables of scenario results: flat figures with their standard errors, and
one row per group (bidder kind, design) where the result has groups."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from rich.console import Console
from rich.table import Table

__all__ = ["print_scenario"]


def _cell(value: Any, se: Any = None) -> str:
    if isinstance(value, bool) or value is None:
        return "—" if value is None else str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            return "—"
        text = f"{value:.4g}"
        if isinstance(se, float) and math.isfinite(se):
            text += f" ± {se:.2g}"
        return text
    if isinstance(value, Mapping) and "mean" in value:
        return _cell(value["mean"], value.get("se"))
    return str(value)


def _flat_rows(result: Mapping[str, Any]) -> list[tuple[str, str]]:
    rows = []
    for key, value in result.items():
        if key.endswith("_se") or isinstance(value, list):
            continue
        if isinstance(value, Mapping) and "mean" not in value:
            if all(isinstance(v, Mapping) for v in value.values()):
                continue  # a group table, printed on its own
            for sub, v in value.items():
                if not sub.endswith("_se"):
                    rows.append((f"{key}.{sub}", _cell(v, value.get(f"{sub}_se"))))
            continue
        rows.append((key, _cell(value, result.get(f"{key}_se"))))
    return rows


def print_scenario(result: Mapping[str, Any], console: Console | None = None) -> None:
    """Print a scenario result: its flat figures, then each table of groups."""
    console = console or Console()
    table = Table("measure", "value", title=f"scenario {result.get('scenario', '')}")
    for key, cell in _flat_rows(result):
        table.add_row(key, cell)
    console.print(table)
    for key, value in result.items():
        if (
            isinstance(value, Mapping)
            and value
            and all(isinstance(v, Mapping) for v in value.values())
        ):
            _group_table(console, key, value)
        if (
            isinstance(value, list)
            and value
            and all(isinstance(v, Mapping) for v in value)
        ):
            _group_table(
                console, key, {str(v.get("label", i)): v for i, v in enumerate(value)}
            )


def _group_table(console: Console, title: str, groups: Mapping[str, Mapping]) -> None:
    cols: list[str] = []
    for g in groups.values():
        for k, v in g.items():
            if k.endswith("_se") or k in cols or k == "label":
                continue
            if isinstance(v, int | float | type(None)) or (
                isinstance(v, Mapping) and "mean" in v
            ):
                cols.append(k)
    table = Table(title, *cols, title=title)
    for name, g in groups.items():
        table.add_row(name, *[_cell(g.get(c), g.get(f"{c}_se")) for c in cols])
    console.print(table)

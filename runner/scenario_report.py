"""Scenario results as tables: flat figures with their standard errors, and one
row per group (bidder kind, design, mechanism) where the result has groups.

The terminal (``attn_market.commands.scenario_tables``) and the markdown of a
scenario audit (:func:`write_scenario_audit`) both draw these tables.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from attn_env.fileio import atomic_write_text
from runner.results import jsonable

__all__ = ["Table", "cell", "scenario_tables", "write_scenario_audit"]

Table = tuple[str, list[str], list[list[str]]]
"(title, column names, rows of cells)."


def cell(value: Any, se: Any = None) -> str:
    """A figure as text, with ``± se`` where a standard error is known."""
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
        return cell(value["mean"], value.get("se"))
    return str(value)


def _is_groups(value: Any) -> bool:
    return (
        isinstance(value, Mapping)
        and bool(value)
        and all(isinstance(v, Mapping) for v in value.values())
    )


def _flat_rows(result: Mapping[str, Any]) -> list[list[str]]:
    rows = []
    for key, value in result.items():
        if key.endswith("_se") or isinstance(value, list):
            continue
        if isinstance(value, Mapping) and "mean" not in value:
            if all(isinstance(v, Mapping) for v in value.values()):
                continue  # a group table, drawn on its own
            for sub, v in value.items():
                if not sub.endswith("_se"):
                    rows.append([f"{key}.{sub}", cell(v, value.get(f"{sub}_se"))])
            continue
        rows.append([key, cell(value, result.get(f"{key}_se"))])
    return rows


def _group_table(title: str, groups: Mapping[str, Mapping]) -> Table:
    cols: list[str] = []
    for g in groups.values():
        for k, v in g.items():
            if k.endswith("_se") or k in cols or k == "label":
                continue
            if isinstance(v, int | float | type(None)) or (
                isinstance(v, Mapping) and "mean" in v
            ):
                cols.append(k)
    rows = [
        [name, *[cell(g.get(c), g.get(f"{c}_se")) for c in cols]]
        for name, g in groups.items()
    ]
    return title, [title, *cols], rows


def scenario_tables(result: Mapping[str, Any]) -> list[Table]:
    """The flat figures of ``result``, then a table per group of it."""
    tables: list[Table] = [
        (
            f"scenario {result.get('scenario', '')}",
            ["measure", "value"],
            _flat_rows(result),
        )
    ]
    for key, value in result.items():
        if _is_groups(value):
            tables.append(_group_table(key, value))
        if (
            isinstance(value, list)
            and value
            and all(isinstance(v, Mapping) for v in value)
        ):
            groups = {str(v.get("label", i)): v for i, v in enumerate(value)}
            tables.append(_group_table(key, groups))
    return tables


def _markdown(result: Mapping[str, Any]) -> str:
    lines = [f"# Audit of scenario {result.get('scenario', '')}", ""]
    for title, cols, rows in scenario_tables(result):
        lines += [
            f"## {title}",
            "",
            "| " + " | ".join(cols) + " |",
            "|" + "---|" * len(cols),
        ]
        lines += ["| " + " | ".join(r) + " |" for r in rows]
        lines.append("")
    return "\n".join(lines)


def write_scenario_audit(report: Mapping[str, Any], out: str | Path) -> list[Path]:
    """Write ``audit.json`` and ``audit.md`` into folder ``out`` (each atomically)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    data = jsonable(report)
    return [
        atomic_write_text(
            out / "audit.json", json.dumps(data, indent=2, allow_nan=False) + "\n"
        ),
        atomic_write_text(out / "audit.md", _markdown(data)),
    ]

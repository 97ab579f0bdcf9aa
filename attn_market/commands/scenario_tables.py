"""Rich tables of scenario results (:func:`runner.scenario_report.scenario_tables`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rich.console import Console
from rich.table import Table

from runner.scenario_report import scenario_tables

__all__ = ["print_scenario"]


def print_scenario(result: Mapping[str, Any], console: Console | None = None) -> None:
    """Print a scenario result: its flat figures, then each table of groups."""
    console = console or Console()
    for title, cols, rows in scenario_tables(result):
        table = Table(*cols, title=title)
        for row in rows:
            table.add_row(*row)
        console.print(table)

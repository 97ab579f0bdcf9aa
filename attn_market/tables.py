"""Tables that fit the terminal and never cut a name or a number.

rich fits a table wider than the console by cutting its cells ("second…",
"effici…"): a cut figure is a lost one. :func:`print_grid` lays a table out so
that every cell shows in full instead: it takes the orientation (as given, or
transposed) that needs fewer tables, then splits the value columns over as
many tables as the width needs, each repeating the label column. Only columns
marked ``wrap`` (lists) break their cells, and only between items. A grid too wide
for that prints one two-column table (head | cell) per row, and failing that
``head: cell`` lines wrapped between words.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from rich.cells import cell_len
from rich.console import Console
from rich.table import Table
from rich.text import Text

__all__ = [
    "Grid",
    "column_groups",
    "orient",
    "print_grid",
    "record_tables",
    "table_width",
    "tables",
]


@dataclass(frozen=True)
class Grid:
    """A table as text: a label column (``corner`` over ``labels``) and value
    columns (``heads``), ``cells[row][column]``.

    Attributes:
        wrap: value columns whose cells are lists (items joined by ``", "``,
            such as price setters) that may break between items, one item a
            line; every other cell stays on one line.
        left: value columns justified left (text); the others right (numbers).
    """

    corner: str
    labels: Sequence[str]
    heads: Sequence[str]
    cells: Sequence[Sequence[str]]
    wrap: frozenset[int] = field(default_factory=frozenset)
    left: frozenset[int] = field(default_factory=frozenset)

    def __post_init__(self) -> None:
        if len(self.cells) != len(self.labels) or any(
            len(row) != len(self.heads) for row in self.cells
        ):
            raise ValueError(
                f"grid {self.corner!r}: need {len(self.labels)} rows of "
                f"{len(self.heads)} cells, got {[len(r) for r in self.cells]}"
            )

    def transposed(self, corner: str) -> Grid:
        """The same cells with rows and columns swapped, ``corner`` over the old
        heads (every cell then stays on one line, justified right)."""
        cells = [[row[j] for row in self.cells] for j in range(len(self.heads))]
        return Grid(corner, self.heads, self.labels, cells)

    def need(self, j: int, broken: bool = True) -> int:
        """Width value column ``j`` needs: its widest cell or header, or, where it
        may wrap (and ``broken``), its widest item."""
        cells = _need((row[j] for row in self.cells), broken and j in self.wrap)
        return max(cell_len(self.heads[j]), cells)

    def label_need(self) -> int:
        """Width the label column needs."""
        return _need([self.corner, *self.labels], False)


_ITEMS = ", "
"What separates the items of a cell in a ``wrap`` column."


def _broken(text: str) -> str:
    """A list cell one item a line."""
    return text.replace(_ITEMS, ",\n")


def _need(texts: Iterable[str], wrap: bool) -> int:
    if wrap:  # one item a line, each but the last with its comma
        lines = (w for t in texts for w in _broken(t).split("\n"))
        return max((cell_len(w) for w in lines), default=0)
    return max((cell_len(t) for t in texts), default=0)


def table_width(needs: Sequence[int]) -> int:
    """Width rich gives a boxed table whose columns need ``needs``: one space of
    padding each side of a cell and one character per border."""
    return sum(needs) + 3 * len(needs) + 1


def column_groups(grid: Grid, width: int) -> list[list[int]] | None:
    """The value columns in runs that fit ``width`` beside the label column.

    Returns:
        Consecutive column indices per table (one empty run for a grid with no
        value column), or ``None`` when one column alone does not fit.
    """
    label = grid.label_need()
    groups: list[list[int]] = []
    run: list[int] = []
    for j in range(len(grid.heads)):
        trial = [label, *(grid.need(i) for i in run), grid.need(j)]
        if table_width(trial) <= width:
            run.append(j)
            continue
        if not run or table_width([label, grid.need(j)]) > width:
            return None
        groups.append(run)
        run = [j]
    if run or not groups:
        groups.append(run)
    if table_width([label]) > width:
        return None
    return groups


def orient(grid: Grid, width: int, corner: str) -> Grid:
    """``grid`` or its transpose (``corner`` over the old heads), whichever lays
    out better at ``width``: tables before one table per row (see
    :func:`print_grid`), fewer tables first; on a tie the one with fewer
    columns (the longer list runs down the page), then ``grid`` as given."""
    flipped = grid.transposed(corner)

    def cost(g: Grid) -> tuple[int, int, int]:
        groups = column_groups(g, width)
        if groups is not None:
            return (0, len(groups), len(g.heads))
        return (1 if record_tables(g, width) is not None else 2, 0, len(g.heads))

    return min((grid, flipped), key=cost)


def tables(grid: Grid, width: int) -> list[Table] | None:
    """rich tables showing every cell of ``grid`` in full within ``width``
    (``None`` when even one value column does not fit beside the labels)."""
    groups = column_groups(grid, width)
    if groups is None:
        return None
    out = []
    label = grid.label_need()
    for run in groups:
        whole = [label, *(grid.need(j, broken=False) for j in run)]
        broken = table_width(whole) > width  # lists one item a line
        table = Table()
        table.add_column(Text(grid.corner), no_wrap=True, justify="left")
        for j in run:
            table.add_column(
                Text(grid.heads[j]),
                no_wrap=True,
                justify="left" if j in grid.left else "right",
            )
        for name, row in zip(grid.labels, grid.cells, strict=True):
            cells = [
                _broken(row[j]) if broken and j in grid.wrap else row[j] for j in run
            ]
            table.add_row(Text(name), *map(Text, cells))
        out.append(table)
    return out


def record_tables(grid: Grid, width: int) -> list[tuple[str, Table]] | None:
    """Each row of ``grid`` as a two-column table (head | cell) under a line
    naming it: the narrowest layout that keeps cells whole (``None`` when even
    that is wider than ``width``)."""
    heads = _need(grid.heads, False)
    out = []
    for label, row in zip(grid.labels, grid.cells, strict=True):
        cells = max((_need([c], j in grid.wrap) for j, c in enumerate(row)), default=0)
        if table_width([heads, cells]) > width:
            return None
        broken = table_width([heads, _need(row, False)]) > width
        table = Table(show_header=False)
        table.add_column(no_wrap=True, justify="left")
        table.add_column(no_wrap=True, justify="right")
        for j, (head, cell) in enumerate(zip(grid.heads, row, strict=True)):
            if broken and j in grid.wrap:
                cell = _broken(cell)
            table.add_row(Text(head), Text(cell))
        out.append((f"{grid.corner}: {label}", table))
    return out


def print_grid(
    console: Console,
    grid: Grid,
    title: str = "",
    transpose: str | None = None,
    note: str = "",
) -> None:
    """Print ``grid`` to fit ``console``'s width, every cell in full.

    The layout, first that fits: the grid's tables (transposed where that
    needs fewer, see :func:`orient`); one two-column table per row
    (:func:`record_tables`); ``head: cell`` lines, wrapped between words.

    Args:
        console: where to print (its ``width`` decides the layout).
        grid: the table.
        title: a line printed above the table (wrapped between words).
        transpose: the corner header of the transposed grid; given, the grid
            may be printed transposed where that needs fewer tables.
        note: a line printed under the table.
    """
    width = console.width
    if transpose is not None:
        grid = orient(grid, width, transpose)
    if title:
        console.print(Text(title))
    parts = tables(grid, width)
    records = None if parts is not None else record_tables(grid, width)
    if parts is not None:
        for table in parts:
            console.print(table)
    elif records is not None:
        for name, table in records:
            console.print(Text(name))
            console.print(table)
    else:
        for label, row in zip(grid.labels, grid.cells, strict=True):
            console.print(Text(f"{grid.corner}: {label}", style="bold"))
            for head, cell in zip(grid.heads, row, strict=True):
                console.print(Text(f"{head}: {cell}"))
    if note:
        console.print(Text(note))

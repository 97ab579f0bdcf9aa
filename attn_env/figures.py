"""One plotting style for every figure the project writes.

Figures are drawn with matplotlib's object API on an Agg canvas (no pyplot
global state, no display needed) with a constrained layout, and saved as PNG
through :func:`attn_env.fileio.atomic_save`, so a crash never leaves half an
image. matplotlib is imported only when a figure is made.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from attn_env.fileio import atomic_save

__all__ = ["new_figure", "save_png"]


def new_figure(
    nrows: int = 1, ncols: int = 1, figsize: tuple[float, float] = (6.4, 4.8), **kw: Any
) -> tuple[Any, Any]:
    """A figure and its axes (``squeeze`` as ``Figure.subplots``; ``kw`` goes there).

    Returns:
        ``(fig, axes)``: a single ``Axes`` for one panel, else an array of them.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, layout="constrained")
    FigureCanvasAgg(fig)
    return fig, fig.subplots(nrows, ncols, **kw)


def save_png(fig: Any, path: str | Path, dpi: int = 120) -> Path:
    """Write ``fig`` to ``path`` as a PNG, atomically.

    Raises:
        FileNotFoundError: the folder of ``path`` does not exist.
    """
    path = Path(path)
    if not path.parent.is_dir():
        raise FileNotFoundError(f"plot folder {str(path.parent)!r} does not exist")
    return atomic_save(path, lambda tmp: fig.savefig(tmp, format="png", dpi=dpi))

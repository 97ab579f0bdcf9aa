"""Figures of a simulation: price path against the Walrasian band, efficiency.

Drawn with matplotlib's object API on an Agg canvas (no pyplot global state, no
display needed) and written atomically.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

__all__ = ["plot_market"]


def _floats(xs: list[Any]) -> np.ndarray:
    return np.array([np.nan if x is None else x for x in xs], dtype=np.float64)


def plot_market(result: Mapping[str, Any], path: str | Path) -> Path:
    """Write a PNG of ``result["series"]`` (from ``simulate.play``) to ``path``.

    Top panel: mean clearing price per round (or per bin of episodes) with the
    mean Walrasian interval as a band. Bottom panel: allocative efficiency.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    path = Path(path)
    if not path.parent.is_dir():
        raise FileNotFoundError(f"plot folder {str(path.parent)!r} does not exist")
    s = result["series"]
    x = np.asarray(s["x"], dtype=np.float64)
    fig = Figure(figsize=(7.0, 6.0), layout="constrained")
    FigureCanvasAgg(fig)
    top, bottom = fig.subplots(2, 1, sharex=True)
    low, high = _floats(s["walrasian_low"]), _floats(s["walrasian_high"])
    marker = "o" if x.size <= 30 else None
    top.fill_between(
        x,
        low,
        high,
        color="tab:blue",
        alpha=0.2,
        step=None,
        label="Walrasian interval (mean)",
    )
    top.plot(
        x,
        _floats(s["price"]),
        color="tab:red",
        marker=marker,
        label="clearing price (mean where traded)",
    )
    top.set_ylabel("price per unit")
    top.legend(loc="best", fontsize="small")
    top.set_title(
        f"{result.get('mechanism', '')}: {result.get('episodes', '?')} episodes, "
        f"efficiency {_pct(result.get('efficiency'))}"
    )
    eff_label = s.get("efficiency_label", "efficiency")
    bottom.plot(
        x, _floats(s["efficiency"]), color="tab:green", marker=marker, label=eff_label
    )
    if "traded_share" in s:
        # how many markets the mean price above is taken over
        bottom.plot(
            x,
            _floats(s["traded_share"]),
            color="grey",
            linestyle=":",
            label="share of markets with a trade",
        )
    bottom.axhline(1.0, color="grey", linestyle="--", linewidth=0.8)
    bottom.set_ylabel(eff_label)
    bottom.legend(loc="best", fontsize="small")
    bottom.set_xlabel(s["x_label"])
    eff = _floats(s["efficiency"])
    lo = float(np.nanmin(eff)) if np.isfinite(eff).any() else 0.0
    bottom.set_ylim(min(0.0, lo - 0.05), 1.05)

    _write_atomic(path, lambda fh: fig.savefig(fh, format="png", dpi=120))
    return path


def _write_atomic(path: Path, write: Callable[[BinaryIO], None]) -> None:
    """Write through a unique temp file in ``path``'s folder, then ``os.replace``.

    The temp file is opened with mode ``0o666`` minus the umask (``mkstemp``
    would leave the result readable by its owner only).
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _pct(x: Any) -> str:
    return "n/a" if x is None or not np.isfinite(x) else f"{100 * x:.1f}%"

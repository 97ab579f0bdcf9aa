"""Figures of a simulation: price path against the Walrasian band, efficiency.

Drawn and saved in the project's one style (``attn_env.figures``).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from attn_env.figures import new_figure, save_png

__all__ = ["plot_market"]


def _floats(xs: list[Any]) -> np.ndarray:
    return np.array([np.nan if x is None else x for x in xs], dtype=np.float64)


def plot_market(result: Mapping[str, Any], path: str | Path) -> Path:
    """Write a PNG of ``result["series"]`` (from ``simulate.play``) to ``path``.

    Top panel: mean clearing price per round (or per bin of episodes) with the
    mean Walrasian interval as a band. Bottom panel: allocative efficiency.
    """
    s = result["series"]
    x = np.asarray(s["x"], dtype=np.float64)
    fig, (top, bottom) = new_figure(2, 1, figsize=(7.0, 6.0), sharex=True)
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

    return save_png(fig, path, dpi=120)


def _pct(x: Any) -> str:
    return "n/a" if x is None or not np.isfinite(x) else f"{100 * x:.1f}%"

"""Exposure fairness of an attention market: who gets the attention, against merit.

Pure numpy on market records. ``M`` market rounds (flattened over episodes and
rounds), ``n`` buyers (advertisers); ``alloc [M, n]`` is the attention each won
(``alpha`` of its slot), ``merit [M, n]`` what it deserves by some standard
(relevance ``r`` of its ad to the query, or its value per unit ``theta * r``),
``utility [M, n]`` its surplus, and ``group [M, n]`` an integer label per ad
(its vertical, or its seat), ``-1`` for none.

Singh & Joachims (2018, "Fairness of Exposure in Rankings") compare groups of
items by their mean **exposure** ``E(G)`` (here: attention won), mean **merit**
``U(G)`` and mean **impact** ``C(G)`` (exposure times relevance: the
engagement an ad gets). Three ratios, each of two groups' figures (smaller over
larger, so 1 is parity and 0 the worst; with more than two groups, the least
over the greatest):

======================  ==========================  ============================
measure                 compares                    1 means
======================  ==========================  ============================
``demographic_parity``  ``E(G)``                    equal attention per ad
``disparate_treatment`` ``E(G) / U(G)``             attention proportional to merit
``disparate_impact``    ``C(G) / U(G)``             engagement proportional to merit
======================  ==========================  ============================

Beside them: the Gini coefficient of attention and of surplus (over groups'
ads, or over bidders' totals) and ``exposure_merit_gap``, the mean over market
rounds of the total-variation distance between the buyers' shares of the
round's attention and their shares of its merit (0: each round's attention
is split exactly as merit is).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from attn_env.errors import UserError
from attn_env.metrics import gini

__all__ = [
    "DISPARITIES",
    "disparity",
    "exposure_merit_gap",
    "fairness_report",
    "group_means",
]

_EPS = 1e-12
DISPARITIES = ("demographic_parity", "disparate_treatment", "disparate_impact")
"The Singh–Joachims ratios (1: fair, 0: the worst)."


def _records(x: ArrayLike, name: str, shape: tuple[int, ...] | None = None) -> Any:
    a = np.asarray(x, dtype=np.float64)
    if a.ndim != 2:
        raise UserError(
            f"{name} must be [M, n] (market rounds x buyers), got {a.shape}"
        )
    if shape is not None and a.shape != shape:
        raise UserError(f"{name} must have shape {shape}, got {a.shape}")
    if not np.all(np.isfinite(a)):
        raise UserError(f"{name} must be finite")
    return a


def group_means(
    alloc: ArrayLike, merit: ArrayLike, group: ArrayLike, n_groups: int
) -> dict[str, NDArray[np.float64]]:
    """Per-group means over the ads of each group, ``[n_groups]`` each.

    Args:
        alloc: ``[M, n]`` attention won.
        merit: ``[M, n]`` merit (>= 0).
        group: ``[M, n]`` int label in ``0..n_groups-1`` (``-1``: in no group).
        n_groups: number of groups.

    Returns:
        ``count`` (ads), ``exposure`` ``E(G)``, ``merit`` ``U(G)``, ``impact``
        ``C(G)`` (mean of ``alloc * merit``), ``nan`` for an empty group.
    """
    a = _records(alloc, "alloc")
    u = _records(merit, "merit", a.shape)
    g = np.asarray(group)
    if g.shape != a.shape or not np.issubdtype(g.dtype, np.integer):
        raise UserError(f"group must be integer labels of shape {a.shape}")
    if g.size and (g.min() < -1 or g.max() >= n_groups):
        raise UserError(f"group labels must be in [-1, {n_groups - 1}]")
    keep = g >= 0
    idx = g[keep]

    def total(x: NDArray) -> NDArray:
        return np.bincount(idx, weights=x[keep], minlength=n_groups)

    count = np.bincount(idx, minlength=n_groups).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return {
            "count": count,
            "exposure": total(a) / count,
            "merit": total(u) / count,
            "impact": total(a * u) / count,
        }


def _ratio(x: NDArray) -> float:
    """Least over greatest of the finite entries (1: all equal; nan: fewer than 2)."""
    x = x[np.isfinite(x)]
    if x.size < 2:
        return float("nan")
    hi = x.max()
    return float(x.min() / hi) if hi > _EPS else 1.0


def disparity(means: dict[str, NDArray[np.float64]]) -> dict[str, float]:
    """The Singh–Joachims ratios of :func:`group_means`' output.

    Groups with no ads are left out; ``disparate_treatment`` and
    ``disparate_impact`` leave out groups of zero merit too (their ratio has
    no meaning). Two groups ``G0, G1`` give ``min(x0, x1) / max(x0, x1)`` of the
    compared figures, so the ratio is symmetric in the groups.
    """
    e, u, c = means["exposure"], means["merit"], means["impact"]
    with np.errstate(invalid="ignore", divide="ignore"):
        merit_ok = np.where(u > _EPS, u, np.nan)
        ratios = (_ratio(e), _ratio(e / merit_ok), _ratio(c / merit_ok))
    return dict(zip(DISPARITIES, ratios, strict=True))


def exposure_merit_gap(alloc: ArrayLike, merit: ArrayLike) -> float:
    """Mean over market rounds of ``TV(attention shares, merit shares)`` in [0, 1].

    Rounds where nothing was allocated or no buyer has merit are left out
    (``nan`` when none is left).
    """
    a = _records(alloc, "alloc")
    u = _records(merit, "merit", a.shape)
    sa, su = a.sum(axis=1, keepdims=True), u.sum(axis=1, keepdims=True)
    ok = (sa[:, 0] > _EPS) & (su[:, 0] > _EPS)
    if not ok.any():
        return float("nan")
    tv = 0.5 * np.abs(a[ok] / sa[ok] - u[ok] / su[ok]).sum(axis=1)
    return float(tv.mean())


def _share(x: NDArray) -> NDArray:
    total = x.sum()
    return x / total if total > _EPS else np.zeros_like(x)


def fairness_report(
    alloc: ArrayLike,
    merit: ArrayLike,
    utility: ArrayLike,
    names: Sequence[str],
    group: ArrayLike | None = None,
    group_names: Sequence[str] = (),
) -> dict[str, Any]:
    """Exposure fairness across bidders and, with ``group``, across groups.

    Args:
        alloc: ``[M, n]`` attention won per market round.
        merit: ``[M, n]`` merit of each buyer's ad in that round (>= 0).
        utility: ``[M, n]`` each buyer's surplus in that round.
        names: the ``n`` bidders' names.
        group: ``[M, n]`` int labels (e.g. each ad's vertical), ``-1``: none.
        group_names: the name of each label (``len`` = number of groups).

    Returns:
        ``gini_attention`` and ``gini_surplus`` (over bidders' totals; negative
        surplus counts as 0), ``exposure_merit_gap``, ``by_bidder`` (per name:
        ``exposure_share``, ``merit_share``, ``surplus_share``, ``treatment``
        = exposure share / merit share), ``bidder_disparity`` (the ratios of
        :func:`disparity` with each bidder a group) and, with ``group``,
        ``by_group`` (per group name: ``ads``, ``exposure``, ``merit``,
        ``impact``, ``exposure_share``, ``merit_share``, ``gini_attention``
        and ``gini_surplus`` over the group's ads) and ``group_disparity``.
    """
    a = _records(alloc, "alloc")
    u = _records(merit, "merit", a.shape)
    s = np.clip(_records(utility, "utility", a.shape), 0.0, None)
    if np.any(a < 0) or np.any(u < 0):
        raise UserError("alloc and merit must be >= 0")
    n = a.shape[1]
    if len(names) != n:
        raise UserError(f"names must name the {n} buyers, got {len(names)}")
    seat = np.broadcast_to(np.arange(n), a.shape)
    by_seat = group_means(a, u, seat, n)
    a_tot, u_tot, s_tot = a.sum(axis=0), u.sum(axis=0), s.sum(axis=0)
    ea, eu, es = _share(a_tot), _share(u_tot), _share(s_tot)
    with np.errstate(invalid="ignore", divide="ignore"):
        treat = np.where(eu > _EPS, ea / np.where(eu > _EPS, eu, 1.0), np.nan)
    out: dict[str, Any] = {
        "gini_attention": float(gini(a_tot)),
        "gini_surplus": float(gini(s_tot)),
        "exposure_merit_gap": exposure_merit_gap(a, u),
        "by_bidder": {
            name: {
                "exposure_share": float(ea[i]),
                "merit_share": float(eu[i]),
                "surplus_share": float(es[i]),
                "treatment": float(treat[i]),
            }
            for i, name in enumerate(names)
        },
        "bidder_disparity": disparity(by_seat),
    }
    if group is None:
        return out
    g = np.asarray(group)
    k = len(group_names)
    means = group_means(a, u, g, k)
    ga = np.bincount(g[g >= 0], weights=a[g >= 0], minlength=k)
    gu = np.bincount(g[g >= 0], weights=u[g >= 0], minlength=k)
    sa, su = _share(ga), _share(gu)
    by_group = {}
    for j, name in enumerate(group_names):
        mine = g == j
        by_group[str(name)] = {
            "ads": int(means["count"][j]),
            "exposure": float(means["exposure"][j]),
            "merit": float(means["merit"][j]),
            "impact": float(means["impact"][j]),
            "exposure_share": float(sa[j]),
            "merit_share": float(su[j]),
            "gini_attention": float(gini(a[mine])) if mine.any() else float("nan"),
            "gini_surplus": float(gini(s[mine])) if mine.any() else float("nan"),
        }
    out["by_group"] = by_group
    out["group_disparity"] = disparity(means)
    return out

"""Streaming market metrics of played rounds: the reducer behind ``simulate``.

:class:`MarketLog` takes the vector env's per-round infos, reduces each round
to a few numbers per market (welfare, first-best, payments, prices, the
Walrasian interval, IR violations, blocking pairs) and per-agent sums, and
turns them into the metrics ``attn-market simulate`` reports. The formulas live
in :mod:`attn_env.metrics`; this module only decides what to record per round
and how to aggregate it over episodes.

Per-episode figures (``revenue``, ``welfare``, ``mean_utility``, ``volume``) are
sums over an episode's rounds averaged over episodes; ``efficiency`` is total
welfare over total first-best welfare; prices are per unit of attention.

Each of these means comes with its standard error over episodes (the key with
``_se`` appended; ``attn_env.estimates``): episodes are independent, the rounds
of one episode need not be, so the errors are computed from per-episode totals.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from typing import Any

import numpy as np
from numpy.typing import NDArray

from attn_env import metrics
from attn_env.estimates import Estimate
from attn_env.mechanisms import blocking_pairs

__all__ = ["MarketLog", "summarize"]

_MAX_BINS = 50
_TOL = 1e-9
# actions are float32: prices computed from them differ from float64 values by ~1e-7
_PRICE_TOL = 1e-6
F32_EPS = float(np.finfo(np.float32).eps)
"""Relative float32 rounding (2^-23): actions travel as float32, so a truthful bid
``float32(v)`` may exceed the value ``v`` by up to ``v * F32_EPS / 2``."""


class MarketLog:
    """Streaming record of played rounds, reduced as they come (bounded memory).

    Each round is reduced to a few numbers per market (welfare, first-best,
    payments, prices, the Walrasian interval, IR violations) and per-agent sums
    over the episode (utility, attention won), so a long run keeps ``O(E * T)``
    scalars, not every bid.

    Args:
        names: agent names, buyers first (the env's column order).
        n_buyers: number of buyer columns.
        family: ``one_sided``, ``two_sided`` or ``matching``.
        redraw: ``round`` or ``episode``; with one two-sided draw per episode the
            first-best is counted once per episode (one unit per trader per draw).
        reserve: the mechanism's reserve price (matchings' blocking pairs: a
            buyer does not want a slot it values under the reserve).
    """

    _SCALARS = (
        "welfare",
        "opt",
        "revenue",
        "units",
        "surplus",
        "price",
        "low",
        "high",
        "ir",
        "blocking",
        "draw",
    )

    def __init__(
        self,
        names: list[str],
        n_buyers: int,
        family: str,
        redraw: str = "round",
        reserve: float = 0.0,
    ) -> None:
        self.names, self.n = list(names), n_buyers
        self.reserve = float(reserve)
        self.two_sided = family == "two_sided"
        self.matching = family == "matching"
        self.cumulative = self.two_sided and redraw == "episode"
        self._rounds: list[dict[str, NDArray]] = []
        self._utility: NDArray | None = None
        self._exposure: NDArray | None = None
        self._done: dict[str, list[NDArray]] = {
            k: [] for k in (*self._SCALARS, "utility", "exposure")
        }

    def add_round(self, info: Mapping[str, Any]) -> None:
        """Reduce one round of ``B`` markets.

        Args:
            info: the vector env's step infos: ``value``, ``bid``, ``alloc``,
                ``payment``, ``utility``, ``active`` ``[B, A]``, ``clearing_price
                [B]``, ``alpha [B, K]`` (the round's slot attention; not read in
                two-sided markets) and, in matchings, ``slot [B, n]``.
        """
        n = self.n

        def get(key: str) -> NDArray[np.float64]:
            return np.asarray(info[key], dtype=np.float64)

        value, bid, alloc, pay = get("value"), get("bid"), get("alloc"), get("payment")
        util = get("utility")
        bv, ba, bpay = value[:, :n], alloc[:, :n], pay[:, :n]
        if self.two_sided:
            cost, sold, receipt = value[:, n:], alloc[:, n:], pay[:, n:]
            welfare = metrics.welfare(bv, ba, cost, sold)
            opt = metrics.optimal_welfare(bv, costs=cost)
            if self.cumulative and self._rounds:
                opt = np.zeros_like(opt)  # the period's first-best counts once
            low, high = metrics.walrasian_interval(bv, cost)
            surplus = metrics.budget_surplus(bpay, receipt)
        else:
            live = np.where(np.asarray(info["active"])[:, :n] > 0.5, bv, 0.0)
            alpha = get("alpha")
            welfare = metrics.welfare(bv, ba)
            # share rules: the env's first-best attention (one slot of it all)
            best = get("first_best_alpha") if "first_best_alpha" in info else alpha
            opt = metrics.optimal_welfare(live, alpha=best)
            low, high = _one_sided_interval(live, alpha, self.matching)
            surplus = metrics.budget_surplus(bpay)
        if self.matching:
            # stability under the buyers' true values (slots ranking buyers by
            # them too): 0 when no buyer and slot would both rather match
            slot = np.asarray(info["slot"])
            blocking = blocking_pairs(
                live[:, :, None] * alpha[:, None, :], slot, self.reserve
            ).astype(np.float64)
        else:
            blocking = np.full(len(welfare), np.nan)
        # An action within float32 rounding of the value is the truthful one, and
        # the loss that rounding can cause (<= F32_EPS x value x units, plus the
        # float rounding of the payment) is no IR violation: ``ir_violations``
        # counts only losses beyond it. Both bounds are relative, so markets of
        # any value scale (1e-9 as well as 1e3) are judged alike.
        slack = F32_EPS * np.abs(value)
        rational = np.concatenate(
            [
                bid[:, :n] <= bv + slack[:, :n],
                bid[:, n:] >= value[:, n:] - slack[:, n:],
            ],
            axis=1,
        )
        ir_tol = F32_EPS * (np.abs(value) * np.abs(alloc) + np.abs(pay))
        self._rounds.append(
            {
                "welfare": welfare,
                "opt": opt,
                "revenue": metrics.revenue(bpay),
                "units": ba.sum(axis=1),
                "surplus": surplus,
                "price": get("clearing_price"),
                "low": low,
                "high": high,
                "ir": metrics.ir_violations(util, rational, ir_tol).astype(np.float64),
                "blocking": blocking,
                # a fingerprint of the round's draw: equal across designs exactly
                # when they drew the same values (common random numbers)
                "draw": value.sum(axis=1),
            }
        )
        self._utility = util if self._utility is None else self._utility + util
        self._exposure = ba if self._exposure is None else self._exposure + ba

    def end_batch(self, keep: int | None = None) -> None:
        """Close the episodes of the rounds added so far; keep the first ``keep``."""
        if not self._rounds:
            raise ValueError("end_batch() called with no rounds added")
        for k in self._SCALARS:
            self._done[k].append(np.stack([r[k] for r in self._rounds], 1)[:keep])
        self._done["utility"].append(self._utility[:keep])
        self._done["exposure"].append(self._exposure[:keep])
        self._rounds, self._utility, self._exposure = [], None, None

    def result(self) -> dict[str, Any]:
        """Metrics of every closed episode.

        Returns:
            ``efficiency`` (total welfare / total first-best), per episode
            ``welfare``, ``optimal_welfare``, ``revenue``, ``budget_surplus`` and
            ``volume``; ``mean_price`` (payments per unit), ``mean_clearing_price``
            and ``price_std`` (of clearing prices), ``walrasian_distance`` (mean
            distance of clearing prices to the round's Walrasian interval) and
            ``walrasian_share`` (share inside it), ``ir_violations`` (agent-rounds
            with an IR action yet negative utility), ``blocking_pairs``
            (matchings only: mean blocking pairs per market round under the
            buyers' true values, 0 = stable), ``mean_utility`` and
            ``exposure_share`` by agent name, ``gini_utility`` (of agents' mean
            utilities, negatives clipped to 0), ``gini_exposure`` and ``series``
            (by round, or by bins of episodes when episodes have one round).
            Beside every mean, its standard error over episodes: ``KEY_se`` for
            the keys of :meth:`estimates`, ``mean_utility_se`` and
            ``exposure_share_se`` by agent name (``nan`` with one episode).
        """
        d = self._closed()
        welfare, opt, price = d["welfare"], d["opt"], d["price"]
        dist = metrics.walrasian_distance(price, d["low"], d["high"])
        traded = np.isfinite(price)
        units = d["units"].sum()
        mean_u = metrics.mean_utility(d["utility"])
        exposure = metrics.exposure_share(d["exposure"])
        price_mean, price_std = metrics.price_stats(price)
        out = {
            "efficiency": metrics.efficiency(welfare, opt),
            "welfare": _per_episode(welfare),
            "optimal_welfare": _per_episode(opt),
            "revenue": _per_episode(d["revenue"]),
            "budget_surplus": _per_episode(d["surplus"]),
            "volume": _per_episode(d["units"]),
            "mean_price": float(d["revenue"].sum() / units)
            if units > _TOL
            else math.nan,
            "mean_clearing_price": price_mean,
            "price_std": price_std,
            "walrasian_distance": float(dist[traded].mean())
            if traded.any()
            else math.nan,
            "walrasian_share": (
                float((dist[traded] <= _PRICE_TOL).mean()) if traded.any() else math.nan
            ),
            "ir_violations": int(d["ir"].sum()),
            "mean_utility": dict(zip(self.names, map(float, mean_u), strict=True)),
            "exposure_share": dict(
                zip(self.names[: self.n], map(float, exposure), strict=True)
            ),
            "gini_utility": float(metrics.gini(np.clip(mean_u, 0.0, None))),
            "gini_exposure": float(metrics.gini(exposure)),
            "series": _series(
                price, d["low"], d["high"], welfare, opt, self.cumulative
            ),
        }
        if self.matching:
            out["blocking_pairs"] = float(d["blocking"].mean())
        for key, est in self.estimates().items():
            out[f"{key}_se"] = est.se
        for key, ests in self.agent_estimates().items():
            out[f"{key}_se"] = {name: est.se for name, est in ests.items()}
        return out

    def _closed(self) -> dict[str, NDArray]:
        """Every closed episode's records, ``[E, T]`` (``utility``, ``exposure``:
        ``[E, A]`` episode sums)."""
        if not self._done["welfare"]:
            raise ValueError("no episodes recorded; call end_batch() first")
        return {k: np.concatenate(v) for k, v in self._done.items()}

    def estimates(self) -> dict[str, Estimate]:
        """The market figures of :meth:`result` that are means, as estimates over
        episodes (value and per-episode influence, ``attn_env.estimates``).

        Keys: ``efficiency``, ``welfare``, ``optimal_welfare``, ``revenue``,
        ``budget_surplus``, ``volume``, ``mean_price``, ``mean_clearing_price``,
        ``walrasian_distance``, ``walrasian_share`` and, in matchings,
        ``blocking_pairs``. Values equal :meth:`result`'s up to float rounding.
        """
        d = self._closed()
        total = {k: d[k].sum(axis=1) for k in ("welfare", "opt", "revenue", "units")}
        price = d["price"]
        traded = np.isfinite(price)
        dist = metrics.walrasian_distance(price, d["low"], d["high"])
        trades = traded.sum(axis=1)

        def over_trades(x: NDArray) -> Estimate:
            return Estimate.ratio(np.where(traded, x, 0.0).sum(axis=1), trades)

        out = {
            "efficiency": Estimate.ratio(total["welfare"], total["opt"]),
            "welfare": Estimate.mean(total["welfare"]),
            "optimal_welfare": Estimate.mean(total["opt"]),
            "revenue": Estimate.mean(total["revenue"]),
            "budget_surplus": Estimate.mean(d["surplus"].sum(axis=1)),
            "volume": Estimate.mean(total["units"]),
            "mean_price": Estimate.ratio(total["revenue"], total["units"]),
            "mean_clearing_price": over_trades(price),
            "walrasian_distance": over_trades(dist),
            "walrasian_share": over_trades(dist <= _PRICE_TOL),
        }
        if self.matching:
            out["blocking_pairs"] = Estimate.mean(d["blocking"].mean(axis=1))
        return out

    def agent_estimates(self) -> dict[str, dict[str, Estimate]]:
        """``mean_utility`` (every agent) and ``exposure_share`` (buyers) by agent
        name, as estimates over episodes."""
        d = self._closed()
        utility, exposure = d["utility"], d["exposure"]
        won = exposure.sum(axis=1)
        return {
            "mean_utility": {
                name: Estimate.mean(utility[:, i]) for i, name in enumerate(self.names)
            },
            "exposure_share": {
                name: Estimate.ratio(exposure[:, i], won)
                for i, name in enumerate(self.names[: self.n])
            },
        }

    def draws(self) -> NDArray[np.float64]:
        """``[E, T]`` fingerprint of each round's draw (the sum of its values and
        costs): two runs drew the same markets where these are equal."""
        return self._closed()["draw"]


def _one_sided_interval(
    values: NDArray, alpha: NDArray, matching: bool
) -> tuple[NDArray, NDArray]:
    """The Walrasian interval of the mechanism's headline price, ``[B]`` each.

    Position auctions report the top slot's unit price; matchings the mean unit
    price over matched slots, whose Walrasian range is the mean of the slots'
    ranges (the lattice of competitive prices has a least and a greatest element).
    """
    if not matching:
        return metrics.walrasian_interval(values, alpha=alpha)
    low, high = metrics.slot_price_intervals(values, alpha)
    filled = np.arange(alpha.shape[1])[None, :] < np.minimum(
        (values > _TOL).sum(axis=1, keepdims=True), alpha.shape[1]
    )
    count = np.maximum(filled.sum(axis=1), 1)
    return (
        np.where(filled, low, 0.0).sum(axis=1) / count,
        np.where(filled, high, 0.0).sum(axis=1) / count,
    )


def _per_episode(x: NDArray) -> float:
    """Sum over an episode's rounds (axis 1), mean over episodes."""
    return float(x.sum(axis=1).mean())


def summarize(
    rec: Mapping[str, NDArray],
    names: list[str],
    n_buyers: int,
    family: str,
    redraw: str = "round",
    reserve: float = 0.0,
) -> dict[str, Any]:
    """Market metrics from full round records ``[E, T, ...]`` (episodes x rounds).

    Args:
        rec: ``value``, ``bid``, ``alloc``, ``payment``, ``utility``, ``active``
            ``[E, T, A]`` (columns in ``names`` order, buyers first),
            ``clearing_price [E, T]`` (nan: no trade), ``alpha [E, T, K]`` and,
            in matchings, ``slot [E, T, n]``.
        names, n_buyers, family, redraw, reserve: as :class:`MarketLog`.

    Returns:
        :meth:`MarketLog.result`.
    """
    log = MarketLog(names, n_buyers, family, redraw, reserve)
    for t in range(np.asarray(rec["clearing_price"]).shape[1]):
        log.add_round({k: np.asarray(v)[:, t] for k, v in rec.items()})
    log.end_batch()
    return log.result()


def _ratio(num: NDArray, den: NDArray) -> NDArray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > _TOL, num / np.where(den > _TOL, den, 1.0), np.nan)


def _series(
    price: NDArray,
    low: NDArray,
    high: NDArray,
    welfare: NDArray,
    opt: NDArray,
    cumulative: bool,
) -> dict[str, Any]:
    """Price path, Walrasian band, efficiency and share of markets that traded, by
    round (or by bins of episodes).

    With ``cumulative`` (one two-sided period per episode) efficiency at round ``t``
    is the share of the period's first-best realised by the end of round ``t``.
    """
    E, T = price.shape
    if T > 1:
        x = np.arange(1, T + 1)
        groups = [np.s_[:, t] for t in range(T)]
        label = "round"
    else:
        edges = np.linspace(0, E, min(_MAX_BINS, E) + 1).astype(int)
        groups = [np.s_[a:b, 0] for a, b in itertools.pairwise(edges)]
        x = (edges[:-1] + edges[1:]) / 2
        label = "episode"
    if cumulative:
        welfare, opt = (
            np.cumsum(welfare, axis=1),
            np.broadcast_to(opt.sum(1, keepdims=True), opt.shape),
        )

    def mean_finite(x: NDArray) -> float:
        x = x[np.isfinite(x)]
        return float(x.mean()) if x.size else math.nan

    return {
        "x_label": label,
        "efficiency_label": "cumulative efficiency" if cumulative else "efficiency",
        "x": x.tolist(),
        "price": [mean_finite(price[g]) for g in groups],
        "walrasian_low": [float(low[g].mean()) for g in groups],
        "walrasian_high": [float(high[g].mean()) for g in groups],
        "efficiency": [float(_ratio(welfare[g].sum(), opt[g].sum())) for g in groups],
        "traded_share": [float(np.isfinite(price[g]).mean()) for g in groups],
    }

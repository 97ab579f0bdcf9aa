"""The ``search_day`` scenario: a day of sponsored search with auto-bidders.

``simulate`` plays ``days`` days of the config's market with its seated
bidders and reports, with standard errors over days, what docs/search_day.md
describes: each bidder kind's AuctionNet score, budget use and target
violations (and its gain over PID where PID plays), the market's revenue,
welfare and advertiser surplus, exposure fairness across verticals, speed,
and with ``hindsight: true`` the share of the hindsight bound each kind
reached.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from attn_env.scenarios.search_config import SearchDayConfig, from_data
from attn_env.scenarios.search_market import SearchMarket, build_market
from attn_env.scenarios.search_play import DayResult, Policy, play_day, seat_kinds

__all__ = ["CONFIG", "day_measures", "from_data", "play_days", "simulate", "summarise"]

CONFIG = SearchDayConfig


def play_days(
    config: SearchDayConfig,
    market: SearchMarket | None = None,
    policy: Policy | None = None,
    progress: bool = False,
    first_day: int = 0,
) -> list[DayResult]:
    """Play the config's days (day d: traffic seed ``seed + first_day + d``)."""
    market = market or build_market(config)
    seat_rng = np.random.default_rng([config.seed, 0x5EA7])
    kinds = seat_kinds(config.bidders, market.n, seat_rng)
    days = range(config.days)
    if progress:
        from tqdm import tqdm

        days = tqdm(days, desc="days", unit="day", leave=False)
    out = []
    for d in days:
        if config.seating == "rotate" and d > 0:
            kinds = [kinds[i] for i in seat_rng.permutation(market.n)]
        seed = config.seed + first_day + d
        out.append(play_day(market, kinds, seed, policy, config.hindsight))
    return out


def simulate(
    config: SearchDayConfig,
    progress: bool = False,
    policy: Policy | None = None,
    market: SearchMarket | None = None,
) -> dict[str, Any]:
    """Play the config's days and summarise them (:func:`summarise`)."""
    return summarise(config, play_days(config, market, policy, progress))


def _mean_se(x: list[float]) -> tuple[float | None, float | None]:
    """Mean and standard error over days (``None`` where undefined)."""
    a = np.asarray([v for v in x if v is not None and math.isfinite(v)], dtype=float)
    if a.size == 0:
        return None, None
    se = float(a.std(ddof=1) / math.sqrt(a.size)) if a.size > 1 else None
    return float(a.mean()), se


def _put(out: dict[str, Any], key: str, values: list[float]) -> None:
    out[key], out[f"{key}_se"] = _mean_se(values)


def day_measures(days: list[DayResult]) -> dict[str, list[float]]:
    """The market's figures day by day (what ``summarise`` averages and
    ``compare`` pairs): revenue, welfare, surplus, mean score, budget use."""
    return {
        "revenue": [d.revenue for d in days],
        "welfare": [d.welfare for d in days],
        "advertiser_surplus": [d.welfare - d.revenue for d in days],
        "score": [float(d.score.mean()) for d in days],
        "budget_use": [float((d.spend / d.budget).mean()) for d in days],
    }


def summarise(config: SearchDayConfig, days: list[DayResult]) -> dict[str, Any]:
    """One JSON-able summary of played days (means and standard errors over days)."""
    out: dict[str, Any] = {
        "scenario": "search_day",
        "mechanism": config.auction.mechanism,
        "days": len(days),
        "advertisers": len(days[0].score),
        "impressions_per_day": days[0].impressions,
    }
    seconds = [d.seconds for d in days]
    out["seconds_per_day"] = float(np.mean(seconds))
    out["impressions_per_s"] = float(sum(d.impressions for d in days) / sum(seconds))
    for key, values in day_measures(days).items():
        _put(out, key, values)
    _put(out, "violation_rate", [float(d.violated.mean()) for d in days])
    by_kind: dict[str, Any] = {}
    for kind in dict.fromkeys(k for d in days for k in d.kinds):
        picks = [np.array([k == kind for k in d.kinds]) for d in days]

        def per(f, picks=picks) -> list[float]:
            return [f(d, p) for d, p in zip(days, picks, strict=True)]

        entry: dict[str, Any] = {"advertisers": int(picks[0].sum())}
        _put(entry, "score", per(lambda d, p: float(d.score[p].mean())))
        _put(entry, "conversions", per(lambda d, p: float(d.conversions[p].mean())))
        _put(
            entry, "budget_use", per(lambda d, p: float((d.spend / d.budget)[p].mean()))
        )
        _put(entry, "violation_rate", per(lambda d, p: float(d.violated[p].mean())))
        _put(entry, "cpa_over_target", per(_cpa_ratio))
        if days[0].score_bound is not None:
            _put(
                entry,
                "share_of_bound",
                per(lambda d, p: _share(d.score, d.score_bound, p)),
            )
            _put(
                entry,
                "share_of_best_fixed_lambda",
                per(lambda d, p: _share(d.score, d.hindsight_score, p)),
            )
        if "pid" in config.bidders and kind != "pid":
            _put(entry, "gain_over_pid", per(_gain_over_pid))
        by_kind[kind] = entry
    out["by_kind"] = by_kind
    fair: dict[str, Any] = {}
    for key in days[0].fairness:
        _put(fair, key, [d.fairness[key] for d in days])
    out["fairness_across_verticals"] = fair
    if days[0].score_bound is not None:
        _put(out, "share_of_bound", [_share(d.score, d.score_bound) for d in days])
    return out


def _share(score, ref, pick=slice(None)) -> float | None:
    """``sum score / sum ref`` over the picked advertisers."""
    total = float(ref[pick].sum())
    return float(score[pick].sum()) / total if total > 0 else None


def _cpa_ratio(d: DayResult, pick) -> float | None:
    """Mean realised CPA / target over the picked advertisers that converted."""
    ratio = (d.cpa / d.target_cpa)[pick]
    return float(np.nanmean(ratio)) if np.isfinite(ratio).any() else None


def _gain_over_pid(d: DayResult, pick) -> float | None:
    """Mean score of the picked advertisers over the PID bidders' mean, minus 1."""
    pid = np.array([k == "pid" for k in d.kinds])
    base = float(d.score[pid].mean()) if pid.any() else 0.0
    return float(d.score[pick].mean()) / base - 1.0 if base > 0 else None

"""``train``, ``evaluate``, ``compare`` and ``audit`` of the ``search_day`` scenario.

``audit`` plays the config's first days (at most :data:`AUDIT_DAYS`) and
reports incentives (what one sampled advertiser gains by scaling its
auto-bidder's multiplier while the others keep theirs), invariants checked on
every auction and day it played (budgets, price within bid, revenue = spend,
no negative payment), target-CPA violations by bidder kind (and the share of
the best fixed multiplier in hindsight with ``hindsight: true``) and exposure
fairness across verticals.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from attn_env.errors import UserError
from runner.scenario_commands import paired

__all__ = [
    "RAY",
    "audit",
    "audited_market",
    "compare",
    "deviation_scores",
    "deviators",
    "evaluate",
    "train",
    "train_summary",
]

RAY = True
"``train`` takes ``address`` / ``num_env_runners`` (with ``train.backend: rllib``)."


def train(
    config: Any,
    out: str | Path,
    progress: bool = True,
    address: str | None = None,
    num_env_runners: int | None = None,
) -> dict[str, Any]:
    """Train the shared policy with ``train.backend`` (sb3, or rllib, which alone
    takes a Ray ``address`` and ``num_env_runners``)."""
    if config.train.backend == "rllib":
        from training.search_day_rllib import train_search_day_rllib

        return train_search_day_rllib(
            config, out, progress, address=address, num_env_runners=num_env_runners
        )
    if address is not None or num_env_runners is not None:
        raise UserError(
            "--address and --num-env-runners need train.backend: rllib (scenario "
            f"'search_day' trains with {config.train.backend}, in this process)"
        )
    from training.search_day import train_search_day

    return train_search_day(config, out, progress=progress)


def train_summary(record: dict[str, Any]) -> str:
    """The line ``train`` prints: steps, time, and the last validation score."""
    last = record["curve"][-1]
    return (
        f"trained {record['timesteps']:,} advertiser-periods in "
        f"{record['seconds']:.0f} s; held-out score {last['score']:.3f} "
        f"(PID {last['pid_score']:.3f})"
    )


def evaluate(config: Any, policy: str | Path, episodes: int | None) -> dict[str, Any]:
    """A trained policy against the baselines on the same held-out days.

    Every advertiser bids with the policy; then the same days are played with
    every advertiser bidding with each baseline. Paired over days.
    """
    from attn_env.scenarios.search_day import play_days, summarise
    from attn_env.scenarios.search_market import build_market
    from training.search_day import HELD_OUT, held_out, load_search_policy

    days = episodes or config.train.eval_days
    market = build_market(config)
    bidder = load_search_policy(policy, config.lambda_max)
    results: dict[str, Any] = {}
    scores: dict[str, list[float]] = {}
    for kind in ("policy", "pid", "onlinelp", "pacing", "truthful"):
        cfg = held_out(config, kind, days)
        played = play_days(cfg, market, bidder, first_day=HELD_OUT - cfg.seed)
        results[kind] = summarise(cfg, played)
        scores[kind] = [float(d.score.mean()) for d in played]
    pid = np.array(scores["pid"])
    for kind, entry in results.items():
        if kind != "pid":
            entry["gain_over_pid"] = paired(np.array(scores[kind]) / pid - 1.0)
    return {
        "scenario": "search_day",
        "policy": str(policy),
        "days": days,
        "by_bidders": results,
    }


def compare(designs: list[tuple[str, Any]]) -> dict[str, Any]:
    """Paired differences of each design against the first, over the same days
    (every figure of :func:`attn_env.scenarios.search_day.day_measures`)."""
    from attn_env.scenarios.search_day import day_measures, play_days, summarise

    rows, per_day = [], []
    for label, config in designs:
        played = play_days(config)
        summary = summarise(config, played)
        summary["label"] = label
        rows.append(summary)
        per_day.append({k: np.array(v) for k, v in day_measures(played).items()})
    base = per_day[0]
    diffs = []
    for (label, _), days in zip(designs[1:], per_day[1:], strict=True):
        if len(days["score"]) != len(base["score"]):
            raise UserError("compare needs the same number of days in every config")
        diffs.append({"label": label, **{k: paired(days[k] - base[k]) for k in base}})
    return {"scenario": "search_day", "designs": rows, "differences": diffs}


# --- audit ---------------------------------------------------------------

AUDIT = 7_100_003
"Seed-sequence tag of the audit's sample of deviating advertisers."
AUDIT_DAYS = 2
"At most this many of the config's days are audited (each deviation replays a day)."
AUDIT_ADVERTISERS = 4
"Advertisers sampled to deviate (spread over the bidder kinds)."
AUDIT_FACTORS = (0.5, 0.75, 0.9, 1.1, 1.25, 1.5)
"Factors the deviating advertiser scales its auto-bidder's multiplier by."
TOLERANCE = 0.01
"A deviation gaining at most this share of the advertiser's score counts as none."
SLACK = 1e-9
"Relative rounding allowed before an invariant counts as broken."


INVARIANTS = {
    "budget_never_exceeded": "max over advertisers, days of (spend - budget) / budget",
    "price_within_bid": "max over won slots of (price - bid) / bid, per click",
    "revenue_is_total_spend": "|revenue - total spend| and |sum of period spends - "
    "spend| over revenue",
    "payments_non_negative": "minus the least price per click and period spend",
}
"The invariants the audit checks, and how each worst violation is measured."


class _Checks:
    """The invariants, accumulated over every impression and day an audit plays:
    each as its worst violation (0 while it holds)."""

    def __init__(self) -> None:
        self.worst = dict.fromkeys(INVARIANTS, 0.0)
        self.days = 0
        self.auctions = 0
        self.slots = 0

    def _note(self, key: str, excess: float) -> None:
        self.worst[key] = max(self.worst[key], float(excess))

    def prices(self, bids: NDArray[np.float64], out: Any) -> None:
        """One cleared batch: winners pay at most their bid per click, never below 0."""
        won = out.slot >= 0
        self.auctions += len(bids)
        self.slots += int(won.sum())
        if won.any():
            price, bid = out.price[won], np.asarray(bids)[won]
            over = (price - bid) / np.maximum(bid, 1e-12)
            self._note("price_within_bid", over.max())
            self._note("payments_non_negative", -price.min())

    def day(self, d: Any) -> None:
        """One played day: budgets, and revenue = spend = the periods' spend."""
        self.days += 1
        self._note("budget_never_exceeded", ((d.spend - d.budget) / d.budget).max())
        books = max(
            abs(d.revenue - float(d.spend.sum())),
            float(np.abs(d.spend_by_period.sum(axis=0) - d.spend).max()),
        )
        self._note("revenue_is_total_spend", books / max(d.revenue, 1e-12))
        self._note("payments_non_negative", -float(d.spend_by_period.min()))

    def report(self) -> list[dict[str, Any]]:
        """One row per invariant: whether it held and its worst violation."""
        return [
            {
                "label": key,
                "what": INVARIANTS[key],
                "holds": worst <= SLACK,
                "worst_violation": worst,
            }
            for key, worst in self.worst.items()
        ]


class _Audited:
    """A market's auction as the audit plays it: every cleared batch's prices go
    to ``checks``, and advertiser ``who`` (if >= 0) has its multiplier scaled by
    ``factor`` (at most ``lam_max``) before each period is cleared."""

    def __init__(
        self,
        auction: Any,
        checks: _Checks,
        who: int = -1,
        factor: float = 1.0,
        lam_max: float = math.inf,
    ) -> None:
        inner = copy.copy(auction)
        mech = copy.copy(auction.mech)
        clear = mech.clear

        def checked(bids: NDArray[np.float64], *args: Any, **kw: Any) -> Any:
            out = clear(bids, *args, **kw)
            checks.prices(bids, out)
            return out

        mech.clear = checked
        inner.mech = mech
        self._inner = inner
        self.who, self.factor, self.lam_max = who, factor, lam_max

    def clear(
        self, queries: Any, lam: NDArray[np.float64], *args: Any, **kw: Any
    ) -> Any:
        """Clear a period with the deviator's multiplier scaled."""
        if self.who >= 0:
            lam = lam.copy()
            lam[self.who] = min(lam[self.who] * self.factor, self.lam_max)
        return self._inner.clear(queries, lam, *args, **kw)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def audited_market(
    market: Any, checks: _Checks, who: int = -1, factor: float = 1.0
) -> Any:
    """``market`` with its auction wrapped by :class:`_Audited`."""
    lam_max = market.config.lambda_max
    auction = _Audited(market.auction, checks, who, factor, lam_max)
    return dataclasses.replace(market, auction=auction)


def deviators(kinds: list[str], n: int, seed: int) -> list[int]:
    """``n`` advertisers to deviate, drawn in turn from each bidder kind's seats."""
    rng = np.random.default_rng(np.random.SeedSequence([AUDIT, seed]))
    pools = {
        k: list(rng.permutation([i for i, s in enumerate(kinds) if s == k]))
        for k in dict.fromkeys(kinds)
    }
    out: list[int] = []
    while len(out) < min(n, len(kinds)):
        for pool in pools.values():
            if pool and len(out) < n:
                out.append(int(pool.pop(0)))
    return out


def deviation_scores(
    market: Any,
    played: list[Any],
    seeds: list[int],
    who: int,
    factors: tuple[float, ...],
    checks: _Checks,
) -> NDArray[np.float64]:
    """Advertiser ``who``'s score ``[factors, days]`` when it alone scales its
    multiplier by each factor, on the days of ``played`` (same seats and seeds)."""
    from attn_env.scenarios.search_play import play_day

    out = np.zeros((len(factors), len(played)))
    for j, f in enumerate(factors):
        dev = audited_market(market, checks, who, f)
        for d, (day, seed) in enumerate(zip(played, seeds, strict=True)):
            res = play_day(dev, day.kinds, seed)
            checks.day(res)
            out[j, d] = res.score[who]
    return out


def _incentives(
    market: Any, played: list[Any], seeds: list[int], checks: _Checks, seed: int
) -> tuple[dict[str, Any], list[dict[str, Any]], list[dict[str, Any]]]:
    """The best scaling of each sampled advertiser against the others' bidders,
    and each factor's mean gain over them."""
    rows: list[dict[str, Any]] = []
    gains, rel, by_factor = [], [], []
    for who in deviators(played[0].kinds, AUDIT_ADVERTISERS, seed):
        base = np.array([d.score[who] for d in played])
        dev = deviation_scores(market, played, seeds, who, AUDIT_FACTORS, checks)
        mean = (dev - base[None, :]).mean(axis=1)  # [factors]
        best = int(mean.argmax())
        gain = max(float(mean[best]), 0.0)
        own = float(base.mean())
        share = gain / own if own > 0 else (math.inf if gain > 0 else 0.0)
        gains.append(gain)
        rel.append(share)
        row: dict[str, Any] = {
            "label": f"{market.advertisers.names[who]} ({played[0].kinds[who]})",
            "score": own,
            "best_factor": float(AUDIT_FACTORS[best]) if gain > 0 else 1.0,
            "gain": gain,
            "relative_gain": share,
        }
        rows.append(row)
        by_factor.append(mean)
    summary = {
        "what": (
            "one advertiser scales its auto-bidder's multiplier by a factor in "
            f"{{{', '.join(f'{f:g}' for f in AUDIT_FACTORS)}}} all day while the "
            "others keep theirs; gain = best mean score over days minus its own "
            "(0 if no factor helps), in AuctionNet score units (conversions)"
        ),
        "advertisers_sampled": len(rows),
        "largest_gain": max(gains),
        "largest_relative_gain": max(rel),
        "mean_gain": paired(np.array(gains)),
        "advertisers_over_tolerance": int(sum(r > TOLERANCE for r in rel)),
        "no_profitable_scaling": bool(max(rel) <= TOLERANCE),
    }
    per = np.array(by_factor)  # [advertisers, factors]
    factors = [
        {"label": f"x{f:g}", "factor": f, "gain": paired(per[:, j])}
        for j, f in enumerate(AUDIT_FACTORS)
    ]
    return summary, rows, factors


def audit(config: Any) -> dict[str, Any]:
    """Incentives, invariants and exposure of the search day on its first days.

    Plays ``min(days, AUDIT_DAYS)`` days with the config's bidders (with the
    hindsight landscape only if ``hindsight`` is set), then replays them with
    each sampled advertiser scaling its multiplier; every day played is checked
    for the invariants.
    """
    from attn_env.scenarios.search_day import play_days, summarise
    from attn_env.scenarios.search_market import build_market

    if "policy" in config.bidders:
        raise UserError(
            "the search-day audit plays the auto-bidders; bidders 'policy' needs a "
            "trained policy (use evaluate --policy)"
        )
    c = dataclasses.replace(config, days=min(config.days, AUDIT_DAYS))
    checks = _Checks()
    market = build_market(c)
    played = play_days(c, audited_market(market, checks))
    for d in played:
        checks.day(d)
    seeds = [c.seed + d for d in range(c.days)]
    summary = summarise(c, played)
    incentives, deviations, factors = _incentives(market, played, seeds, checks, c.seed)
    by_kind = {}
    for kind, e in summary["by_kind"].items():
        keep = (
            "advertisers",
            "score",
            "budget_use",
            "violation_rate",
            "cpa_over_target",
        )
        row = {k: v for k, v in e.items() if k.removesuffix("_se") in keep}
        for key in ("share_of_best_fixed_lambda", "share_of_bound"):
            if key in e:
                row[key], row[f"{key}_se"] = e[key], e[f"{key}_se"]
        by_kind[kind] = row
    invariants = checks.report()
    return {
        "scenario": "search_day",
        "mechanism": c.auction.mechanism,
        "days": c.days,
        "advertisers": market.n,
        "impressions_per_day": summary["impressions_per_day"],
        "days_checked": checks.days,
        "clearings_checked": checks.auctions,
        "slots_checked": checks.slots,
        "tolerance": TOLERANCE,
        "invariants_hold": all(r["holds"] for r in invariants),
        "incentives": incentives,
        "deviations": deviations,
        "gain_by_factor": factors,
        "invariants": invariants,
        "by_kind": by_kind,
        "violation_rate": summary["violation_rate"],
        "violation_rate_se": summary["violation_rate_se"],
        "fairness_across_verticals": summary["fairness_across_verticals"],
    }

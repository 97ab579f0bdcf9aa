"""``train``, ``evaluate``, ``compare`` and ``audit`` of ``compute_market``.

- ``train``: one PPO policy shared by the buyers and sellers of
  :class:`attn_env.scenarios.compute_env.ComputeMarketEnv` (each trader's
  shading per period), scored on validation populations by minus the mean
  gain of one trader's best fixed deviation (a shading of :data:`GRID` kept
  over the validation periods, the others playing the policy; 0 at an
  equilibrium on the grid).
- ``evaluate``: the policy, truthful schedules and the scenario's hill
  climber on the same held-out populations; paired differences.
- ``compare``: configs (rules, ``k``, capacity...) on the same seed, with the
  hill climber and with truthful traders, paired over populations against
  the first.
- ``audit``: incentives (one trader's best fixed shading of :data:`GRID`
  against truthful others), and invariants of every period played truthfully and by the
  hill climber (budget balance, no step trading more than its quantity,
  supply never exceeded, individual rationality at truthful reports, every
  price in ``[p_S, p_D]``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from attn_env.errors import UserError
from runner.scenario_commands import paired

__all__ = ["audit", "compare", "evaluate", "train", "train_summary"]

SCENARIO = "compute_market"
VALIDATION, HELD_OUT, AUDIT = 8_000_001, 8_000_002, 8_000_003
"Seed tags of validation, held-out and audit populations (never training's)."
GRID = np.round(np.linspace(0.0, 0.9, 10), 10)
"Shadings the deviating trader tries (0, 0.1, ..., 0.9; cut at ``shade_max``)."
VALIDATION_PERIODS = 10
"Periods of a validation run (the score needs every trader's deviations)."
AUDIT_PERIODS = 30
"Periods of the audit's truthful run with deviations."
SHOWN = (
    "efficiency",
    "abs_price_gap",
    "price_gap",
    "volume_ratio",
    "buyer_share",
    "seller_share",
    "utility",
    "buyer_shading",
    "seller_shading",
    "served_value_share",
)
"Per-population measures of ``evaluate``'s and ``compare``'s rows."
PAIRED = ("efficiency", "abs_price_gap", "utility", "volume_ratio")
"Measures whose paired differences ``evaluate`` and ``compare`` report."


def seed_of(tag: int, config: Any) -> int:
    """The seed of kind ``tag`` (validation, held-out, audit) for ``config``."""
    return int(np.random.SeedSequence([tag, config.seed]).generate_state(1)[0])


def _grid(config: Any) -> np.ndarray:
    return GRID[GRID <= config.shade_max + 1e-12]


def _row(per_pop: dict[str, np.ndarray], label: str) -> dict[str, Any]:
    row: dict[str, Any] = {"label": label}
    for key in SHOWN:
        if key in per_pop:
            row[key] = paired(per_pop[key])
    return row


def validation_scores(config: Any, policy: Any, unit: bool = False) -> dict[str, float]:
    """The policy on validation populations: ``score`` = minus the mean gain of
    a trader's best fixed deviation (reward units); efficiency, price gap
    (``unit``: in the unit-demand market)."""
    from attn_env.scenarios.compute_play import play, with_periods

    c = with_periods(config, min(config.periods, VALIDATION_PERIODS))
    r = play(
        c,
        policy,
        seed_of(VALIDATION, config),
        config.train.eval_episodes,
        grid=_grid(config),
        unit=unit,
    )["per_population"]
    return {
        "score": -float(r["br_gain"].mean()),
        "br_gain": float(r["br_gain"].mean()),
        "efficiency": float(r["efficiency"].mean()),
        "abs_price_gap": float(r["abs_price_gap"].mean()),
        "utility": float(r["utility"].mean()),
        "buyer_shading": float(r["buyer_shading"].mean()),
        "seller_shading": float(r["seller_shading"].mean()),
    }


def train(
    config: Any, out: str | Path, progress: bool = True, unit: bool = False
) -> dict[str, Any]:
    """Train the shared PPO policy of the compute market's traders into ``out``
    (``unit``: of the unit-demand market, for ``benchmarks/compute_market.py``)."""
    from attn_env.scenarios.compute_env import ComputeMarketEnv
    from training.scenario_ppo import train_shared_ppo

    return train_shared_ppo(
        SCENARIO,
        config,
        config.train,
        ComputeMarketEnv(config, unit=unit),
        lambda policy: validation_scores(config, policy, unit),
        out,
        progress,
    )


def train_summary(record: dict[str, Any]) -> str:
    """The line ``train`` prints: steps, time, and the kept policy's validation."""
    from training.scenario_ppo import kept_point

    kept, point = record["kept"]["timesteps"], kept_point(record)
    return (
        f"trained {record['timesteps']:,} trader-periods in {record['seconds']:.0f} s; "
        f"kept the policy at {kept:,}: efficiency {point['efficiency']:.4f}, "
        f"|p* - p_W| / p_W {point['abs_price_gap']:.4f}, best-response gain "
        f"{point['br_gain']:.4f} (validation)"
    )


def evaluate(config: Any, policy: str | Path, episodes: int | None) -> dict[str, Any]:
    """A trained policy, truthful schedules and the hill climber on the same
    held-out populations (``episodes``, default ``populations``); paired."""
    from training.scenario_ppo import load_shared_policy

    n_pop = episodes or config.populations
    act = load_shared_policy(policy, SCENARIO)
    return {"policy": str(policy), **held_out(config, act, n_pop)}


def held_out(config: Any, act: Any, n_pop: int, unit: bool = False) -> dict[str, Any]:
    """Policy ``act``, the hill climber and truthful traders on the held-out
    populations of ``config`` (``unit``: the unit-demand market); paired."""
    from attn_env.scenarios.compute_play import play

    seed = seed_of(HELD_OUT, config)
    runs = {
        "policy": play(config, act, seed, n_pop, unit=unit)["per_population"],
        "hill": play(config, "hill", seed, n_pop, unit=unit)["per_population"],
        "truthful": play(config, "truthful", seed, n_pop, unit=unit)["per_population"],
    }
    return {
        "scenario": SCENARIO,
        "market": "unit" if unit else "schedules",
        "populations": n_pop,
        "periods": config.periods,
        "report_last": config.report_last,
        "by_bidders": [_row(v, k) for k, v in runs.items()],
        "differences": [
            {
                "label": f"policy - {base}",
                **{k: paired(runs["policy"][k] - runs[base][k]) for k in PAIRED},
            }
            for base in ("hill", "truthful")
        ],
    }


def compare(designs: list[tuple[str, Any]]) -> dict[str, Any]:
    """Each config played by the hill climber and by truthful traders on its seed
    (give every config one seed: ``--seed``); paired against the first."""
    from attn_env.scenarios.compute_play import play

    pops = {c.populations for _, c in designs}
    if len(pops) != 1:
        raise UserError(
            f"compare needs the same populations in every config, got {sorted(pops)}"
        )
    rows, runs = [], []
    for label, c in designs:
        hill = play(c, "hill", c.seed, c.populations)["per_population"]
        truth = play(c, "truthful", c.seed, c.populations)["per_population"]
        rows.append(_row(hill, f"{label} (hill)"))
        rows.append(_row(truth, f"{label} (truthful)"))
        runs.append((label, hill, truth))
    base_label, base_hill, base_truth = runs[0]
    diffs = []
    for label, hill, truth in runs[1:]:
        for tag, a, b in (("hill", hill, base_hill), ("truthful", truth, base_truth)):
            diffs.append(
                {
                    "label": f"{label} - {base_label} ({tag})",
                    **{k: paired(a[k] - b[k]) for k in PAIRED},
                }
            )
    return {"scenario": SCENARIO, "designs": rows, "differences": diffs}


class _Invariants:
    """Counts of violated invariants over every period it sees."""

    def __init__(self) -> None:
        self.periods = 0
        self.markets = 0
        self.counts = dict.fromkeys(
            (
                "budget_deficit",
                "budget_imbalance",
                "overfilled_step",
                "supply_exceeded",
                "unbalanced_volume",
                "price_outside_margins",
                "individual_rationality",
            ),
            0,
        )
        self.worst_budget = 0.0

    def __call__(self, books: Any, shade: np.ndarray, period: Any) -> None:
        out, c = period.outcome, books.c
        tol = 1e-9
        scale = np.maximum(out.buyer_pay.sum(axis=1), 1e-300)
        surplus = out.budget_surplus
        self.periods += 1
        self.markets += surplus.size
        self.counts["budget_deficit"] += int((surplus < -tol * scale).sum())
        if c.rule != "trade_reduction":
            self.counts["budget_imbalance"] += int(
                (np.abs(surplus) > tol * scale).sum()
            )
        self.worst_budget = max(self.worst_budget, float(np.abs(surplus / scale).max()))
        qb = out.bid_fill.sum(axis=(1, 2))
        qa = out.ask_fill.sum(axis=(1, 2))
        self.counts["unbalanced_volume"] += int(
            (np.abs(qb - qa) > tol * np.maximum(qa, 1.0)).sum()
        )
        self.counts["supply_exceeded"] += period.over_capacity
        traded = np.isfinite(out.buyer_price)
        bad = traded & (
            (out.buyer_price > out.marginal_bid * (1 + tol))
            | (out.seller_price < out.marginal_ask * (1 - tol))
        )
        self.counts["price_outside_margins"] += int(bad.sum())
        if not shade.any():
            # truthful reports: no trader loses in any market
            u = period.market_utility
            self.counts["individual_rationality"] += int((u < -1e-9).sum())
        self.counts["overfilled_step"] += period.overfilled


def audit(config: Any) -> dict[str, Any]:
    """Incentives and invariants of the compute market under ``config``."""
    from attn_env.scenarios.compute_play import play, with_periods

    c = config
    seed = seed_of(AUDIT, c)
    check = _Invariants()
    short = with_periods(c, min(c.periods, AUDIT_PERIODS))
    truthful = play(
        short, "truthful", seed, c.populations, on_period=check, grid=_grid(c)
    )["per_population"]
    hill = play(c, "hill", seed, c.populations, on_period=check)["per_population"]
    gain = truthful["br_gain"]
    return {
        "scenario": SCENARIO,
        "rule": c.rule,
        "k": c.k,
        "incentives": {
            "what": (
                "one trader's best fixed shading in "
                f"{{{', '.join(f'{g:g}' for g in _grid(c))}}} against truthful "
                f"others, over the last {short.report_last} of {short.periods} "
                f"periods, {c.populations} populations; gain per period in "
                "reward units (the mean value of one job)"
            ),
            "br_gain": paired(gain),
            "buyer_br_gain": paired(truthful["buyer_br_gain"]),
            "seller_br_gain": paired(truthful["seller_br_gain"]),
            "truthful_utility": paired(truthful["utility"]),
            "truthful_is_equilibrium": bool(gain.mean() <= 1e-9),
        },
        "invariants": {
            "periods_checked": check.periods,
            "markets_checked": check.markets,
            **check.counts,
            "worst_budget_surplus_share": check.worst_budget,
        },
        "efficiency": [
            _row(truthful, "truthful"),
            _row(hill, "hill climber"),
        ],
    }

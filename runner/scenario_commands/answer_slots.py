"""``train``, ``evaluate``, ``compare`` and ``audit`` of the ``answer_slots`` scenario.

- ``train``: one PPO policy shared by the advertisers of
  :class:`attn_env.scenarios.answer_env.AnswerSlotsEnv` (its bid factor per
  mechanism and quality weight), kept by its validation score: minus the mean
  best-response gain of one deviating advertiser (0 at an equilibrium).
- ``evaluate``: the policy, truthful bidding and the scenario's learner (damped
  best response, :func:`attn_env.scenarios.answer_slots.learn_factor`) on the
  same held-out episodes of every mechanism and quality weight; paired.
- ``compare``: configs on the same markets (same seed and draw settings), row by
  row (mechanism, quality weight), paired over markets.
- ``audit``: incentives (the best response of one advertiser against truthful
  others, per market and as a common factor), invariants on the run's markets
  (attention conserved, IR, monotone allocation, no negative payment) and the
  exposure of sponsored vs organic content.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from attn_env.errors import UserError
from runner.scenario_commands import paired

__all__ = ["audit", "compare", "evaluate", "train", "train_summary"]

SCENARIO = "answer_slots"
VALIDATION, HELD_OUT, AUDIT = 7_000_001, 7_000_002, 7_000_003
"Seed-sequence tags of validation, held-out and audit markets (never training's)."
EVALUATED = ("advertiser_utility", "revenue", "quality", "sponsored_share", "br_gain")
"Per-episode measures ``evaluate`` pairs."
SHOWN = (*EVALUATED, "bid_factor")
"Per-episode measures of ``evaluate``'s rows (with ``br_gain``)."
COMPARED = (
    "revenue",
    "advertiser_welfare",
    "advertiser_utility",
    "quality",
    "sponsored_share",
)
"Per-market measures ``compare`` pairs."
AUDIT_FACTORS = np.concatenate([np.round(np.arange(0.0, 2.001, 0.05), 10), [3.0, 10.0]])
"Bid factors the audit's deviating advertiser tries (0 .. 2 by 0.05, 3, 10)."
TRUTHFUL = int(np.flatnonzero(AUDIT_FACTORS == 1.0)[0])
"Index of factor 1 in :data:`AUDIT_FACTORS`."
TOLERANCE = 0.01
"A best-response gain up to this (per market) counts as truthful bidding."


def seeds_of(tag: int, config: Any, n: int) -> list[int]:
    """``n`` episode seeds of kind ``tag`` (validation, held-out) for ``config``."""
    return [
        int(s) for s in np.random.SeedSequence([tag, config.seed]).generate_state(n)
    ]


def _means(played: dict[str, NDArray]) -> dict[str, dict[str, float]]:
    return {k: paired(v) for k, v in played.items()}


def validation_scores(config: Any, source: Any, policy: Any) -> dict[str, float]:
    """The policy on the validation episodes of every mechanism and quality weight:
    ``score`` = minus the mean best-response gain; mean utility, revenue, quality."""
    from attn_env.scenarios.answer_env import AnswerSlotsEnv
    from attn_env.scenarios.answer_play import contexts, play

    env = AnswerSlotsEnv(config, source)
    seeds = seeds_of(VALIDATION, config, config.train.eval_episodes)
    runs = [play(env, policy, m, w, seeds, True) for m, w in contexts(config)]
    mean = {k: float(np.mean([r[k].mean() for r in runs])) for k in runs[0]}
    return {
        "score": -mean["br_gain"],
        "br_gain": mean["br_gain"],
        "advertiser_utility": mean["advertiser_utility"],
        "revenue": mean["revenue"],
        "quality": mean["quality"],
        "bid_factor": mean["bid_factor"],
    }


def train(config: Any, out: str | Path, progress: bool = True) -> dict[str, Any]:
    """Train the advertisers' shared policy into run folder ``out``."""
    from attn_env.scenarios.answer_env import AnswerSlotsEnv
    from attn_env.scenarios.answer_slots import Source, validate
    from training.scenario_ppo import train_shared_ppo

    config = validate(config)
    source = Source(config.n_segments)
    return train_shared_ppo(
        SCENARIO,
        config,
        config.train,
        AnswerSlotsEnv(config, source),
        lambda policy: validation_scores(config, source, policy),
        out,
        progress,
    )


def train_summary(record: dict[str, Any]) -> str:
    """The line ``train`` prints: steps, time, and the kept policy's validation."""
    from training.scenario_ppo import kept_point

    kept, point = record["kept"]["timesteps"], kept_point(record)
    return (
        f"trained {record['timesteps']:,} advertiser-steps in "
        f"{record['seconds']:.0f} s; kept the policy at {kept:,} steps: "
        f"best-response gain {point['br_gain']:.4f}, mean bid factor "
        f"{point['bid_factor']:.3f} (validation)"
    )


def evaluate(config: Any, policy: str | Path, episodes: int | None) -> dict[str, Any]:
    """The trained policy, truthful bidding and the learner on held-out episodes.

    Every (mechanism, quality weight) of ``config`` is played by each bidder on the
    same seeds; differences are paired over episodes. ``summary`` averages each
    episode over the contexts (the same seeds in every context).
    """
    from attn_env.scenarios.answer_env import AnswerSlotsEnv
    from attn_env.scenarios.answer_play import constant, contexts, play
    from attn_env.scenarios.answer_slots import Source, learn_factor, validate
    from training.scenario_ppo import load_shared_policy

    config = validate(config)
    n = episodes or 4 * config.train.eval_episodes
    if n < 2:
        raise UserError(f"evaluate needs at least 2 episodes, got {n}")
    bidder = load_shared_policy(policy, SCENARIO)
    source = Source(config.n_segments)
    env = AnswerSlotsEnv(config, source)
    seeds = seeds_of(HELD_OUT, config, n)
    rows, diffs = [], []
    per_kind: dict[str, list[dict[str, NDArray]]] = {}
    for k, (mech, lam) in enumerate(contexts(config)):
        rng = np.random.default_rng([config.seed, k])
        factor, _ = learn_factor(source, mech, lam, config, rng)
        played = {
            "policy": play(env, bidder, mech, lam, seeds, True),
            "truthful": play(env, constant(1.0), mech, lam, seeds, True),
            "learner": play(env, constant(factor), mech, lam, seeds, True),
        }
        for kind, p in played.items():
            per_kind.setdefault(kind, []).append(p)
            rows.append(
                {
                    "label": f"{kind} {mech} lambda={lam:g}",
                    "bidders": kind,
                    "mechanism": mech,
                    "quality_weight": lam,
                    **{m: paired(p[m]) for m in SHOWN},
                }
            )
        diffs.extend(
            {
                "label": f"policy - {base} {mech} lambda={lam:g}",
                **{m: paired(played["policy"][m] - played[base][m]) for m in EVALUATED},
            }
            for base in ("truthful", "learner")
        )
    summary = {
        kind: {m: paired(np.mean([r[m] for r in runs], axis=0)) for m in EVALUATED}
        for kind, runs in per_kind.items()
    }
    return {
        "scenario": SCENARIO,
        "policy": str(policy),
        "episodes": n,
        "markets_per_episode": config.env_steps * config.env_markets,
        "summary": summary,
        "by_bidders": rows,
        "differences": diffs,
    }


DRAW_KEYS = ("seed", "markets", "n_segments", "n_organic", "n_ads")
"Settings that fix the markets: ``compare`` needs them equal in every config."


def compare(designs: list[tuple[str, Any]]) -> dict[str, Any]:
    """Each config's rows on the same markets; paired differences against the
    first config's row of the same mechanism and quality weight."""
    from attn_env.scenarios.answer_slots import Source, rows_of, validate

    base_cfg = validate(designs[0][1])
    for label, c in designs[1:]:
        validate(c)
        for key in DRAW_KEYS:
            if getattr(c, key) != getattr(base_cfg, key):
                raise UserError(
                    f"compare needs the same markets: {key} is "
                    f"{getattr(c, key)!r} in {label!r} but "
                    f"{getattr(base_cfg, key)!r} in {designs[0][0]!r}"
                )
    source = Source(base_cfg.n_segments)
    mk = source.draw(np.random.default_rng(base_cfg.seed), base_cfg.markets, base_cfg)
    rows, diffs, base = [], [], {}
    for d, (label, c) in enumerate(designs):
        for head, per_market, _ in rows_of(c, source, mk):
            key = (head["mechanism"], head["quality_weight"])
            name = f"{head['mechanism']} lambda={head['quality_weight']:g}"
            rows.append({"label": f"{label}: {name}", **head, **_means(per_market)})
            if d == 0:
                base[key] = per_market
            elif key in base:
                diffs.append(
                    {
                        "label": f"{label} - {designs[0][0]}: {name}",
                        **{m: paired(per_market[m] - base[key][m]) for m in COMPARED},
                    }
                )
    return {
        "scenario": SCENARIO,
        "markets": base_cfg.markets,
        "designs": rows,
        "differences": diffs,
    }


def _incentives(config: Any, source: Any) -> list[dict[str, Any]]:
    """Advertiser 0's best response against truthful others, per context."""
    from attn_env.scenarios.answer_play import contexts
    from attn_env.scenarios.answer_slots import deviation_utilities

    rng = np.random.default_rng(np.random.SeedSequence([AUDIT, config.seed]))
    mk = source.draw(rng, config.learner_markets, config)
    out = []
    for mech, lam in contexts(config):
        u = deviation_utilities(mech, mk, mk.value, (1.0, *AUDIT_FACTORS), lam, config)
        gain = u[1:] - u[0]  # [factors, markets]
        mean = gain.mean(axis=1)
        # no strict gain: truthful (factor 1) is the best common factor
        best = int(np.argmax(mean)) if mean.max() > 1e-12 else TRUTHFUL
        per_market = np.maximum(gain.max(axis=0), 0.0)
        out.append(
            {
                "label": f"{mech} lambda={lam:g}",
                "mechanism": mech,
                "quality_weight": lam,
                "factor_gain": paired(gain[best]),
                "best_factor": float(AUDIT_FACTORS[best]),
                "market_gain_max": float(per_market.max()),
                "market_gain_mean": float(per_market.mean()),
                "markets_over_tolerance": int((per_market > TOLERANCE).sum()),
            }
        )
    return out


def _invariants(config: Any, source: Any, mk: Any) -> list[dict[str, Any]]:
    """Truthful bidders on the run's markets: each invariant's largest violation."""
    from attn_env.scenarios.answer_play import contexts
    from attn_env.scenarios.answer_slots import clear

    out = []
    for mech, lam in contexts(config):
        res = clear(mech, mk, mk.value, lam, config)
        up = mk.value.copy()
        up[:, 0] *= 1.1
        res_up = clear(mech, mk, up, lam, config)
        x, pay = res["x"], res["pay"]
        total = x.sum(axis=1) + res["organic_share"]
        v = {
            "attention_conservation": float(np.abs(total - mk.alpha.sum(axis=1)).max()),
            "negative_attention": float(max(0.0, -x.min())),
            "negative_payment": float(max(0.0, -pay.min())),
            "individual_rationality": float(max(0.0, (pay - mk.value * x).max())),
            "own_allocation_falls": float(
                max(0.0, (x[:, 0] - res_up["x"][:, 0]).max())
            ),
            "others_allocation_rises": float(
                max(0.0, (res_up["x"][:, 1:] - x[:, 1:]).max())
            ),
            "quality_out_of_range": float(
                max(0.0, -res["quality"].min(), res["quality"].max() - 1.0)
            ),
        }
        out.append(
            {
                "label": f"{mech} lambda={lam:g}",
                **v,
                "holds": all(val <= 1e-9 for val in v.values()),
            }
        )
    return out


def _exposure(config: Any, mk: Any) -> list[dict[str, Any]]:
    """Truthful bidders: the share of attention sponsored passages take, and the
    relevance per unit of attention of sponsored vs organic content."""
    from attn_env.scenarios.answer_play import contexts
    from attn_env.scenarios.answer_slots import clear

    out = []
    for mech, lam in contexts(config):
        res = clear(mech, mk, mk.value, lam, config)
        ad_rel = (res["x"] * mk.r_ad).sum(axis=1)
        org_rel = res["quality"] - ad_rel
        x_ad = res["x"].sum(axis=1)
        rel_ad = float(ad_rel.sum() / x_ad.sum()) if x_ad.sum() > 0 else float("nan")
        org = res["organic_share"].sum()
        rel_org = float(org_rel.sum() / org) if org > 0 else float("nan")
        out.append(
            {
                "label": f"{mech} lambda={lam:g}",
                "sponsored_share": paired(x_ad),
                "sponsored_relevance": rel_ad,
                "organic_relevance": rel_org,
                "relevance_gap": rel_org - rel_ad,
            }
        )
    return out


def audit(config: Any) -> dict[str, Any]:
    """Incentives, invariants and exposure of the scenario's mechanisms."""
    from attn_env.scenarios.answer_slots import Source, validate

    config = validate(config)
    source = Source(config.n_segments)
    mk = source.draw(np.random.default_rng(config.seed), config.markets, config)
    incentives = _incentives(config, source)
    invariants = _invariants(config, source, mk)
    truthful = {
        m: all(
            r["market_gain_max"] <= TOLERANCE for r in incentives if r["mechanism"] == m
        )
        for m in config.mechanisms
    }
    return {
        "scenario": SCENARIO,
        "markets": config.markets,
        "incentive_markets": config.learner_markets,
        "tolerance": TOLERANCE,
        "truthful_is_a_best_response": truthful,
        "invariants_hold": all(r["holds"] for r in invariants),
        "incentives": incentives,
        "invariants": invariants,
        "exposure": _exposure(config, mk),
    }

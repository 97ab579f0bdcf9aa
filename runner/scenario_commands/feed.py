"""``train``, ``evaluate``, ``compare`` and ``audit`` of the ``feed`` scenario.

- ``train``: one PPO policy shared by the creators and advertisers of
  :class:`attn_env.scenarios.feed_env.FeedEnv` (``train_shared_ppo``); its
  validation score is the mean utility an agent gets bidding with the policy
  while every other agent bids truthfully (a best response's score, not the
  agents' joint payoff, which shading together would raise).
- ``evaluate``: on held-out episodes, every agent bidding with the policy,
  truthfully, and with the scenario's learner (``bidders: learner``'s
  epsilon-greedy over the bid levels, with the config's ``feedback``); and each
  agent alone with the policy against truthful others. Paired over episodes.
- ``compare``: each config's rule (its first mechanism, user model and fairness
  weight, with its bidders) over the same populations, paired against the
  first: what a fairness constraint costs in welfare and revenue.
- ``audit``: per rule of the config, the best-response gain of one deviating
  agent against truthful others (bid factors 0 .. 2), the invariants of every
  session (individual rationality, no item twice, attention within the budget,
  payment at most bid x attention), and the amortised exposure fairness.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from attn_env.errors import UserError
from runner.scenario_commands import paired

__all__ = ["audit", "compare", "evaluate", "train", "train_summary"]

VALIDATION = 1_000_000
"Seeds of validation episodes start here (training's come from train.seed)."
HELD_OUT = 2_000_000
"Seeds of ``evaluate``'s held-out episodes start here."
DEVIATIONS = tuple(np.round(np.linspace(0.0, 2.0, 21), 2))
"Bid factors a deviating agent tries in the audit."
AUDIT_POPULATIONS = 64
"At most this many of the config's populations in the audit."
AUDIT_SESSIONS = 40
"At most this many sessions per population in the audit."


# --- profiles on the env ---------------------------------------------------------


def _truthful(obs: NDArray[np.float32], env: Any) -> NDArray[np.float64]:
    return np.ones(len(env.possible_agents))


def _policy_chooser(policy: Any) -> Any:
    def choose(obs: NDArray[np.float32], env: Any) -> NDArray[np.float64]:
        a = np.asarray(policy(obs), dtype=np.float64).reshape(len(obs), -1)[:, 0]
        return np.clip(a, 0.0, 2.0)

    return choose


def _alone(policy: Any, env: Any, seed: int) -> NDArray[np.float64]:
    """``[N]`` each agent's mean utility bidding with ``policy`` while every
    other agent bids truthfully (one episode per agent, the same seed)."""
    choose = _policy_chooser(policy)
    out = np.zeros(len(env.possible_agents))
    for i in range(len(out)):

        def one(obs: NDArray[np.float32], e: Any, i: int = i) -> NDArray[np.float64]:
            f = np.ones(len(obs))
            f[i] = choose(obs[i : i + 1], e)[0]
            return f

        out[i] = _episode(env, seed, one)["utility"][i]
    return out


def _episode(env: Any, seed: int, choose: Any, **kw: Any) -> dict[str, Any]:
    from attn_env.scenarios.feed_env import episode

    return episode(env, seed, choose, **kw)


def _learner(env: Any, seed: int) -> dict[str, Any]:
    """One episode of the scenario's learners (one bandit per agent, its arms
    the config's levels, updated on the step's mean utility)."""
    from attn_env.scenarios.feed import Bandit, _agent_levels

    c = env.config
    nc = c.n_creators
    rng = np.random.default_rng([seed, 3])
    promo = Bandit(c.promo_levels, 1, nc, c.explore)
    ads = Bandit(c.ad_levels, 1, c.n_advertisers, c.explore)
    full = c.feedback == "counterfactual"
    levels = _agent_levels(c) if full else None

    def choose(obs: NDArray[np.float32], e: Any) -> NDArray[np.float64]:
        return np.concatenate([promo.choose(rng), ads.choose(rng)], axis=1)[0]

    def learn(step: Any) -> None:
        on = np.ones((1, nc), dtype=bool)
        on_a = np.ones((1, c.n_advertisers), dtype=bool)
        if full:
            d = step.deviation[None]
            promo.update_all(on, d[:, :nc, : promo.levels.size])
            ads.update_all(on_a, d[:, nc:, : ads.levels.size])
        else:
            promo.update(on, step.utility[None, :nc])
            ads.update(on_a, step.utility[None, nc:])

    res = _episode(env, seed, choose, levels=levels, learn=learn)
    res["final_factor"] = np.concatenate([promo.final(rng), ads.final(rng)], axis=1)[0]
    return res


def _by_role(x: NDArray[np.float64], nc: int) -> tuple[float, float]:
    return float(x[:nc].mean()), float(x[nc:].mean())


# --- train -------------------------------------------------------------------------


def validate_policy(config: Any, env: Any, policy: Any) -> dict[str, float]:
    """The policy's validation scores on ``train.eval_episodes`` episodes."""
    tc = config.train
    nc = config.n_creators
    score, truth, fc, fa = [], [], [], []
    choose = _policy_chooser(policy)
    for k in range(tc.eval_episodes):
        seed = VALIDATION + k
        score.append(_alone(policy, env, seed).mean())
        truth.append(_episode(env, seed, _truthful)["utility"].mean())
        f = _episode(env, seed, choose)["factor"]
        c_, a_ = _by_role(f, nc)
        fc.append(c_)
        fa.append(a_)
    return {
        "score": float(np.mean(score)),
        "truthful_score": float(np.mean(truth)),
        "creator_factor": float(np.mean(fc)),
        "ad_factor": float(np.mean(fa)),
    }


def train(config: Any, out: str | Path, progress: bool = True) -> dict[str, Any]:
    """Train the shared policy of the feed's agents into run folder ``out``."""
    from attn_env.scenarios.feed import load
    from attn_env.scenarios.feed_env import FeedEnv
    from training.scenario_ppo import train_shared_ppo

    feeds = load(config)
    train_env = FeedEnv(dataclasses.replace(config, seed=config.train.seed), feeds)
    val_env = FeedEnv(config, feeds)
    return train_shared_ppo(
        "feed",
        config,
        config.train,
        train_env,
        lambda policy: validate_policy(config, val_env, policy),
        out,
        progress,
    )


def train_summary(record: dict[str, Any]) -> str:
    """The line ``train`` prints: steps, time, and the kept policy's validation."""
    from training.scenario_ppo import kept_point

    last = kept_point(record)
    return (
        f"trained {record['timesteps']:,} agent-sessions in {record['seconds']:.0f} s; "
        f"kept the policy at {record['kept']['timesteps']:,}: validation utility "
        f"against truthful others {last['score']:.4f} "
        f"(truthful {last['truthful_score']:.4f}); bid factors: advertisers "
        f"{last['ad_factor']:.3f}, creators {last['creator_factor']:.3f}"
    )


# --- evaluate ----------------------------------------------------------------------


def evaluate(config: Any, policy: str | Path, episodes: int | None) -> dict[str, Any]:
    """The trained policy against truthful bidding and the scenario's learner
    on the same held-out episodes (paired differences over episodes)."""
    from attn_env.scenarios.feed_env import FeedEnv
    from training.scenario_ppo import load_shared_policy

    n_ep = episodes or max(config.train.eval_episodes, 8)
    pol = load_shared_policy(policy, "feed")
    env = FeedEnv(config)
    nc = config.n_creators
    per: dict[str, dict[str, list[float]]] = {}
    keys = ("creator_utility", "ad_utility", "revenue", "user_welfare", "fairness_gap")
    for k in range(n_ep):
        seed = HELD_OUT + k
        runs = {
            "policy": _episode(env, seed, _policy_chooser(pol)),
            "truthful": _episode(env, seed, _truthful),
            "learner": _learner(env, seed),
        }
        alone = _alone(pol, env, seed)
        for name, res in runs.items():
            row = per.setdefault(name, {})
            cu, au = _by_role(res["utility"], nc)
            cf, af = _by_role(res.get("final_factor", res["factor"]), nc)
            vals = {
                "creator_utility": cu,
                "ad_utility": au,
                "revenue": res["revenue"],
                "user_welfare": res["user_welfare"],
                "fairness_gap": res["fairness_gap"],
                "creator_factor": cf,
                "ad_factor": af,
            }
            for key, v in vals.items():
                row.setdefault(key, []).append(v)
        truth = runs["truthful"]["utility"]
        ca, aa = _by_role(alone - truth, nc)
        per.setdefault("alone", {}).setdefault("creator_gain", []).append(ca)
        per["alone"].setdefault("ad_gain", []).append(aa)
    base = {k: np.array(per["truthful"][k]) for k in keys}
    by = {
        name: {k: paired(np.array(v)) for k, v in per[name].items()}
        for name in ("policy", "learner", "truthful")
    }
    diffs = [
        {
            "label": f"{name} - truthful",
            **{k: paired(np.array(per[name][k]) - base[k]) for k in keys},
        }
        for name in ("policy", "learner")
    ]
    return {
        "scenario": "feed",
        "policy": str(policy),
        "mechanism": env.rule,
        "user_model": env.model,
        "fairness_weight": env.gamma,
        "episodes": n_ep,
        "by_bidders": by,
        "differences": diffs,
        "alone_against_truthful": {
            "creator_gain": paired(np.array(per["alone"]["creator_gain"])),
            "ad_gain": paired(np.array(per["alone"]["ad_gain"])),
        },
    }


# --- compare -----------------------------------------------------------------------

COMPARED = ("user_welfare", "revenue", "advertiser_value", "creator_exposure")
"Per-population measures that ``compare`` pairs (and the fairness gap)."


def _design(config: Any) -> tuple[str, str, float]:
    from attn_env.scenarios.feed import BASE

    rule = config.mechanisms[0]
    gamma = float(config.fairness_weights[0]) if rule in BASE else 0.0
    return config.user_models[0], rule, gamma


def compare(designs: list[tuple[str, Any]]) -> dict[str, Any]:
    """Each design's rule over the same populations, paired against the first."""
    from attn_env.scenarios.feed import draw, load, run, validate

    shape = None
    rows, per = [], []
    for i, (label, config) in enumerate(designs):
        c = validate(config)
        here = (c.seed, c.populations, c.sessions)
        if shape is not None and here != shape:
            raise UserError(
                f"compare needs the same seed, populations and sessions in every "
                f"config; {label!r} has {here}, the first {shape}"
            )
        shape = here
        feeds = load(c)
        model, rule, gamma = _design(c)
        res = run(
            feeds,
            draw(feeds, c),
            c,
            rule,
            gamma,
            model,
            np.random.default_rng([c.seed, i]),
        )
        m = {k: res["metrics"][k] for k in COMPARED}
        m["fairness_gap"] = res["gap_curve"][-1]
        per.append(m)
        row: dict[str, Any] = {
            "label": label,
            "mechanism": rule,
            "user_model": model,
            "fairness_weight": gamma,
            "bidders": c.bidders,
        }
        row.update({k: paired(v[np.isfinite(v)]) for k, v in m.items()})
        rows.append(row)
    diffs = []
    for (label, _), m in zip(designs[1:], per[1:], strict=True):
        entry: dict[str, Any] = {"label": label}
        for k, v in m.items():
            d = v - per[0][k]
            entry[k] = paired(d[np.isfinite(d)])
        diffs.append(entry)
    return {"scenario": "feed", "designs": rows, "differences": diffs}


# --- audit -------------------------------------------------------------------------


def best_factor(dev: NDArray[np.float64]) -> NDArray[np.float64]:
    """``[...]`` the best of :data:`DEVIATIONS` for utilities ``dev [..., L]``;
    among factors within ``1e-9`` (relative) of the best, the one nearest 1
    (truthful), so an agent indifferent between bids is not called a shader."""
    f = np.asarray(DEVIATIONS)
    top = dev.max(axis=-1, keepdims=True)
    tied = dev >= top - 1e-9 * (1.0 + np.abs(top))
    return f[np.where(tied, -np.abs(f - 1.0), -np.inf).argmax(axis=-1)]


def audit(config: Any) -> dict[str, Any]:
    """Incentives, invariants and exposure fairness of each rule of ``config``."""
    from attn_env.scenarios.feed import (
        BASE,
        allocate,
        deviations,
        draw,
        head_tail,
        load,
        run,
        validate,
    )
    from attn_env.scenarios.feed_rules import (
        budget_cut,
        exposure,
        fair_bonus,
        item_exposure,
    )

    c = validate(
        dataclasses.replace(
            config,
            populations=min(config.populations, AUDIT_POPULATIONS),
            sessions=min(config.sessions, AUDIT_SESSIONS),
            bidders="truthful",
        )
    )
    feeds = load(c)
    d = draw(feeds, c)
    nc, p = c.n_creators, c.populations
    n = feeds.rel.shape[2]
    levels = np.tile(np.asarray(DEVIATIONS), (n, 1))
    one = DEVIATIONS.index(1.0)
    rules, invariants = [], []
    for model in c.user_models:
        for rule in c.mechanisms:
            gamma = float(c.fairness_weights[0]) if rule in BASE else 0.0
            dev = np.zeros((p, n, len(DEVIATIONS)))
            took = np.zeros((p, n))
            viol = {"ir": 0, "repeat": 0, "budget": 0, "overpay": 0}
            cum_e = np.zeros((p, nc))
            cum_u = np.zeros((p, nc))
            for s in range(c.sessions):
                q = d.query[s]
                r = feeds.rel[d.cat, q]
                value = d.theta * r
                pos = feeds.pos[q]
                budget = d.budget[s]
                bonus = fair_bonus(cum_e, cum_u, gamma) if rule in BASE else 0 * cum_e
                w = budget_cut(pos, budget)
                order, price = allocate(rule, r, value, w, bonus, c)
                x = exposure(model, pos, order, r, budget, c.cascade_stop)
                got = item_exposure(order, x, n)
                paid = item_exposure(order, price * x, n)
                viol["ir"] += int((value * got - paid < -1e-9).sum())
                viol["overpay"] += int((paid > value * got + 1e-9).sum())
                viol["budget"] += int((x.sum(axis=1) > budget + 1e-9).sum())
                for row in order:
                    kept = row[row >= 0]
                    viol["repeat"] += int(len(set(kept.tolist())) != len(kept))
                dev += deviations(
                    rule, model, r, value, value, pos, budget, bonus, c, levels
                )
                took += r > 0
                cum_e += got[:, :nc]
                cum_u += r[:, :nc]
            dev /= c.sessions
            gain = dev.max(axis=2) - dev[:, :, one]  # [P, N] per session
            best = best_factor(dev)
            on = took > 0
            res = run(feeds, d, c, rule, gamma, model, np.random.default_rng(c.seed))
            gap = res["gap_curve"][-1]
            ht = head_tail(res["cum_exposure"], res["cum_merit"])
            label = f"{model} {rule} {gamma:g}"
            invariants.append({"label": label, **viol})
            rules.append(
                {
                    "label": label,
                    "best_response_gain_ad": paired(gain[:, nc:][on[:, nc:]]),
                    "best_response_gain_creator": paired(gain[:, :nc][on[:, :nc]]),
                    "largest_gain": float(gain.max()),
                    "best_response_factor_ad": paired(best[:, nc:][on[:, nc:]]),
                    "best_response_factor_creator": paired(best[:, :nc][on[:, :nc]]),
                    "fairness_gap": paired(gap[np.isfinite(gap)]),
                    "head_tail_treatment": paired(ht[np.isfinite(ht)]),
                }
            )
    return {
        "scenario": "feed",
        "populations": p,
        "sessions": c.sessions,
        "deviation_factors": list(DEVIATIONS),
        "rules": rules,
        "invariants": invariants,
    }

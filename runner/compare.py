"""``compare``: market designs side by side, on common random numbers.

Every design (an experiment config) is played for the same episodes from the
same seed, all episodes at once (``num_envs = episodes``), so every market's
values are drawn at reset, before any mechanism draws a tie-break from the
shared stream: designs whose markets have the same shape (buyers, sellers,
slots, valuation source, value ranges, rounds) then play *the same* value draws.
Differences against the first design are paired episode by episode (common
random numbers), which removes the variance the designs share; the pairing is
checked, not assumed: it holds where the logs' draw fingerprints
(:meth:`attn_env.market_log.MarketLog.draws`) are equal. Designs of different
shapes (another ``n_buyers``, say) draw different values; their differences are
unpaired, with Welch's standard error (``attn_env.estimates``).

Each figure is a ratio of episode totals with its standard error over episodes;
intervals are Student t at ``confidence``.

A design with bidder classes (``env.value_ranges`` / ``solve.classes``) or a
CRRA utility also reports its ``utility`` and, per class, its buyers' value
range and mean utility per episode (in the rewards' utility) with its
standard error; ``--behaviour equilibrium`` seats each buyer at its class's
equilibrium.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from attn_env.config import AgentSpec, ExperimentConfig
from attn_env.errors import UserError
from attn_env.estimates import Estimate, difference
from attn_env.figures import new_figure, save_png
from attn_env.market_log import MarketLog
from runner.seats import POLICY
from runner.simulate import play_log

__all__ = ["BEHAVIOURS", "FIGURES", "compare", "plot_compare", "with_behaviour"]

BEHAVIOURS = ("truthful", "equilibrium", POLICY)
"What ``--behaviour`` may put in every seat (``policy`` takes a run folder)."

FIGURES = (
    "revenue",
    "efficiency",
    "welfare",
    "budget_surplus",
    "mean_price",
    "mean_clearing_price",
)
"The figures compared (keys of :meth:`MarketLog.estimates`)."

# the env options that fix what a market draws (to say why two designs differ)
_SHAPE = (
    "n_buyers",
    "n_sellers",
    "n_slots",
    "valuation",
    "valuation_params",
    "value_dist",
    "value_low",
    "value_high",
    "cost_low",
    "cost_high",
    "rounds",
    "redraw",
    "value_ranges",
)


def with_behaviour(
    config: ExperimentConfig, behaviour: str | None, policy: str | Path | None = None
) -> ExperimentConfig:
    """``config`` with every seat (buyers and sellers) playing ``behaviour``.

    Args:
        config: the design.
        behaviour: ``None`` (the config's own agents), ``truthful``,
            ``equilibrium`` (``kind: equilibrium``, the numerical BNE) or
            ``policy`` (the trained run in ``policy`` in every seat).
        policy: the run folder, for ``policy`` only.
    """
    if behaviour is None:
        return config
    if behaviour not in BEHAVIOURS:
        raise UserError(
            f"unknown behaviour {behaviour!r}; known: {', '.join(BEHAVIOURS)}"
        )
    if (behaviour == POLICY) != (policy is not None):
        raise UserError(
            f"behaviour {behaviour!r}: a run folder goes with 'policy' only, got "
            f"{policy!r}"
        )
    if behaviour == POLICY:
        if not Path(policy).is_dir():
            raise UserError(
                f"behaviour policy: run folder {str(policy)!r} does not exist; give "
                "the --out folder of `attn-market train`"
            )
        spec = AgentSpec(POLICY, {"path": str(policy)})
    else:
        spec = AgentSpec(behaviour)
    return dataclasses.replace(config, agents={"buyer": spec, "seller": spec})


def compare(
    designs: Sequence[tuple[str, ExperimentConfig]],
    behaviour: str | None = None,
    policy: str | Path | None = None,
    episodes: int | None = None,
    seed: int | None = None,
    confidence: float = 0.95,
    progress: bool = False,
) -> dict[str, Any]:
    """Play every design on the same episodes and difference it against the first.

    Args:
        designs: ``(name, config)`` pairs, the baseline first; at least two.
        behaviour, policy: as :func:`with_behaviour` (``None``: each config's
            own agents).
        episodes: episodes per design (default: the first config's).
        seed: seed of every design (default: the first config's).
        confidence: level of the difference intervals.
        progress: progress bars on stderr.

    Returns:
        ``designs``: per design ``name``, ``mechanism``, ``agent_kinds`` and each
        of :data:`FIGURES` with its ``_se``; ``differences``: per later design
        ``design``, ``against``, ``paired``, ``pairing`` (why or why not) and per
        figure ``diff``, ``se``, ``se_unpaired``, ``df``, ``ci`` ``[low,
        high]``; and ``episodes``, ``seed``, ``behaviour``, ``confidence``.
    """
    if len(designs) < 2:
        raise UserError(
            f"compare needs at least two designs (the first is the baseline), got "
            f"{len(designs)}"
        )
    base = designs[0][1]
    seed = base.seed if seed is None else int(seed)
    episodes = base.episodes if episodes is None else int(episodes)
    runs: list[tuple[str, ExperimentConfig, MarketLog, dict[str, Any]]] = []
    for name, config in designs:
        config = dataclasses.replace(
            with_behaviour(config, behaviour, policy), seed=seed
        )
        try:
            log, about = play_log(
                config, episodes=episodes, progress=progress, num_envs=episodes
            )
        except UserError as err:
            raise UserError(f"design {name!r}: {err}") from err
        runs.append((name, config, log, about))

    ests = [log.estimates() for _, _, log, _ in runs]
    rows = []
    for (name, config, log, about), est in zip(runs, ests, strict=True):
        row: dict[str, Any] = {
            "name": name,
            "mechanism": about["mechanism"],
            "agent_kinds": about["agent_kinds"],
        }
        for key in FIGURES:
            row[key], row[f"{key}_se"] = est[key].value, est[key].se
        row.update(_game_rows(config, log))
        rows.append(row)

    base_name, base_config, base_log, _ = runs[0]
    diffs = []
    for (name, config, log, _), est in zip(runs[1:], ests[1:], strict=True):
        why = _unpaired_reason(base_config, config, base_log, log)
        figures = {}
        for key in FIGURES:
            d = difference(est[key], ests[0][key], why is None, confidence)
            figures[key] = {
                "diff": d.diff,
                "se": d.se,
                "se_unpaired": d.se_unpaired,
                "df": d.df,
                "ci": [d.ci_low, d.ci_high],
            }
        diffs.append(
            {
                "design": name,
                "against": base_name,
                "paired": why is None,
                "pairing": "common random numbers" if why is None else why,
                "figures": figures,
            }
        )
    return {
        "designs": rows,
        "differences": diffs,
        "episodes": episodes,
        "seed": seed,
        "behaviour": behaviour if behaviour != POLICY else f"policy {policy}",
        "confidence": confidence,
    }


def _game_rows(config: ExperimentConfig, log: MarketLog) -> dict[str, Any]:
    """``utility`` and ``classes`` (per class: agents, value range, mean utility
    and its se) of a design with classes or a CRRA utility; empty otherwise."""
    env = config.env
    if not env.value_ranges and env.utility.kind == "linear":
        return {}
    utils = log.agent_estimates()["mean_utility"]
    classes = config.solve.classes
    out: dict[str, Any] = {
        "utility": {"kind": env.utility.kind, "rho": env.utility.rho}
    }
    groups = {
        (c.name or f"class_{i}"): list(c.agents) for i, c in enumerate(classes)
    } or {"buyer": [f"buyer_{i}" for i in range(env.n_buyers)]}
    rows = {}
    for cname, members in groups.items():
        est = Estimate(
            float(np.mean([utils[a].value for a in members])),
            np.mean([utils[a].influence for a in members], axis=0),
        )
        low, high = env.value_ranges.get(members[0], [env.value_low, env.value_high])
        rows[cname] = {
            "agents": members,
            "value_range": [float(low), float(high)],
            "mean_utility": est.value,
            "mean_utility_se": est.se,
        }
    out["classes"] = rows
    return out


def _unpaired_reason(
    a: ExperimentConfig, b: ExperimentConfig, log_a: MarketLog, log_b: MarketLog
) -> str | None:
    """``None`` where the two designs played the same draws, else why not.

    The draws decide (a sum of each round's values: equal in every round exactly
    when the markets drew alike); the config says why they differ.
    """
    if np.array_equal(log_a.draws(), log_b.draws()):
        return None
    for key in _SHAPE:
        va, vb = getattr(a.env, key), getattr(b.env, key)
        if va != vb:
            return f"unpaired: {key} differs ({va!r} vs {vb!r}), so the values do"
    return "unpaired: the designs drew different values"


def plot_compare(result: dict[str, Any], path: str | Path, title: str = "") -> Path:
    """Revenue against efficiency, one point per design with +/- 1 se bars (PNG).

    Args:
        result: what :func:`compare` returned.
        path: the PNG to write (atomically).
        title: figure title (default: episodes, seed and behaviour).
    """
    fig, ax = new_figure(figsize=(6.0, 4.5))
    for i, row in enumerate(result["designs"]):
        ax.errorbar(
            row["efficiency"],
            row["revenue"],
            xerr=_bar(row["efficiency_se"]),
            yerr=_bar(row["revenue_se"]),
            fmt="o",
            capsize=3,
            color=f"C{i % 10}",
            label=row["name"]
            if row["name"] == row["mechanism"]
            else f"{row['name']} ({row['mechanism']})",
        )
    ax.set_xlabel("allocative efficiency")
    ax.set_ylabel("revenue per episode")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    behaviour = result["behaviour"] or "each config's agents"
    ax.set_title(
        title
        or f"{result['episodes']} episodes, seed {result['seed']}, {behaviour}; "
        "bars: ±1 se",
        fontsize=9,
    )
    return save_png(fig, path, dpi=110)


def _bar(se: float | None) -> float:
    """An error bar's half-width (0 where the error is undefined)."""
    return se if se is not None and np.isfinite(se) else 0.0

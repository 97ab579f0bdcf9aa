"""``audit``: one integrity report of a config's market.

:func:`audit` gathers, for the market a config describes:

- ``market``: its headline figures as ``simulate`` measures them;
- ``fairness``: exposure fairness by bidder and by vertical
  (:func:`runner.fairness.fairness`) and, in slot markets, the cost of an
  exposure floor (:func:`runner.fairness.floor_costs`);
- ``explain``: the explanation records of market 0 (:func:`runner.explain.explain`);
- ``attacks``: the damage of every attack the mechanism admits, with default
  parameters, against the clean market on common random numbers
  (:func:`runner.attacks.attack_damage`);
- ``detection``: the detectors of :mod:`attn_env.integrity.detect` on up to
  :data:`HISTORY` of the market's rounds: its collusion index,
  each bidder's shill score and the p-value of its winning more than the
  others (fake traffic);
- ``collusion``: with ``qlearn`` bidders in the config, their revenue against
  the competitive one over seeds (:func:`runner.collusion.run_collusion`).

:func:`write_audit` writes the report as ``audit.json``, ``audit.md`` and PNG
figures into a folder, each file atomically.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from attn_env import mechanisms, metrics
from attn_env.config import ExperimentConfig, validate_experiment
from attn_env.fileio import atomic_write_text
from attn_env.integrity.detect import collusion_index, exposure_pvalues, shill_scores
from runner.attacks import ATTACKS, attack_damage, record
from runner.audit_report import audit_markdown, plot_audit
from runner.collusion import run_collusion
from runner.explain import explain
from runner.fairness import fairness, floor_costs
from runner.results import jsonable
from runner.simulate import play

__all__ = ["SECTIONS", "audit", "write_audit"]

SECTIONS = (
    "market",
    "fairness",
    "floor_costs",
    "explain",
    "attacks",
    "detection",
    "collusion",
)
"The keys of an audit report, in order (a section that does not apply is null)."
_MARKET_KEYS = ("efficiency", "revenue", "welfare", "mean_price", "volume")
_DAMAGE_KEYS = ("revenue", "efficiency", "honest_utility")
HISTORY = 5000
"Most rounds of the one market history the detectors read."


def audit(
    config: ExperimentConfig,
    episodes: int | None = None,
    merit: str = "relevance",
    progress: bool = False,
) -> dict[str, Any]:
    """The integrity report of ``config``'s market.

    Args:
        config: the experiment.
        episodes: override ``config.episodes`` in every section.
        merit: what an ad deserves in the fairness section
            (``runner.fairness.MERITS``).
        progress: show progress bars.

    Returns:
        Plain data with the keys :data:`SECTIONS` (``None`` for a section that
        does not apply: ``floor_costs`` outside slot markets, ``collusion``
        without ``qlearn`` bidders), plus ``mechanism``, ``episodes``, ``seed``.
    """
    if episodes is not None:
        config = dataclasses.replace(config, episodes=int(episodes))
        validate_experiment(config)
    mech = mechanisms.name_of(config.env.mechanism)
    fam = mechanisms.family(config.env.mechanism)
    sim = play(config, progress=progress)
    market = {k: sim[k] for k in _MARKET_KEYS}
    market.update({f"{k}_se": sim.get(f"{k}_se") for k in _MARKET_KEYS})
    report: dict[str, Any] = {
        "mechanism": mech,
        "episodes": config.episodes,
        "seed": config.seed,
        "market": market,
        "fairness": fairness(config, merit=merit, progress=progress),
        "floor_costs": (
            floor_costs(config, progress=progress) if fam != "two_sided" else None
        ),
        "explain": explain(config, 0, progress=progress),
        "attacks": _attacks(config, mech),
        "detection": _detection(config, fam),
        "collusion": _collusion(config),
    }
    return report


def _attacks(config: ExperimentConfig, mech: str) -> dict[str, Any]:
    """Damage of each attack the mechanism admits (default parameters).

    An attack the config's agents cannot face (e.g. ``bne`` agents where the
    attack's extra seats leave no analytic equilibrium) is ``{"skipped":
    reason}``.
    """
    out: dict[str, Any] = {}
    for name, (admits, _) in ATTACKS.items():
        if mech not in admits:
            continue
        try:
            r = attack_damage(config, name, episodes=max(config.episodes, 2))
        except ValueError as err:
            out[name] = {"skipped": " ".join(str(err).split())}
            continue
        out[name] = {
            "params": r["params"],
            "crn": r["crn"],
            "damage": {k: r["damage"][k] for k in _DAMAGE_KEYS},
            "clean": {k: r["clean"][k] for k in _DAMAGE_KEYS},
            "attacked": {k: r["attacked"][k] for k in _DAMAGE_KEYS},
        }
    return out


def _detection(config: ExperimentConfig, fam: str) -> dict[str, Any]:
    """The detectors on the market's rounds, as a platform would see them.

    Up to :data:`HISTORY` market rounds: one episode of each of up to
    ``HISTORY // rounds`` markets, pooled.

    ``collusion_index``: mean clearing price against the competitive one (the
    lower end of each round's Walrasian interval; in slot markets the top
    slot's) and the collusive one (the reserve): 0 competitive, 1 collusive,
    < 0 above competitive (matchings: ``None``). ``shill_score`` by bidder
    (position auctions): share of rounds it set a winner's price from just
    under that winner's bid. ``exposure_pvalue`` by bidder (slot markets):
    one-sided p-value of winning more rounds than the bidders' mean.
    """
    markets = max(1, min(config.episodes, HISTORY // config.env.rounds))
    rec = record(config, markets, 1)
    n = rec["n_buyers"]
    names = rec["agents"][:n]
    # every market's episode, one after another: [markets * rounds, ...]
    keys = ("bid", "payment", "alloc", "value", "alpha", "clearing_price")
    hist = {k: rec[k].reshape(-1, *rec[k].shape[2:]) for k in keys}
    value, price = hist["value"], hist["clearing_price"]
    bv = value[:, :n]
    out: dict[str, Any] = {"rounds": int(price.size), "collusion_index": None}
    reserve = float(config.env.mechanism_params.get("reserve", 0.0))
    low = None  # a matching's mean price has no single Walrasian interval
    if fam == "two_sided":
        low = metrics.walrasian_interval(bv, costs=value[:, n:])[0]
    elif fam == "one_sided":
        low = metrics.walrasian_interval(bv, alpha=hist["alpha"])[0]
    if low is not None:
        out["collusion_index"] = collusion_index(price, low, reserve)
    if fam == "one_sided":
        b, pay, alloc = (hist[k][:, :n] for k in ("bid", "payment", "alloc"))
        out["shill_score"] = dict(zip(names, shill_scores(b, pay, alloc), strict=True))
    if fam != "two_sided":
        p = exposure_pvalues(hist["alloc"][:, :n])
        out["exposure_pvalue"] = dict(zip(names, p, strict=True))
    return out


def _collusion(config: ExperimentConfig) -> dict[str, Any] | None:
    """Learning bidders' revenue over seeds, when the config has ``qlearn`` ones."""
    kinds = {spec.kind for spec in config.agents.values()}
    if "qlearn" not in kinds:
        return None
    r = run_collusion(config)
    keep = ("revenue", "revenue_se", "revenue_ci95", "rounds_to_convergence")
    return {k: r[k] for k in (*keep, "seeds", "warmup", "feedback", "mean_bid")}


def write_audit(report: dict[str, Any], out: str | Path) -> list[Path]:
    """Write ``audit.json``, ``audit.md`` and the figures into folder ``out``.

    Returns:
        The paths written.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    data = jsonable(report)
    paths = [
        atomic_write_text(
            out / "audit.json", json.dumps(data, indent=2, allow_nan=False) + "\n"
        ),
        atomic_write_text(out / "audit.md", audit_markdown(data)),
    ]
    paths += plot_audit(data, out)
    return paths

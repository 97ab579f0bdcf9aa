"""``audit``: one integrity report of a config's market.

:func:`audit` plays the config once as ``simulate`` does (warmup included)
and reads from that run:

- ``market``: its headline figures as ``simulate`` measures them;
- ``fairness``: exposure fairness by bidder and by group of ads
  (:func:`runner.fairness.fairness_of`);
- ``explain``: the explanation records of market 0 (:mod:`runner.explain`);
- ``detection``: the detectors of :mod:`attn_env.integrity.detect` on up to
  :data:`runner.detection.HISTORY` of its market rounds: the collusion index,
  each bidder's shill score and the p-value of its winning more than the
  others (fake traffic).

and adds, from runs of their own:

- ``floor_costs`` (slot markets): the cost of an exposure floor
  (:func:`runner.fairness.floor_costs`);
- ``attacks``: the damage of every attack the mechanism admits, with default
  parameters, against the clean market on common random numbers
  (:func:`runner.attacks.attack_damage`);
- ``collusion``: with ``qlearn`` bidders in the config, their revenue against
  the competitive one over seeds (:class:`runner.collusion.CollusionRecorder`
  in the same play: the warmup is played once).

Configs whose agents learn first (``warmup > 0``) skip ``floor_costs`` and
``attacks``, which would replay the warmup per floor or measure untrained
agents; those sections say so. :func:`write_audit` writes the report as
``audit.json``, ``audit.md`` and PNG figures into a folder, each file
atomically.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from attn_env import mechanisms
from attn_env.config import ExperimentConfig, validate_experiment
from attn_env.fileio import atomic_write_text
from runner.attacks import ATTACKS, attack_damage
from runner.audit_report import audit_markdown, plot_audit
from runner.collusion import CollusionRecorder, collusion_recorder
from runner.detection import DetectionRecorder
from runner.explain import MarketRecorder
from runner.fairness import FairnessRecorder, fairness_of, floor_costs
from runner.results import jsonable
from runner.simulate import play_log

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
        without ``qlearn`` bidders; ``{"skipped": reason}`` for one skipped),
        plus ``mechanism``, ``episodes``, ``seed``.
    """
    if episodes is not None:
        config = dataclasses.replace(config, episodes=int(episodes))
        validate_experiment(config)
    mech = mechanisms.name_of(config.env.mechanism)
    fam = mechanisms.family(config.env.mechanism)
    fair, det = FairnessRecorder(merit), DetectionRecorder()
    market0 = MarketRecorder.for_market(config, 0)
    recorders: list[Any] = [fair, det, market0]
    players, num_envs, collusion = None, None, None
    if "qlearn" in {spec.kind for spec in config.agents.values()}:
        # learning bidders: the one play (warmup included) also measures the
        # collusion over seeds, all seeds in one batch as run_collusion plays
        collusion, players = collusion_recorder(config)
        recorders.append(collusion)
        num_envs = config.episodes
    log, _ = play_log(
        config, players, progress=progress, num_envs=num_envs, recorders=recorders
    )
    sim = log.result()
    market = {k: sim[k] for k in _MARKET_KEYS}
    market.update({f"{k}_se": sim.get(f"{k}_se") for k in _MARKET_KEYS})
    learned = (
        {"skipped": f"the agents learn for warmup = {config.warmup} rounds first"}
        if config.warmup
        else None
    )
    floors = None
    if fam != "two_sided":
        floors = learned or floor_costs(config, progress=progress)
    return {
        "mechanism": mech,
        "episodes": config.episodes,
        "seed": config.seed,
        "market": market,
        "fairness": fairness_of(fair),
        "floor_costs": floors,
        "explain": {**market0.explanation(), "seed": config.seed},
        "attacks": learned or _attacks(config, mech),
        "detection": det.report(),
        "collusion": _collusion(config, collusion),
    }


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


def _collusion(
    config: ExperimentConfig, recorder: CollusionRecorder | None
) -> dict[str, Any] | None:
    """Learning bidders' revenue over seeds (``None`` without ``qlearn`` ones)."""
    if recorder is None:
        return None
    r = recorder.result()
    keep = ("revenue", "revenue_se", "revenue_ci95", "rounds_to_convergence")
    return {
        **{k: r[k] for k in keep},
        "seeds": config.episodes,
        "warmup": config.warmup,
        "feedback": config.env.feedback,
        "mean_bid": r["mean_bid"],
    }


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

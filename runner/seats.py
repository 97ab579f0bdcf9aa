"""A config's agents, one per agent name: the runner turns kinds into players.

Fixed kinds come from ``agents``; ``kind: policy`` loads a trained run
(``training.load_policy``), which follows the agent protocol as it is.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import agents
from attn_env.config import ExperimentConfig
from attn_env.errors import UserError
from attn_env.players import Agent

__all__ = ["POLICY", "build_agent", "build_agents"]

POLICY = "policy"
"The kind of a trained run: ``{kind: policy, params: {path: DIR[, agent: NAME]}}``."
EQUILIBRIUM = "equilibrium"
"The solver's kind: it solves with the config's ``solve:`` options unless given."


def build_agent(
    kind: str,
    params: Mapping[str, Any],
    config: ExperimentConfig,
    name: str | None = None,
) -> Agent:
    """One agent of ``kind`` for ``config``'s market (``policy``: a trained run);
    ``name`` is its seat (an equilibrium agent plays its seat's bidder class)."""
    if kind == POLICY:
        unknown = sorted(set(params) - {"path", "agent"})
        if unknown or "path" not in params:
            raise UserError(
                "kind 'policy' takes params {path: RUN_DIR[, agent: NAME]}, got "
                f"{dict(params)!r}"
            )
        from training import load_policy

        policy = load_policy(params["path"])
        name = params.get("agent")
        return policy.for_agent(name) if name is not None else policy
    if kind == EQUILIBRIUM and "solve" not in params:
        # the config's solve: section (a path's solution is judged by its tolerance)
        params = {**params, "solve": config.solve}
    if kind == EQUILIBRIUM and name is not None and "agent" not in params:
        params = {**params, "agent": name}
    if (
        kind == "bne"
        and config.solve.roi_target is not None
        and "roi_target" not in params
    ):
        params = {**params, "roi_target": config.solve.roi_target}
    return agents.for_market(kind, params, config.env)


def build_agents(
    config: ExperimentConfig,
    names: list[str],
    given: Mapping[str, Agent] | None = None,
) -> dict[str, Agent]:
    """One agent per name: ``given`` ones first, the rest from ``config.agent_spec``.

    Raises:
        ValueError: an agent of kind ``learn`` (only ``train`` plays those), an
            unknown kind or bad parameters (the message names the agent).
    """
    given = dict(given or {})
    unknown = sorted(set(given) - set(names))
    if unknown:
        raise UserError(
            f"agents given for unknown name(s) {', '.join(map(repr, unknown))}; "
            f"the market has: {', '.join(names)}"
        )
    out: dict[str, Agent] = {}
    for name in names:
        if name in given:
            out[name] = given[name]
            continue
        spec = config.agent_spec(name)
        if spec.kind == "learn":
            raise UserError(
                f"agent {name!r} has kind 'learn', which simulate cannot play; train "
                "it with `attn-market train`, then use kind 'policy' with params "
                "{path: RUN_DIR}, or a fixed kind: "
                + ", ".join([*agents.names(), POLICY])
            )
        try:
            out[name] = build_agent(spec.kind, spec.params, config, name)
        except (TypeError, ValueError) as err:
            raise UserError(f"agent {name!r}: {err}") from err
    return out

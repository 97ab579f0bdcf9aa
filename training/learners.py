"""What both trainers share: the learners of a config and the env they train in.

``kind: learn`` agents are grouped into learners (:func:`plan_learners`): one
per role with ``share: role`` (all learning buyers share a policy, all learning
sellers another), one per agent with ``share: none``. Both backends
(``training.sb3``, ``training.rllib``) train them in :func:`training_env` and
write the resolved config with :func:`write_config` into their run folder.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from attn_env.config import ExperimentConfig, make_config
from attn_env.core import MarketSpec
from attn_env.errors import ConfigError
from attn_env.observation import role_of
from training.actions import ActionMap, action_map_for, map_mode
from training.run import CONFIG, RunFolder

if TYPE_CHECKING:  # annotations only: the SB3 side is imported by its trainer
    from training.policy import RolePolicy
    from training.selfplay import SnapshotPool
    from training.vec_adapter import MarketVecEnv

__all__ = ["Learner", "plan_learners", "training_env", "write_config"]


@dataclass
class Learner:
    """One SB3 model and the seats it controls."""

    name: str
    "``buyer``/``seller`` (shared by role) or an agent name (``share: none``)."
    role: str
    seats: list[int]
    "Agent indices of its seats (in ``vector_env.agents`` order)."
    action_map: ActionMap
    seed: int
    model: Any = None
    env: MarketVecEnv | None = None
    frozen: RolePolicy | None = None
    "Its latest policy, as the other learners see it (updated after each chunk)."
    pool: SnapshotPool | None = None

    @property
    def timesteps(self) -> int:
        return int(self.model.num_timesteps) if self.model is not None else 0


def plan_learners(config: ExperimentConfig, agent_names: list[str]) -> list[Learner]:
    """Group the ``kind: learn`` agents into learners (without models yet)."""
    tc = config.train
    learning = [
        i for i, a in enumerate(agent_names) if config.agent_spec(a).kind == "learn"
    ]
    if not learning:
        raise ConfigError(
            "no agent has kind: learn; mark the learners in the config, "
            "e.g. agents: {buyer: {kind: learn}}"
        )
    groups: dict[str, list[int]] = {}
    for i in learning:
        name = agent_names[i]
        key = role_of(name) if tc.share == "role" else name
        groups.setdefault(key, []).append(i)
    mode = map_mode(config.env.actions, tc.squash)
    if mode == "absolute":
        warnings.warn(
            "env.action is absolute: the learners' policies output bids, which "
            "collapse toward 0 in first price (docs/design.md#the-action-recipe); set "
            "env.action: shade (or leave it out) to learn shading factors",
            stacklevel=2,
        )
    seeds = np.random.SeedSequence(config.seed).generate_state(len(groups))
    out = []
    for (key, seats), seed in zip(groups.items(), seeds, strict=True):
        role = role_of(agent_names[seats[0]])
        amap = action_map_for(config.env, role, mode)
        out.append(Learner(key, role, seats, amap, int(seed)))
    return out


def training_env(config: ExperimentConfig, num_envs: int, action: str):
    """The vector env learners train in (the SB3 and RLlib backends').

    Learners act in the env's own units (``action``, the env applies its one
    formula); the fixed agents (every kind but ``learn``) bid as they are.
    """
    import attn_env

    # the agent names without building a market (no valuation source to load)
    names = MarketSpec.from_config(make_config(config.env)).agents
    fixed = [a for a in names if config.agent_spec(a).kind != "learn"]
    return attn_env.vector_env(
        num_envs, config=config.env, action=action, fixed_agents=fixed
    )


def write_config(run: RunFolder, config: ExperimentConfig) -> None:
    """Write the resolved config as ``DIR/config.yaml``."""
    import yaml

    run.write_text(CONFIG, yaml.safe_dump(config.to_dict(), sort_keys=False), "config")

"""The ``train`` block shared by the scenarios that learn through their
PettingZoo env (``answer_slots``, ``feed``, ``compute_market``).

One PPO policy, shared by every agent of the env (parameter sharing; what tells
agents apart is in their observation), trained by
:func:`training.scenario_ppo.train_shared_ppo`. The block is read with the
scenario's config (unknown keys refused by name) and range-checked by
:func:`check_train_config`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from attn_env.checks import check_int, check_one_of, check_real

__all__ = ["ScenarioTrainConfig", "check_train_config"]


@dataclass
class ScenarioTrainConfig:
    """Shared-policy PPO for a scenario's agents (``attn-market train``)."""

    timesteps: int = 60_000
    "Agent-steps to train (every agent's step counts once)."
    num_envs: int = 4
    "Copies of the env stepped together (SB3 sees ``num_envs * agents`` sub-envs)."
    n_steps: int = 32
    "PPO rollout length per sub-env."
    batch_size: int = 256
    "PPO minibatch size."
    n_epochs: int = 5
    "PPO epochs per rollout."
    learning_rate: float = 1e-3
    "Adam step size."
    gamma: float = 0.0
    "Discount; 0 treats each step's reward on its own (a repeated market)."
    ent_coef: float = 0.0
    "Entropy bonus."
    net_arch: list[int] = field(default_factory=lambda: [64, 64])
    "Hidden layers of the policy and value networks."
    eval_every: int = 10_000
    "Agent-steps between evaluations on the validation seeds."
    eval_episodes: int = 4
    "Validation episodes per evaluation (seeds apart from training's)."
    keep: str = "best"
    "``best``: keep the best validation policy; ``last``: the final one."
    max_minutes: float | None = None
    "Stop after this much training time (checked at each evaluation), if set."
    seed: int = 0
    "Seed of PPO and of the training episodes."
    device: str = "auto"
    "``auto`` (cuda when available), ``cpu`` or ``cuda``."


def check_train_config(tc: ScenarioTrainConfig, where: str) -> None:
    """Range-check ``tc``; errors name ``{where}.train.<key>``."""
    w = f"{where}.train"
    check_int(tc.timesteps, f"{w}.timesteps", 1, 10**10)
    check_int(tc.num_envs, f"{w}.num_envs", 1, 1024)
    check_int(tc.n_steps, f"{w}.n_steps", 1, 10**6)
    check_int(tc.batch_size, f"{w}.batch_size", 2, 10**6)
    check_int(tc.n_epochs, f"{w}.n_epochs", 1, 100)
    check_real(tc.learning_rate, f"{w}.learning_rate", 0.0, 1.0, above=True)
    check_real(tc.gamma, f"{w}.gamma", 0.0, 1.0)
    check_real(tc.ent_coef, f"{w}.ent_coef", 0.0, 1.0)
    check_int(len(tc.net_arch), f"{w}.net_arch (its number of layers)", 1, 16)
    for i, width in enumerate(tc.net_arch):
        check_int(width, f"{w}.net_arch[{i}]", 1, 4096)
    check_int(tc.eval_every, f"{w}.eval_every", 1, 10**10)
    check_int(tc.eval_episodes, f"{w}.eval_episodes", 1, 1000)
    check_one_of(tc.keep, ("best", "last"), f"{w}.keep")
    if tc.max_minutes is not None:
        check_real(tc.max_minutes, f"{w}.max_minutes", 0.0, 1e5, above=True)
    check_int(tc.seed, f"{w}.seed", 0, 2**32 - 1)
    check_one_of(tc.device, ("auto", "cpu", "cuda"), f"{w}.device")

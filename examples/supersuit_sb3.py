"""PettingZoo's SuperSuit + stable-baselines3 tutorial, on first price with 2 buyers.

The pipeline of PettingZoo's SB3 tutorial: ``pettingzoo_env_to_vec_env_v1``
(one SB3 sub-env per agent) then ``concat_vec_envs_v1`` (copies of the market),
built by ``training.supersuit_vec.sb3_vec_env`` so that ``PPO(seed=...)`` works,
wrapped in ``VecMonitor`` (it logs ``ep_rew_mean``). Both buyers share one
policy (SuperSuit's parameter sharing). ``action="shade"``: the policy outputs a
shading factor ``s`` and the env bids ``s x value``; the BNE is ``s = 1/2``.
One torch thread: small MLPs crawl with more threads than free cores.

Run it::

    .venv/bin/python examples/supersuit_sb3.py --steps 200000

It prints ``bne_l2`` (L2 distance of the deterministic policy's bid function
to the BNE ``b(v) = v/2``) of the initial and the trained policy.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import attn_env
from attn_env.strategy_metrics import shade_policy_bne_l2

ENV = {"mechanism": "first_price", "n_buyers": 2, "rounds": 1, "action": "shade"}
PPO_KWARGS = {
    "n_steps": 64,
    "batch_size": 256,
    "learning_rate": 3e-3,
    "n_epochs": 5,
    "gamma": 0.0,
}
NUM_VEC_ENVS = 16


def policy_bne_l2(model: Any, config: Any) -> float:
    """``bne_l2`` of the deterministic policy's buyer bid function."""
    return shade_policy_bne_l2(
        lambda obs: model.predict(obs, deterministic=True)[0], config
    )


def main(
    total_steps: int,
    seed: int = 0,
    eval_every: int | None = None,
    target: float | None = None,
) -> dict:
    """Train for ``total_steps`` agent-steps; ``bne_l2`` before and after.

    Args:
        total_steps: agent-steps (one buyer bidding in one market round).
        seed: seeds SB3 (torch, numpy) and the env.
        eval_every: also measure ``bne_l2`` every so many agent-steps (the
            ``curve``; evaluation time is not counted in ``seconds``).
        target: with ``eval_every``, stop once ``bne_l2 <= target``.
    """
    import torch
    from stable_baselines3 import PPO
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.logger import Logger
    from stable_baselines3.common.vec_env import VecMonitor

    from training.supersuit_vec import sb3_vec_env

    torch.set_num_threads(1)
    env = attn_env.parallel_env(**ENV)
    config = env.config
    venv = VecMonitor(sb3_vec_env(env, num_vec_envs=NUM_VEC_ENVS))
    model = PPO("MlpPolicy", venv, seed=seed, **PPO_KWARGS)
    # a logger that writes nowhere: without one, SB3's learn() makes an empty
    # SB3-<time> folder in the system's temp folder on every run
    model.set_logger(Logger(folder=None, output_formats=[]))
    start = policy_bne_l2(model, config)
    curve: list[dict] = [{"agent_steps": 0, "seconds": 0.0, "bne_l2": start}]
    clock = {"eval": 0.0, "t0": time.perf_counter()}

    class Checkpoints(BaseCallback):
        """Measure ``bne_l2`` every ``eval_every`` agent-steps."""

        def __init__(self) -> None:
            super().__init__()
            self.next = eval_every or 0

        def _on_step(self) -> bool:
            if not eval_every or self.num_timesteps < self.next:
                return True
            self.next += eval_every
            t = time.perf_counter()
            seconds = t - clock["t0"] - clock["eval"]  # training time so far
            l2 = policy_bne_l2(self.model, config)
            clock["eval"] += time.perf_counter() - t
            curve.append(
                {"agent_steps": self.num_timesteps, "seconds": seconds, "bne_l2": l2}
            )
            return target is None or l2 > target

    model.learn(total_steps, callback=Checkpoints())
    seconds = time.perf_counter() - clock["t0"] - clock["eval"]
    end = policy_bne_l2(model, config)
    agent_steps = int(model.num_timesteps)
    if not curve or curve[-1]["agent_steps"] != agent_steps:
        curve.append({"agent_steps": agent_steps, "seconds": seconds, "bne_l2": end})
    venv.close()
    return {
        "pipeline": "supersuit_sb3",
        "bne_l2_start": start,
        "bne_l2_end": end,
        "agent_steps": agent_steps,
        "seconds": seconds,
        "agent_steps_per_s": agent_steps / max(seconds, 1e-9),
        "curve": curve,
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    out = main(args.steps, args.seed)
    out.pop("curve")
    print(json.dumps(out, indent=2))

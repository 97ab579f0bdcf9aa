"""RLlib multi-agent PPO on the PettingZoo market, the way RLlib's docs do it.

First price with 2 buyers, ``action="shade"`` (the action is a shading factor
``s`` in ``[0, 1]``, the env bids ``s x value``; the BNE is ``s = 1/2``). The
pipeline is the one of RLlib's PettingZoo examples
(``rllib/examples/multi_agent/pettingzoo_parameter_sharing.py``): the PettingZoo
``ParallelEnv`` in ``ParallelPettingZooEnv``, registered with
``ray.tune.registry.register_env``, and ``PPOConfig().environment(...)
.multi_agent(policies=..., policy_mapping_fn=...)`` on RLlib's new API stack
(RLModule, Learner, ConnectorV2), torch. Both buyers share one policy (module
``"shared"``); for independent policies see ``INDEPENDENT`` below. Ray runs
locally, in this process; one torch thread.

Three settings matter for this market:

* ``normalize_actions=False`` (with ``clip_actions=True``). RLlib's default
  rescales the policy's output from ``[-1, 1]`` onto the ``Box``, so the
  untrained policy's mean ``0`` would play the middle of ``[0, 1]``, ``s = 1/2``,
  which is the BNE itself. Unnormalised, the untrained policy shades to ``~0``
  as in the other examples, and learning has to find ``s = 1/2``.
* ``gamma=0``: an episode is one auction round (``rounds=1``), so every
  ``env.step`` ends the episode and RLlib resets the env.
* ``num_env_runners=0``: sampling runs in the driver's local env runner. Remote
  runners work too (``--env-runners 2``), but each is one more process on the
  cores; a remote runner that is starved for longer than ``sample_timeout_s``
  returns nothing, which the old API stack reported as "No samples returned
  from remote workers".

Run it::

    .venv/bin/python examples/rllib_ppo.py --steps 100000

It prints ``bne_l2`` (L2 distance of the deterministic policy's bid function,
the Gaussian's mean, to the BNE ``b(v) = v/2``) of the initial and the trained
policy; ``--json`` prints the whole result with the ``curve``.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

import attn_env
from attn_env.strategy_metrics import shade_policy_bne_l2

ENV = {"mechanism": "first_price", "n_buyers": 2, "rounds": 1, "action": "shade"}
ENV_NAME = "attn_market_fpsb2"
MODULE = "shared"
INDEPENDENT = False
"""One policy per buyer instead of a shared one: ``policies={"buyer_0",
"buyer_1"}`` and ``policy_mapping_fn=lambda agent_id, episode, **kw: agent_id``
(as RLlib's ``pettingzoo_independent_learning.py``)."""
NUM_ENVS = 64
"Markets per env runner (RLlib vectorises the wrapped env; 1 is ~8x slower)."
PPO_KWARGS = {
    "lr": 3e-3,
    "gamma": 0.0,
    "lambda_": 1.0,
    "train_batch_size_per_learner": 1024,  # env steps: 2 agent-steps each
    "minibatch_size": 128,
    "num_epochs": 10,
    "vf_clip_param": 1e6,
    "entropy_coeff": 0.0,
    "grad_clip": 0.5,
}


def env_creator(env_config: dict):
    """The PettingZoo parallel env, wrapped for RLlib."""
    from ray.rllib.env.wrappers.pettingzoo_env import ParallelPettingZooEnv

    return ParallelPettingZooEnv(attn_env.parallel_env(**ENV))


def policy_mapping_fn(agent_id, episode, **kwargs) -> str:
    """Every buyer plays the shared module."""
    return agent_id if INDEPENDENT else MODULE


def policy_bne_l2(algo, config) -> float:
    """``bne_l2`` of the deterministic policy: the mean of the module's Gaussian."""
    import torch
    from ray.rllib.core.columns import Columns

    module_id = "buyer_0" if INDEPENDENT else MODULE
    module = algo.get_module(module_id)

    def shade(obs: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            out = module.forward_inference({Columns.OBS: torch.as_tensor(obs)})
        # action_dist_inputs: [mean, log_std] per action dimension
        return out[Columns.ACTION_DIST_INPUTS][:, :1].numpy()

    return shade_policy_bne_l2(shade, config)


def build_config(seed: int, env_runners: int = 0):
    """RLlib's ``PPOConfig`` for the market."""
    from ray.rllib.algorithms.ppo import PPOConfig

    policies = {"buyer_0", "buyer_1"} if INDEPENDENT else {MODULE}
    return (
        PPOConfig()
        .api_stack(
            enable_rl_module_and_learner=True,
            enable_env_runner_and_connector_v2=True,
        )
        .environment(ENV_NAME, normalize_actions=False, clip_actions=True)
        .framework("torch")
        .env_runners(
            num_env_runners=env_runners,
            num_envs_per_env_runner=NUM_ENVS,
            rollout_fragment_length="auto",
        )
        .learners(num_learners=0)
        .multi_agent(policies=policies, policy_mapping_fn=policy_mapping_fn)
        .rl_module(model_config={"fcnet_hiddens": [64, 64], "fcnet_activation": "tanh"})
        .training(**PPO_KWARGS)
        .debugging(seed=seed, log_level="ERROR")
    )


def main(
    total_steps: int,
    seed: int = 0,
    eval_every: int | None = None,
    target: float | None = None,
    env_runners: int = 0,
) -> dict:
    """Train for ``total_steps`` agent-steps; ``bne_l2`` before and after.

    Args:
        total_steps: agent-steps (one buyer bidding in one market round).
        seed: seeds RLlib (torch, numpy, the env's resets).
        eval_every: also measure ``bne_l2`` every so many agent-steps (the
            ``curve``; evaluation time is not counted in ``seconds``).
        target: with ``eval_every``, stop once ``bne_l2 <= target``.
        env_runners: remote env runners (0: sample in this process).
    """
    import ray
    import torch
    from ray.tune.registry import register_env

    torch.set_num_threads(1)
    config = attn_env.parallel_env(**ENV).config
    ray.init(
        address="local",  # a new Ray in this process, not a cluster nearby
        num_cpus=2,
        include_dashboard=False,
        ignore_reinit_error=True,
        log_to_driver=False,
        configure_logging=False,
    )
    try:
        register_env(ENV_NAME, env_creator)
        algo = build_config(seed, env_runners).build_algo()
        # remote env runners build their own modules: start them from the
        # learner's weights, so that the initial bne_l2 is the learner's policy
        algo.env_runner_group.sync_weights(
            from_worker_or_learner_group=algo.learner_group, inference_only=True
        )
        start = policy_bne_l2(algo, config)
        curve: list[dict] = [{"agent_steps": 0, "seconds": 0.0, "bne_l2": start}]
        agent_steps, seconds, next_eval = 0, 0.0, eval_every or 0
        while agent_steps < total_steps:
            t = time.perf_counter()
            result = algo.train()
            seconds += time.perf_counter() - t
            # every env step is one round in which both buyers bid
            env_steps = result["env_runners"]["num_env_steps_sampled_lifetime"]
            agent_steps = int(env_steps) * config.n_buyers
            if eval_every and agent_steps >= next_eval:
                next_eval += eval_every
                l2 = policy_bne_l2(algo, config)
                curve.append(
                    {"agent_steps": agent_steps, "seconds": seconds, "bne_l2": l2}
                )
                if target is not None and l2 <= target:
                    break
        end = policy_bne_l2(algo, config)
        if curve[-1]["agent_steps"] != agent_steps:
            curve.append(
                {"agent_steps": agent_steps, "seconds": seconds, "bne_l2": end}
            )
        algo.stop()
    finally:
        ray.shutdown()
    return {
        "pipeline": "rllib_ppo",
        "bne_l2_start": start,
        "bne_l2_end": end,
        "agent_steps": agent_steps,
        "seconds": seconds,
        "agent_steps_per_s": agent_steps / max(seconds, 1e-9),
        "curve": curve,
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--env-runners", type=int, default=0)
    parser.add_argument("--every", type=int, default=None, help="checks (agent-steps)")
    parser.add_argument("--target", type=float, default=None)
    parser.add_argument("--json", action="store_true", help="print the curve too")
    args = parser.parse_args()
    out = main(args.steps, args.seed, args.every, args.target, args.env_runners)
    if not args.json:
        out.pop("curve")
    print(json.dumps(out, indent=2))

"""TorchRL multi-agent PPO on first price with 2 buyers, through ``PettingZooWrapper``.

The recipe of TorchRL's multi-agent PPO tutorial: the PettingZoo parallel env in
``PettingZooWrapper`` (one group ``buyer`` holding both buyers), a
``MultiAgentMLP`` with ``share_params=True`` (one policy shared by the buyers)
feeding a ``TanhNormal`` ``ProbabilisticActor``, a shared decentralised critic,
``Collector`` (TorchRL 0.14's name for
``SyncDataCollector``), GAE and ``ClipPPOLoss``. ``action="shade"``: the policy
outputs a shading factor ``s`` in ``[0, 1]`` and the env bids ``s x value``; the
BNE is ``s = 1/2``. Every round is an episode (``rounds: 1``). One torch thread:
small MLPs crawl with more threads than free cores.

``--num-envs N`` (N > 1) swaps ``PettingZooWrapper`` for
:class:`training.torchrl_env.MarketTorchRLEnv`, which steps ``N`` markets in one
numpy call behind TorchRL's ``EnvBase`` with the same keys, so nothing else
changes; a frame is then one market, ``N`` frames per env step.

Run it::

    .venv/bin/python examples/torchrl_ppo.py --frames 100000
    .venv/bin/python examples/torchrl_ppo.py --frames 100000 --num-envs 64

It prints ``bne_l2`` (L2 distance of the deterministic policy's bid function to
the BNE ``b(v) = v/2``) of the initial and the trained policy. A frame is one
step of the market (both buyers bid); agent-steps are frames x 2.
"""

from __future__ import annotations

import argparse
import json
import math
import time

import numpy as np

import attn_env
from attn_env.strategy_metrics import shade_policy_bne_l2

ENV = {"mechanism": "first_price", "n_buyers": 2, "rounds": 1, "action": "shade"}
GROUP = "buyer"
FRAMES_PER_BATCH = 512  # market steps per collection (1024 agent-steps)
MINIBATCH = 256
EPOCHS = 8
LR = 3e-3
INIT_SCALE = 0.3
INIT_SHADE = 0.9  # the initial policy bids 90% of its value


def policy_bne_l2(policy, template, config) -> float:
    """``bne_l2`` of the deterministic policy's buyer bid function.

    ``template`` is one buyer's observation ``[obs_dim]``; the value entry is
    replaced by each value of the grid (as ``runner.evaluate`` does).
    """
    import torch
    from tensordict import TensorDict
    from torchrl.envs.utils import ExplorationType, set_exploration_type

    n = config.n_buyers

    def shade(obs: np.ndarray) -> np.ndarray:
        # the module acts for the whole group: every buyer sees this observation
        td = TensorDict(
            {GROUP: {"observation": torch.as_tensor(obs)[:, None].repeat(1, n, 1)}},
            batch_size=[len(obs)],
        )
        with torch.no_grad(), set_exploration_type(ExplorationType.DETERMINISTIC):
            return policy(td).get((GROUP, "action"))[:, 0, 0].double().numpy()

    return shade_policy_bne_l2(shade, config, template)


def make_env(seed: int, num_envs: int = 1):
    """The market as a TorchRL env: one group ``buyer`` with both buyers.

    ``num_envs > 1``: that many markets batched (``MarketTorchRLEnv``).
    """
    if num_envs > 1:
        from training.torchrl_env import MarketTorchRLEnv

        env = MarketTorchRLEnv(num_envs, seed=seed, **ENV)
        return env, env.venv.config
    from torchrl.envs.libs.pettingzoo import PettingZooWrapper

    market = attn_env.parallel_env(**ENV, seed=seed)
    agents = list(market.possible_agents)
    env = PettingZooWrapper(market, group_map={GROUP: agents}, use_mask=False)
    env.set_seed(seed)
    return env, market.config


def make_modules(env):
    """Shared actor (``TanhNormal`` on ``[0, 1]``) and shared critic."""
    import torch
    from tensordict.nn import NormalParamExtractor, TensorDictModule
    from torch import nn
    from torchrl.modules import MultiAgentMLP, ProbabilisticActor, TanhNormal

    n_agents = len(env.group_map[GROUP])
    obs_dim = env.observation_spec[GROUP, "observation"].shape[-1]
    action_spec = env.full_action_spec_unbatched[GROUP, "action"]
    mlp = {"n_agents": n_agents, "centralised": False, "share_params": True}
    mlp |= {"depth": 2, "num_cells": 64, "activation_class": nn.Tanh}
    actor_mlp = MultiAgentMLP(n_agent_inputs=obs_dim, n_agent_outputs=2, **mlp)
    # TanhNormal on [0, 1] starts at s = 0.5, which happens to be the BNE of
    # first price with 2 buyers: start near truthful bidding (s = INIT_SHADE)
    # instead, so that learning has a way to go
    with torch.no_grad():
        actor_mlp.params["4", "bias"][0] = math.atanh(2 * INIT_SHADE - 1)
    actor_net = nn.Sequential(
        actor_mlp,
        # -> loc, scale; pre-tanh scale 0.3 at the start (s = 0.5 +- ~0.07)
        NormalParamExtractor(scale_mapping=f"biased_softplus_{INIT_SCALE}"),
    )
    actor = ProbabilisticActor(
        TensorDictModule(
            actor_net,
            in_keys=[(GROUP, "observation")],
            out_keys=[(GROUP, "loc"), (GROUP, "scale")],
        ),
        spec=action_spec,
        in_keys=[(GROUP, "loc"), (GROUP, "scale")],
        out_keys=[(GROUP, "action")],
        distribution_class=TanhNormal,
        distribution_kwargs={
            "low": action_spec.space.low,
            "high": action_spec.space.high,
        },
        return_log_prob=True,
    )
    critic = TensorDictModule(
        MultiAgentMLP(n_agent_inputs=obs_dim, n_agent_outputs=1, **mlp),
        in_keys=[(GROUP, "observation")],
        out_keys=[(GROUP, "state_value")],
    )
    return actor, critic


def main(
    total_frames: int,
    seed: int = 0,
    eval_every: int | None = None,
    target: float | None = None,
    num_envs: int = 1,
) -> dict:
    """Train for ``total_frames`` market steps; ``bne_l2`` before and after.

    Args:
        total_frames: market steps (each is one agent-step per buyer).
        seed: seeds torch and the env.
        num_envs: markets per env step (> 1: the batched env).
        eval_every: also measure ``bne_l2`` every so many agent-steps (the
            ``curve``; evaluation time is not counted in ``seconds``).
        target: with ``eval_every``, stop once ``bne_l2 <= target``.
    """
    import torch
    from torchrl.collectors import Collector
    from torchrl.data import LazyTensorStorage, ReplayBuffer
    from torchrl.data.replay_buffers.samplers import SamplerWithoutReplacement
    from torchrl.objectives import ClipPPOLoss, ValueEstimators

    torch.set_num_threads(1)
    torch.manual_seed(seed)
    env, config = make_env(seed, num_envs)
    n_agents = len(env.group_map[GROUP])
    actor, critic = make_modules(env)
    first = env.reset()[GROUP, "observation"]
    template = first.reshape(-1, first.shape[-1])[0].numpy().copy()  # buyer_0

    loss_module = ClipPPOLoss(
        actor_network=actor,
        critic_network=critic,
        clip_epsilon=0.2,
        entropy_coeff=1e-3,
        normalize_advantage=True,
    )
    loss_module.set_keys(
        reward=(GROUP, "reward"),
        action=(GROUP, "action"),
        value=(GROUP, "state_value"),
        done=(GROUP, "done"),
        terminated=(GROUP, "terminated"),
    )
    # one-round episodes: the advantage is reward - value (gamma does not matter)
    loss_module.make_value_estimator(ValueEstimators.GAE, gamma=0.0, lmbda=0.95)
    optim = torch.optim.Adam(loss_module.parameters(), lr=LR)

    # whole env steps of num_envs markets
    frames_per_batch = max(num_envs, min(FRAMES_PER_BATCH, total_frames))
    frames_per_batch -= frames_per_batch % num_envs
    collector = Collector(
        env,
        actor,
        frames_per_batch=frames_per_batch,
        total_frames=total_frames,
        device="cpu",
    )
    buffer = ReplayBuffer(
        storage=LazyTensorStorage(frames_per_batch),
        sampler=SamplerWithoutReplacement(),
        batch_size=min(MINIBATCH, frames_per_batch),
    )

    start = policy_bne_l2(actor, template, config)
    curve: list[dict] = [{"agent_steps": 0, "seconds": 0.0, "bne_l2": start}]
    eval_seconds, next_eval, frames = 0.0, eval_every or 0, 0
    t0 = time.perf_counter()
    for data in collector:
        frames += data.numel()
        with torch.no_grad():
            loss_module.value_estimator(
                data,
                params=loss_module.critic_network_params,
                target_params=loss_module.target_critic_network_params,
            )
        buffer.extend(data.reshape(-1))
        for _ in range(EPOCHS):
            for _ in range(max(1, frames_per_batch // buffer.batch_size)):
                losses = loss_module(buffer.sample())
                loss = (
                    losses["loss_objective"]
                    + losses["loss_critic"]
                    + losses["loss_entropy"]
                )
                loss.backward()
                torch.nn.utils.clip_grad_norm_(loss_module.parameters(), 1.0)
                optim.step()
                optim.zero_grad()
        collector.update_policy_weights_()
        if eval_every and frames * n_agents >= next_eval:
            next_eval += eval_every
            t = time.perf_counter()
            l2 = policy_bne_l2(actor, template, config)
            seconds = t - t0 - eval_seconds  # training time so far
            eval_seconds += time.perf_counter() - t
            curve.append(
                {"agent_steps": frames * n_agents, "seconds": seconds, "bne_l2": l2}
            )
            if target is not None and l2 <= target:
                break
    seconds = time.perf_counter() - t0 - eval_seconds
    collector.shutdown()
    end = policy_bne_l2(actor, template, config)
    agent_steps = frames * n_agents
    if curve[-1]["agent_steps"] != agent_steps:
        curve.append({"agent_steps": agent_steps, "seconds": seconds, "bne_l2": end})
    return {
        "pipeline": "torchrl" if num_envs == 1 else "torchrl_batched",
        "bne_l2_start": start,
        "bne_l2_end": end,
        "agent_steps": agent_steps,
        "seconds": seconds,
        "agent_steps_per_s": agent_steps / max(seconds, 1e-9),
        "curve": curve,
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--num-envs", type=int, default=1, help="> 1: that many markets batched"
    )
    args = parser.parse_args()
    out = main(args.frames, args.seed, num_envs=args.num_envs)
    out.pop("curve")
    print(json.dumps(out, indent=2))

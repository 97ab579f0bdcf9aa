"""CleanRL-style single-file PPO on ``attn_env.vector_env``: first price, 2 buyers.

In the manner of CleanRL's ``ppo_continuous_action.py``: one file, read top to
bottom, hyperparameters in an ``Args`` dataclass, no framework. The env is
``attn_env.vector_env(num_envs, action="shade")``: arrays ``[num_envs, 2, 8]``,
same-step autoreset, the action a shading factor ``s`` (bid ``= s x value``;
BNE ``s = 1/2``). Parameter sharing: the two buyers are rows of one batch,
``[num_envs * 2, obs_dim]``, through one actor-critic.

Run it::

    .venv/bin/python examples/cleanrl_ppo.py --steps 500000

It prints ``bne_l2`` (L2 distance of the deterministic policy's bid function to
the BNE ``b(v) = v/2``) of the initial and the trained policy.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time

import numpy as np
import torch
from torch import nn
from torch.distributions import Normal

import attn_env
from attn_env.strategy_metrics import shade_policy_bne_l2


@dataclasses.dataclass
class Args:
    seed: int = 0
    total_steps: int = 500_000
    "agent-steps (one buyer bidding in one market round)"
    num_envs: int = 128
    "markets stepped together; agent-steps per env step: num_envs * 2"
    num_steps: int = 8
    "env steps per rollout"
    learning_rate: float = 3e-3
    anneal_lr: bool = False
    gamma: float = 0.99
    gae_lambda: float = 0.95
    num_minibatches: int = 4
    update_epochs: int = 4
    norm_adv: bool = True
    clip_coef: float = 0.2
    ent_coef: float = 0.0
    vf_coef: float = 0.5
    max_grad_norm: float = 0.5
    hidden: int = 64
    threads: int = 1
    env: dict = dataclasses.field(
        default_factory=lambda: {
            "mechanism": "first_price",
            "n_buyers": 2,
            "rounds": 1,
            "action": "shade",
        }
    )


def layer_init(layer: nn.Linear, std: float = np.sqrt(2), bias: float = 0.0):
    nn.init.orthogonal_(layer.weight, std)
    nn.init.constant_(layer.bias, bias)
    return layer


class Agent(nn.Module):
    def __init__(self, obs_dim: int, act_dim: int, hidden: int) -> None:
        super().__init__()
        self.critic = nn.Sequential(
            layer_init(nn.Linear(obs_dim, hidden)),
            nn.Tanh(),
            layer_init(nn.Linear(hidden, hidden)),
            nn.Tanh(),
            layer_init(nn.Linear(hidden, 1), std=1.0),
        )
        self.actor_mean = nn.Sequential(
            layer_init(nn.Linear(obs_dim, hidden)),
            nn.Tanh(),
            layer_init(nn.Linear(hidden, hidden)),
            nn.Tanh(),
            layer_init(nn.Linear(hidden, act_dim), std=0.01),
        )
        self.actor_logstd = nn.Parameter(torch.zeros(1, act_dim))

    def get_value(self, x: torch.Tensor) -> torch.Tensor:
        return self.critic(x)

    def get_action_and_value(self, x: torch.Tensor, action=None):
        mean = self.actor_mean(x)
        dist = Normal(mean, self.actor_logstd.expand_as(mean).exp())
        if action is None:
            action = dist.sample()
        logp = dist.log_prob(action).sum(1)
        return action, logp, dist.entropy().sum(1), self.critic(x)


def bid_function_l2(agent: Agent, config) -> float:
    """``bne_l2`` of the deterministic policy (the mean, clipped to [0, 1])."""

    def shade(obs: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return agent.actor_mean(torch.as_tensor(obs)).numpy()

    return shade_policy_bne_l2(shade, config)


def main(
    total_steps: int,
    seed: int = 0,
    eval_every: int | None = None,
    target: float | None = None,
    args: Args | None = None,
) -> dict:
    """Train for ``total_steps`` agent-steps; ``bne_l2`` before and after.

    ``eval_every``: also measure ``bne_l2`` every so many agent-steps (the
    ``curve``; evaluation time is not counted in ``seconds``); ``target``: with
    it, stop once ``bne_l2 <= target``.
    """
    args = dataclasses.replace(args or Args(), total_steps=total_steps, seed=seed)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)  # minibatch shuffles

    # env setup: every buyer of every market is one row of the batch
    envs = attn_env.vector_env(args.num_envs, final_obs=False, **args.env)
    config = envs.config
    n_agents = envs.n_agents
    rows = args.num_envs * n_agents
    obs_dim = envs.single_observation_space.shape[0]
    act_dim = envs.single_action_space.shape[0]
    low = torch.as_tensor(envs.single_action_space.low)
    high = torch.as_tensor(envs.single_action_space.high)
    batch_size = args.num_steps * rows
    minibatch_size = batch_size // args.num_minibatches
    num_iterations = max(1, -(-args.total_steps // batch_size))

    agent = Agent(obs_dim, act_dim, args.hidden)
    optimizer = torch.optim.Adam(agent.parameters(), lr=args.learning_rate, eps=1e-5)
    bne_l2_start = bid_function_l2(agent, config)

    # rollout storage
    obs = torch.zeros((args.num_steps, rows, obs_dim))
    actions = torch.zeros((args.num_steps, rows, act_dim))
    logprobs = torch.zeros((args.num_steps, rows))
    rewards = torch.zeros((args.num_steps, rows))
    dones = torch.zeros((args.num_steps, rows))
    values = torch.zeros((args.num_steps, rows))

    global_step = 0
    eval_s = 0.0
    curve = [{"agent_steps": 0, "seconds": 0.0, "bne_l2": bne_l2_start}]
    next_eval = eval_every or 0
    start_time = time.perf_counter()
    next_obs_np, _ = envs.reset(seed=args.seed)
    next_obs = torch.as_tensor(next_obs_np.reshape(rows, obs_dim))
    next_done = torch.zeros(rows)

    for iteration in range(1, num_iterations + 1):
        if args.anneal_lr:
            frac = 1.0 - (iteration - 1.0) / num_iterations
            optimizer.param_groups[0]["lr"] = frac * args.learning_rate

        for step in range(args.num_steps):
            global_step += rows
            obs[step] = next_obs
            dones[step] = next_done
            with torch.no_grad():
                action, logprob, _, value = agent.get_action_and_value(next_obs)
            values[step] = value.flatten()
            actions[step] = action
            logprobs[step] = logprob
            # the env takes actions in its Box; PPO learns on the unclipped ones
            env_action = torch.clamp(action, low, high).numpy()
            next_obs_np, reward, term, trunc, _ = envs.step(
                env_action.reshape(args.num_envs, n_agents, act_dim)
            )
            rewards[step] = torch.as_tensor(reward.reshape(rows), dtype=torch.float32)
            next_done = torch.as_tensor(
                np.logical_or(term, trunc).reshape(rows), dtype=torch.float32
            )
            next_obs = torch.as_tensor(next_obs_np.reshape(rows, obs_dim))

        # bootstrap value, GAE (same-step autoreset: next_obs of a done row is
        # a new episode's, masked out by next_done)
        with torch.no_grad():
            next_value = agent.get_value(next_obs).reshape(1, -1)
            advantages = torch.zeros_like(rewards)
            lastgaelam = 0
            for t in reversed(range(args.num_steps)):
                if t == args.num_steps - 1:
                    nextnonterminal = 1.0 - next_done
                    nextvalues = next_value
                else:
                    nextnonterminal = 1.0 - dones[t + 1]
                    nextvalues = values[t + 1]
                delta = (
                    rewards[t] + args.gamma * nextvalues * nextnonterminal - values[t]
                )
                lastgaelam = (
                    delta + args.gamma * args.gae_lambda * nextnonterminal * lastgaelam
                )
                advantages[t] = lastgaelam
            returns = advantages + values

        # flatten the batch
        b_obs = obs.reshape(-1, obs_dim)
        b_logprobs = logprobs.reshape(-1)
        b_actions = actions.reshape(-1, act_dim)
        b_advantages = advantages.reshape(-1)
        b_returns = returns.reshape(-1)
        b_values = values.reshape(-1)

        # optimise the policy and value network
        b_inds = np.arange(batch_size)
        for _epoch in range(args.update_epochs):
            rng.shuffle(b_inds)
            for start in range(0, batch_size, minibatch_size):
                mb_inds = b_inds[start : start + minibatch_size]
                _, newlogprob, entropy, newvalue = agent.get_action_and_value(
                    b_obs[mb_inds], b_actions[mb_inds]
                )
                ratio = (newlogprob - b_logprobs[mb_inds]).exp()
                mb_adv = b_advantages[mb_inds]
                if args.norm_adv:
                    mb_adv = (mb_adv - mb_adv.mean()) / (mb_adv.std() + 1e-8)
                pg_loss1 = -mb_adv * ratio
                pg_loss2 = -mb_adv * torch.clamp(
                    ratio, 1 - args.clip_coef, 1 + args.clip_coef
                )
                pg_loss = torch.max(pg_loss1, pg_loss2).mean()
                newvalue = newvalue.view(-1)
                v_loss_unclipped = (newvalue - b_returns[mb_inds]) ** 2
                v_clipped = b_values[mb_inds] + torch.clamp(
                    newvalue - b_values[mb_inds], -args.clip_coef, args.clip_coef
                )
                v_loss_clipped = (v_clipped - b_returns[mb_inds]) ** 2
                v_loss = 0.5 * torch.max(v_loss_unclipped, v_loss_clipped).mean()
                loss = pg_loss - args.ent_coef * entropy.mean() + v_loss * args.vf_coef
                optimizer.zero_grad()
                loss.backward()
                nn.utils.clip_grad_norm_(agent.parameters(), args.max_grad_norm)
                optimizer.step()

        # checkpoints (not counted in the training time)
        if eval_every and global_step >= next_eval:
            next_eval += eval_every
            t = time.perf_counter()
            l2 = bid_function_l2(agent, config)
            curve.append(
                {
                    "agent_steps": global_step,
                    "seconds": t - start_time - eval_s,
                    "bne_l2": l2,
                }
            )
            eval_s += time.perf_counter() - t
            if target is not None and l2 <= target:
                break

    seconds = time.perf_counter() - start_time - eval_s
    bne_l2_end = bid_function_l2(agent, config)
    if curve[-1]["agent_steps"] != global_step:
        curve.append(
            {"agent_steps": global_step, "seconds": seconds, "bne_l2": bne_l2_end}
        )
    return {
        "pipeline": "cleanrl_ppo",
        "bne_l2_start": bne_l2_start,
        "bne_l2_end": bne_l2_end,
        "agent_steps": global_step,
        "seconds": seconds,
        "agent_steps_per_s": global_step / max(seconds, 1e-9),
        "curve": curve,
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=Args.total_steps)
    parser.add_argument("--seed", type=int, default=0)
    cli = parser.parse_args()
    out = main(cli.steps, cli.seed)
    out.pop("curve")
    print(json.dumps(out, indent=2))

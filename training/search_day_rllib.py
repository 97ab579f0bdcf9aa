"""``train: {backend: rllib}`` for the search day: the shared policy with Ray RLlib.

The same scenario YAML and the same run folder as the stable-baselines3 trainer
(:mod:`training.search_day`); only the learner differs.

1. **Env.** :class:`SearchDayMultiAgentEnv` is an RLlib ``MultiAgentEnv`` over a
   :class:`~attn_env.scenarios.search_env.SearchDayVectorEnv` of
   ``train.parallel_days`` days: agent ids are ``"<advertiser>/<day>"``, so one
   env step is ``parallel_days * N`` agent-steps (SB3's ``E * N`` sub-envs).
   Every agent maps to one RLModule, ``"advertiser"`` (parameter sharing); its
   action ``a`` in ``Box(-1, 1)`` is the multiplier ``lambda_max ** a``
   (:func:`~training.search_day.multipliers`), its observation ``Box(13)``.
2. **PPO.** A batch is ``traffic.periods`` env steps of every agent (SB3's
   ``n_steps * n_envs``), minibatches of ``train.batch_size`` agent-steps, and
   the other options as :data:`training.rllib.DEFAULTS` (SB3's defaults). The
   RLModule starts from the weights of the SB3 trainer's seeded initial policy
   (:func:`module_state_of`), so both backends start from the same bidder.
3. **Ray.** A local Ray in this process by default; ``--address HOST:PORT`` (or
   ``RAY_ADDRESS``) joins a cluster (:func:`training.ray_start.init_ray`), where
   ``num_env_runners`` remote runners each step their own days. Ray is shut
   down on every exit, errors included.
4. **Output.** The RLModule (separate actor and critic MLPs of ``net_arch``,
   tanh, a free ``log_std``) has the layout of SB3's ``MlpPolicy``: its weights
   are copied into an SB3 PPO model (:func:`~training.rllib_weights.to_sb3_state`)
   and saved as ``policy.zip``, beside ``config.yaml`` and ``search_day.json``
   (with the learning curve on held-out days), so
   :func:`~training.search_day.load_search_policy` and ``attn-market evaluate``
   read an RLlib run as an SB3 one.

Importing this module imports Ray (the env's base class): import it only when
``train.backend`` is ``rllib``.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from attn_env.errors import UserError
from attn_env.scenarios.search_config import SearchDayConfig
from attn_env.scenarios.search_env import SearchDayVectorEnv
from attn_env.scenarios.search_market import SearchMarket, build_market
from attn_env.scenarios.search_state import OBS_SIZE
from training.ray_start import import_ray, init_ray
from training.rllib_env import SEP, multi_agent_env_base
from training.rllib_state import module_states, set_states
from training.rllib_weights import to_sb3_state
from training.run import RunFolder
from training.scenario_ppo import (
    one_torch_thread,
    out_of_time,
    progress_bar,
    resolve_device,
    save_policy,
)
from training.search_day import RECORD, Curve, multipliers, new_model

__all__ = [
    "MODULE",
    "SearchDayMultiAgentEnv",
    "load_module_state",
    "module_spec",
    "module_state_of",
    "train_search_day_rllib",
]

MODULE = "advertiser"
"The one RLModule every advertiser of every day acts through."


class SearchDayMultiAgentEnv(multi_agent_env_base()):
    """RLlib's view of ``E`` search days of ``N`` advertisers.

    Agent ``"<advertiser>/<e>"`` is that advertiser on day ``e`` of the batch;
    all agents act every period and all days end together (one RLlib episode is
    one batch of days). The vector env starts the next days in the step that
    ends these; their first observations wait for the next ``reset``.

    Args:
        env_config: ``{"config": SearchDayConfig}`` and optionally ``"market"``
            (a built :class:`SearchMarket`, else built from the config) and
            ``"parallel_days"`` (default ``train.parallel_days``). RLlib's
            ``EnvContext`` adds ``worker_index`` and ``vector_index``, which
            offset the seed so every env runner plays its own days.
    """

    def __init__(self, env_config: dict[str, Any] | None = None) -> None:
        super().__init__()
        from gymnasium.spaces import Box

        worker = int(getattr(env_config, "worker_index", 0))
        vector_index = int(getattr(env_config, "vector_index", 0))
        env_config = dict(env_config or {})
        config: SearchDayConfig = env_config["config"]
        market = env_config.get("market")
        if market is None:
            market = build_market(config)
        days = int(env_config.get("parallel_days", config.train.parallel_days))
        self.venv = SearchDayVectorEnv(days, market=market)
        self.lambda_max = config.lambda_max
        self.shape = (days, self.venv.n_agents)
        names = market.advertisers.names
        # day-major, as the vector env's [E, N] arrays
        self.agents = [f"{name}{SEP}{e}" for e in range(days) for name in names]
        self.possible_agents = list(self.agents)
        obs_space = Box(-np.inf, np.inf, (OBS_SIZE,), np.float32)
        act_space = Box(-1.0, 1.0, (1,), np.float32)
        self.observation_spaces = dict.fromkeys(self.agents, obs_space)
        self.action_spaces = dict.fromkeys(self.agents, act_space)
        self._seed: int | None = (
            config.train.seed + 1_000_003 * worker + 7919 * vector_index
        )
        self._pending: np.ndarray | None = None

    def _view(self, obs: np.ndarray) -> dict[str, np.ndarray]:
        flat = np.asarray(obs, dtype=np.float32).reshape(-1, OBS_SIZE)
        return dict(zip(self.agents, flat, strict=True))

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        if seed is not None:
            self._seed, self._pending = seed, None
        if self._pending is not None:
            obs, self._pending = self._pending, None
        else:
            obs = self.venv.reset(seed=self._seed)
            self._seed = None
        return self._view(obs), {}

    def step(self, action_dict: dict[str, Any]):
        raw = np.asarray([action_dict[a] for a in self.agents], dtype=np.float64)
        lam = multipliers(raw.reshape(self.shape), self.lambda_max)
        obs, rew, done, info = self.venv.step(lam)
        ended = bool(done.all())
        if ended:
            self._pending, obs = obs, info["final_obs"]
        rewards = dict(zip(self.agents, rew.reshape(-1).tolist(), strict=True))
        return self._view(obs), rewards, {"__all__": ended}, {"__all__": False}, {}


def _to_module(agent_id, *args, **kwargs) -> str:
    return MODULE


def module_spec(config: SearchDayConfig):
    """The shared RLModule's spec: SB3's ``MlpPolicy`` layout (separate actor and
    critic MLPs of ``train.net_arch``, tanh, a state-independent ``log_std``)."""
    from gymnasium.spaces import Box
    from ray.rllib.algorithms.ppo.torch.default_ppo_torch_rl_module import (
        DefaultPPOTorchRLModule,
    )
    from ray.rllib.core.rl_module.default_model_config import DefaultModelConfig
    from ray.rllib.core.rl_module.rl_module import RLModuleSpec

    return RLModuleSpec(
        module_class=DefaultPPOTorchRLModule,
        observation_space=Box(-np.inf, np.inf, (OBS_SIZE,), np.float32),
        action_space=Box(-1.0, 1.0, (1,), np.float32),
        model_config=DefaultModelConfig(
            fcnet_hiddens=list(config.train.net_arch),
            fcnet_activation="tanh",
            vf_share_layers=False,
            free_log_std=True,
        ),
    )


def _build_algo(
    config: SearchDayConfig, market: SearchMarket, runners: int, device: str
):
    """PPO over :class:`SearchDayMultiAgentEnv` with one shared RLModule."""
    from ray.rllib.algorithms.ppo import PPOConfig
    from ray.rllib.core.rl_module.multi_rl_module import MultiRLModuleSpec

    from training.rllib import DEFAULTS

    tc = config.train
    params = {
        k: v
        for k, v in DEFAULTS.items()
        if k not in ("num_env_runners", "num_envs_per_env_runner")
    }
    params.update(num_epochs=tc.n_epochs, entropy_coeff=tc.ent_coef)
    # one PPO batch: every agent for a day's periods, as SB3's n_steps * n_envs
    batch = config.traffic.periods * tc.parallel_days * market.n
    specs = {MODULE: module_spec(config)}
    env_config = {"config": config, "market": market}
    cfg = (
        PPOConfig()
        .api_stack(
            enable_rl_module_and_learner=True,
            enable_env_runner_and_connector_v2=True,
        )
        .environment(
            SearchDayMultiAgentEnv,
            env_config=env_config,
            disable_env_checking=True,
            normalize_actions=False,
            clip_actions=True,
        )
        .framework("torch")
        .env_runners(
            num_env_runners=runners,
            num_envs_per_env_runner=1,
            num_cpus_per_env_runner=1,
            rollout_fragment_length="auto",
        )
        .learners(num_learners=0, num_gpus_per_learner=int(device == "cuda"))
        .multi_agent(
            policies={MODULE},
            policy_mapping_fn=_to_module,
            policies_to_train=[MODULE],
            count_steps_by="agent_steps",
        )
        .rl_module(rl_module_spec=MultiRLModuleSpec(rl_module_specs=specs))
        .training(
            lr=tc.learning_rate,
            gamma=tc.gamma,
            train_batch_size_per_learner=batch,
            minibatch_size=min(tc.batch_size, batch),
            **params,
        )
        .debugging(seed=tc.seed, log_level="ERROR")
    )
    return cfg.build_algo()


def load_module_state(model, module_state: dict[str, Any]) -> None:
    """Copy an RLModule's weights (``module_spec`` layout) into ``model.policy``."""
    state = {k: np.asarray(v) for k, v in module_state.items()}
    model.policy.load_state_dict(to_sb3_state(state))


def module_state_of(model, module_state: dict[str, Any]) -> dict[str, np.ndarray]:
    """``module_state`` with the weights of ``model.policy`` (the inverse of
    :func:`load_module_state`; RLlib's clip constants kept), so RLlib PPO starts
    from the SB3 trainer's seeded initial policy (SB3's orthogonal init: an
    action mean near 0, i.e. multipliers near 1)."""
    state = {k: np.asarray(v) for k, v in module_state.items()}
    ours = [k for k in state if "clip_param_const" not in k]
    # to_sb3_state renames in order and drops only the clip constants
    sb3 = model.policy.state_dict()
    for key, name in zip(ours, to_sb3_state(state), strict=True):
        state[key] = sb3[name].detach().cpu().numpy().reshape(state[key].shape)
    return state


def train_search_day_rllib(
    config: SearchDayConfig,
    out: str | Path,
    progress: bool = True,
    address: str | None = None,
    num_env_runners: int | None = None,
    market: SearchMarket | None = None,
) -> dict[str, Any]:
    """Train the shared policy with RLlib PPO; write the run folder; return its record.

    Args:
        config: a checked scenario config (``train.backend: rllib``).
        out: the run folder; must not hold a run.
        progress: show a progress bar.
        address: ``HOST:PORT`` of a Ray cluster (default: ``RAY_ADDRESS``, else a
            local Ray in this process).
        num_env_runners: remote env runners (default 0: sampling in this process).
        market: the built market of ``config`` (default: built here).
    """

    tc = config.train
    runners = 0 if num_env_runners is None else int(num_env_runners)
    if runners < 0:
        raise UserError(f"--num-env-runners must be >= 0, got {runners}")
    device = resolve_device(tc.device)
    ray = import_ray()  # before the run folder: without Ray, nothing is created
    if market is None:
        market = build_market(config)
    with RunFolder.fresh(out) as run:
        run.write_text(
            "config.yaml", yaml.safe_dump(dataclasses.asdict(config)), "config"
        )
        with one_torch_thread():
            try:
                init_ray(ray, address, runners)
                algo = _build_algo(config, market, runners, device)
                try:
                    return _loop(algo, config, market, run, progress, device)
                finally:
                    algo.stop()
            finally:
                ray.shutdown()  # also after a failed start: no Ray process left behind


def _loop(
    algo,
    config: SearchDayConfig,
    market: SearchMarket,
    run: RunFolder,
    progress: bool,
    device: str,
) -> dict[str, Any]:
    """PPO iterations with held-out evaluations; the policy and record written."""
    tc = config.train
    per_step = tc.parallel_days * market.n
    model = new_model(config, market, "cpu")
    start = module_state_of(model, module_states(algo)[MODULE])
    set_states(algo, {MODULE: start})
    curve = Curve(config, market)
    bar = progress_bar(None if tc.max_minutes else tc.timesteps, progress, "search_day")
    done, iterations, next_eval = 0, 0, min(tc.eval_every, tc.timesteps)
    while done < tc.timesteps:
        result = algo.train()
        steps = int(result.get("env_runners", {}).get("num_env_steps_sampled", 0))
        if steps <= 0:
            raise RuntimeError(
                "RLlib returned no samples in a training iteration; check the "
                "Ray cluster's workers (`ray status`)"
            )
        done += steps * per_step
        iterations += 1
        if bar is not None:
            bar.update(done - bar.n)
        if done < next_eval and done < tc.timesteps:
            continue
        next_eval = done + tc.eval_every
        load_module_state(model, module_states(algo)[MODULE])
        p = curve.point(model, done)
        if bar is not None:
            bar.set_postfix(score=f"{p['score']:.2f}", pid=f"{p['pid_score']:.2f}")
        if out_of_time(tc.max_minutes, curve.t0):  # as the SB3 trainer: at evaluations
            break
    if bar is not None:
        bar.close()
    seconds = time.perf_counter() - curve.t0
    model.num_timesteps = done
    kept = curve.keep(model, done)
    save_policy(run, model)
    record = {
        "scenario": "search_day",
        "backend": "rllib",
        "timesteps": done,
        "iterations": iterations,
        "seconds": seconds,
        "device": device,
        "kept": {"rule": tc.keep, "timesteps": kept},
        "curve": curve.points,
    }
    run.write_text(RECORD, json.dumps(record, indent=1), "record")
    return record

"""``train: {backend: rllib}``: multi-agent PPO with Ray RLlib, saved in our run format.

The same YAML as the stable-baselines3 trainer (``training.sb3``) drives it:

1. **Learners.** ``kind: learn`` agents are grouped as in ``training.sb3``
   (:func:`training.learners.plan_learners`): one RLModule per role with
   ``share: role``, one per agent with ``share: none``; the module id is the
   learner's name (``buyer``, ``seller`` or an agent name).
2. **Env.** :class:`MarketMultiAgentEnv` is an RLlib ``MultiAgentEnv`` over one
   ``attn_env.vector_env`` batch of ``num_envs`` markets: agent ids are
   ``"<agent>/<market>"`` for every learner seat of every market, so one env step
   is ``num_envs x seats`` agent-steps. Fixed agents play their kinds inside the
   env; each learner's raw Gaussian action is turned into the env's action
   (``env.action``) by its :class:`~training.actions.ActionMap`
   (``train.squash``), exactly as for SB3.
3. **Ray.** By default a local Ray starts in-process (``ray.init(num_cpus=2)``);
   ``--address HOST:PORT`` (or ``RAY_ADDRESS``) joins an existing cluster, where
   ``num_env_runners`` remote env runners each step their own ``vector_env``.
4. **Output.** PPO's RLModule per learner (separate actor and critic MLPs of
   ``net_arch``, tanh, a state-independent ``log_std``) has the very layout of
   an SB3 ``ActorCriticPolicy`` with the same ``net_arch``; its weights are copied
   into one (:func:`to_sb3_state`) and written with ``training.checkpoint`` as
   any SB3 run, so ``load_policy`` and ``attn-market evaluate`` read RLlib runs
   unchanged. The RLModule's own state (part ``rllib``) and its learner's
   optimizer state (part ``optimizer``: Adam's buffers as tensors, its steps and
   ``param_groups`` in the file's JSON index) are kept in the same safetensors
   file for ``--resume``. Nothing is pickled into the run folder.

``train.algo_params`` with this backend take PPO's RLlib options
(:data:`RLLIB_PARAMS`), e.g. ``{num_env_runners: 2, entropy_coeff: 0.001}``.
``train.self_play_pool: P > 0`` plays self-play as ``training.sb3`` does
(``training.selfplay``): a learner holding several seats controls one per
market, its other seats play a pool of its last ``P`` snapshots, one added after
every PPO iteration, saved as ``DIR/pool/<learner>/<steps>.safetensors`` (the
SB3 policy's weights, as the SB3 backend writes them) and listed in the
manifest, so ``--resume`` keeps the pool. The trainer pushes the pool's weights
(numpy) to the env on every env runner (:meth:`MarketMultiAgentEnv.set_pool`).
"""

from __future__ import annotations

import dataclasses
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from attn_env.config import ExperimentConfig
from attn_env.errors import UserError
from training.checkpoint import MANIFEST, WEIGHTS, load_tensors, save_tensors
from training.ray_start import INSTALL_HINT, import_ray, init_ray, parse_address
from training.rllib_env import (
    MarketMultiAgentEnv,
    module_by_agent,
    module_by_role,
    seats_per_market,
)
from training.rllib_pool import pool_board, push_pools
from training.rllib_state import (
    from_storable,
    module_states,
    optimizer_states,
    set_states,
)
from training.rllib_weights import sb3_policy, to_sb3_state
from training.run import RunFolder
from training.selfplay import plays_pool
from training.train_config import RLLIB_PARAMS, check_rllib_params

__all__ = [
    "INSTALL_HINT",
    "RLLIB_PARAMS",
    "MarketMultiAgentEnv",
    "check_rllib_params",
    "parse_address",
    "pool_board",
    "to_sb3_state",
    "train",
]

DEFAULTS: dict[str, Any] = {
    # stable-baselines3's PPO defaults, so both backends learn alike
    "num_env_runners": 0,
    "num_envs_per_env_runner": 1,
    "num_epochs": 10,
    "lambda_": 0.95,
    "clip_param": 0.2,
    "vf_clip_param": 1e6,
    "vf_loss_coeff": 0.5,
    "entropy_coeff": 0.0,
    "use_kl_loss": False,
    "grad_clip": 0.5,
}


def _build_algo(
    config: ExperimentConfig,
    learners,
    params: dict[str, Any],
    pool_board: str | None = None,
):
    from ray.rllib.algorithms.ppo import PPOConfig
    from ray.rllib.core.rl_module.default_model_config import DefaultModelConfig
    from ray.rllib.core.rl_module.multi_rl_module import MultiRLModuleSpec
    from ray.rllib.core.rl_module.rl_module import RLModuleSpec

    tc = config.train
    model = DefaultModelConfig(
        fcnet_hiddens=list(tc.net_arch),
        fcnet_activation="tanh",
        vf_share_layers=False,
        free_log_std=True,
    )
    specs = {
        lr.name: RLModuleSpec(
            observation_space=lr.obs_space,
            action_space=lr.action_map.space(),
            model_config=model,
        )
        for lr in learners
    }
    runners = int(params.pop("num_env_runners"))
    per_runner = int(params.pop("num_envs_per_env_runner"))
    seats = sum(seats_per_market(lr, tc) for lr in learners)
    # one env step plays num_envs markets; a PPO batch is n_steps of them, counted
    # in agent-steps as SB3's n_steps * n_envs
    batch = tc.n_steps * tc.num_envs * seats
    # RLlib slices each module's batch by agent-steps, as SB3's batch_size
    minibatch = params.pop("minibatch_size", tc.batch_size)
    cfg = (
        PPOConfig()
        .api_stack(
            enable_rl_module_and_learner=True,
            enable_env_runner_and_connector_v2=True,
        )
        .environment(
            MarketMultiAgentEnv,
            env_config={
                "experiment": config,
                "num_envs": tc.num_envs,
                "pool_board": pool_board,
            },
            disable_env_checking=True,
            normalize_actions=False,
            clip_actions=True,
        )
        .framework("torch")
        .env_runners(
            num_env_runners=runners,
            num_envs_per_env_runner=per_runner,
            num_cpus_per_env_runner=1,
            rollout_fragment_length="auto",
        )
        .learners(num_learners=0)
        .multi_agent(
            policies=set(specs),
            policy_mapping_fn=(
                module_by_role if tc.share == "role" else module_by_agent
            ),
            policies_to_train=list(specs),
            count_steps_by="agent_steps",
        )
        .rl_module(rl_module_spec=MultiRLModuleSpec(rl_module_specs=specs))
        .training(
            lr=tc.learning_rate,
            gamma=tc.gamma,
            train_batch_size_per_learner=batch,
            minibatch_size=int(minibatch),
            **params,
        )
        .debugging(seed=config.seed, log_level="ERROR")
    )
    return cfg, cfg.build_algo(), seats


class _Log:
    """Progress bar and TensorBoard scalars per PPO iteration."""

    def __init__(self, run: RunFolder, total: int, start: int, progress: bool) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(str(run.tb_folder("rllib")))
        self.bar = None
        if progress:
            from tqdm.auto import tqdm

            self.bar = tqdm(
                total=total, initial=start, unit="step", desc="train (rllib)"
            )

    def update(self, done: int, added: int, result: dict[str, Any], rate: float):
        runners = result.get("env_runners", {})
        ret = runners.get("episode_return_mean")
        scalars = {"rollout/agent_steps_per_s": rate}
        if isinstance(ret, int | float) and np.isfinite(ret):
            scalars["rollout/ep_rew_mean"] = float(ret)
        for mid, stats in (result.get("learners") or {}).items():
            if not isinstance(stats, dict):
                continue
            for key in ("policy_loss", "vf_loss", "entropy", "curr_kl_coeff"):
                v = stats.get(key)
                if isinstance(v, int | float | np.floating) and np.isfinite(v):
                    scalars[f"{mid}/{key}"] = float(v)
        for key, v in scalars.items():
            self.writer.add_scalar(key, v, done)
        if self.bar is not None:
            self.bar.update(added)
            if "rollout/ep_rew_mean" in scalars:
                self.bar.set_postfix_str(f"ret={scalars['rollout/ep_rew_mean']:.4f}")

    def close(self) -> None:
        self.writer.close()
        if self.bar is not None:
            self.bar.close()


def train(
    config: ExperimentConfig,
    out: str | Path,
    resume: bool = False,
    progress: bool = True,
    address: str | None = None,
    num_env_runners: int | None = None,
) -> dict[str, Any]:
    """Train ``config``'s learners with RLlib PPO into run folder ``out``.

    Args:
        config: the experiment (``train.backend: rllib``).
        out: the run folder; must not hold a run unless ``resume``.
        resume: continue from the last checkpoint: RLModule weights and the
            learner's optimizer state (Adam's moments and steps).
        progress: show a progress bar.
        address: ``HOST:PORT`` of an existing Ray cluster (default:
            ``RAY_ADDRESS``, else a local Ray in this process).
        num_env_runners: override ``train.algo_params.num_env_runners``.

    Returns:
        The final manifest (timesteps, learners, checkpoint, wall time).
    """
    from training.train_config import check_train_config

    check_train_config(config.train)
    params = {**DEFAULTS, **config.train.algo_params}
    if num_env_runners is not None:
        if num_env_runners < 0:
            raise UserError(f"--num-env-runners must be >= 0, got {num_env_runners}")
        params["num_env_runners"] = num_env_runners
    ray = import_ray()  # before the run folder: without Ray, nothing is created
    if resume:
        run, old = RunFolder.resume(out)
    else:
        run, old = RunFolder.fresh(out), None
    try:
        job = _RllibRun(config, run, old, params)
        try:
            init_ray(ray, address, int(params["num_env_runners"]))
            return job.train(ray, progress)
        finally:
            job.stop()
            ray.shutdown()  # also after a failed start: no Ray process left behind
    finally:
        run.close()


class _RllibRun:
    """One RLlib training run into a locked :class:`~training.run.RunFolder`."""

    def __init__(
        self,
        config: ExperimentConfig,
        run: RunFolder,
        old: dict[str, Any] | None,
        params: dict[str, Any],
    ) -> None:
        import torch

        from training.learners import plan_learners

        self.config, self.run, self.old, self.tc = config, run, old, config.train
        self.params, self.hyper = params, dict(params)
        self.algo: Any = None
        if old is not None and old.get("backend") != "rllib":
            raise UserError(
                f"cannot resume {str(run.path)!r} with backend rllib: it was trained "
                f"with {str(old.get('backend', 'sb3'))[:20]}"
            )
        torch.set_num_threads(self.tc.threads)
        self.names = _agent_names(config)
        self.learners = plan_learners(config, self.names)
        obs_space = _obs_space(config)
        for lr in self.learners:
            lr.obs_space = obs_space
            entry = None if old is None else old["learners"].get(lr.name)
            if old is not None and (
                entry is None or entry["action"] != dataclasses.asdict(lr.action_map)
            ):
                raise UserError(
                    f"cannot resume {str(run.path)!r}: learner {lr.name!r} is new "
                    "or its action map changed"
                )
        self.state = {"iterations": 0, "wall_s": 0.0, "env_steps": 0}

    def stop(self) -> None:
        """Stop the algorithm's actors (env runners), if it was built."""
        if self.algo is not None:
            self.algo.stop()
            self.algo = None

    def train(self, ray: Any, progress: bool) -> dict[str, Any]:
        """Build PPO, resume, then train to ``total_timesteps``; the final manifest."""
        from training.selfplay import SnapshotPool

        tc = self.tc
        self.board = board_name = None
        if any(plays_pool(lr.seats, tc.self_play_pool) for lr in self.learners):
            board_name = f"attn_market_pools_{uuid.uuid4().hex[:12]}"
            self.board = pool_board(ray, board_name)
        _cfg, self.algo, seats = _build_algo(
            self.config, self.learners, self.params, board_name
        )
        self.per_env_step = tc.num_envs * seats
        self.pools = {
            lr.name: SnapshotPool(tc.self_play_pool, lr.action_map, self.run, lr.name)
            for lr in self.learners
            if plays_pool(lr.seats, tc.self_play_pool)
        }
        if self.old is not None:
            self._resume(self.old)
        from training.learners import write_config

        write_config(self.run, self.config)
        self._snapshot(empty_only=True)  # a fresh pool starts with the initial policy
        push_pools(self.algo, self.pools, self.board)
        return self._loop(progress)

    def _resume(self, old: dict[str, Any]) -> None:
        """Load the checkpoint's RLModules, optimizers and self-play pools."""
        from training.policy import build_policy

        states, optimizers = {}, {}
        for lr in self.learners:
            entry = old["learners"][lr.name]
            path = self.run.checkpoint_file(old, entry["model"], "model")
            saved = load_tensors(path)
            if not isinstance(saved, dict) or not isinstance(saved.get("rllib"), dict):
                raise UserError(
                    f"{path}: no RLModule state (part 'rllib'); cannot resume it "
                    "with backend rllib"
                )
            states[lr.name] = {k: np.asarray(v) for k, v in saved["rllib"].items()}
            # runs saved before the optimizer was kept resume with a fresh one
            optimizers.update(from_storable(saved.get("optimizer") or {}))
        set_states(self.algo, states, optimizers)
        for name, pool in self.pools.items():
            files = list(old["pool"].get(name, []))
            spec = old["learners"][name]["policy"]
            try:
                pool.restore(lambda s=spec: build_policy("ppo", s), files, "cpu")
            except UserError as err:
                raise UserError(
                    f"{self.run.path / MANIFEST}: learner {name!r}: {err}"
                ) from None
        self.state = {
            "iterations": int(old.get("iterations", 0)),
            "wall_s": float(old.get("wall_s", 0.0)),
            "env_steps": int(old["timesteps"]) // self.per_env_step,
        }

    def _learner_steps(self, lr: Any) -> int:
        return (
            self.state["env_steps"] * self.tc.num_envs * seats_per_market(lr, self.tc)
        )

    def _snapshot(self, empty_only: bool = False) -> None:
        """Add the current policy of every self-play learner to its pool."""
        if not self.pools:
            return
        mods = module_states(self.algo)
        for lr in self.learners:
            pool = self.pools.get(lr.name)
            if pool is not None and not (empty_only and pool.members):
                mod = {k: np.asarray(v) for k, v in mods[lr.name].items()}
                policy = sb3_policy(lr, self.tc.net_arch, to_sb3_state(mod))
                pool.add(policy, self._learner_steps(lr))

    def _entry(self, lr: Any, policy: Any) -> dict[str, Any]:
        """The manifest entry of learner ``lr``."""
        from training.policy import policy_spec

        return {
            "role": lr.role,
            "seats": [self.names[s] for s in lr.seats],
            "algo": "ppo",
            "backend": "rllib",
            "action": dataclasses.asdict(lr.action_map),
            "timesteps": self._learner_steps(lr),
            "n_updates": self.state["iterations"],
            "episode_num": 0,
            "model": f"{lr.name}{WEIGHTS}",
            "policy": policy_spec(policy),
            "sb3": {},
            "rllib": self.hyper,
        }

    def save(self, finished: bool) -> dict[str, Any]:
        """Write a checkpoint of every learner now; returns the manifest."""
        import torch

        mods, optims = module_states(self.algo), optimizer_states(self.algo)
        entries, saves = {}, {}
        for lr in self.learners:
            mod = {k: np.asarray(v) for k, v in mods[lr.name].items()}
            policy = sb3_policy(lr, self.tc.net_arch, to_sb3_state(mod))
            entries[lr.name] = self._entry(lr, policy)
            tensors = {
                "policy": policy.state_dict(),
                "rllib": {k: torch.as_tensor(v) for k, v in mod.items()},
                # Adam's buffers as tensors; steps and param_groups in the JSON index
                "optimizer": {
                    name: o
                    for name, o in optims.items()
                    if o.get("module_id") == lr.name
                },
            }
            saves[f"{lr.name}{WEIGHTS}"] = lambda p, t=tensors: save_tensors(p, t)
        manifest = {
            "algo": "ppo",
            "backend": "rllib",
            "mechanism": self.config.env.mechanism,
            "seed": self.config.seed,
            "agents": self.names,
            "timesteps": self.state["env_steps"] * self.per_env_step,
            "total_timesteps": self.tc.total_timesteps,
            "finished": finished,
            "learners": entries,
            "pool": {name: list(pool.files) for name, pool in self.pools.items()},
            "turns": self.state["iterations"],
            **self.state,
        }
        self.run.write_checkpoint(manifest["timesteps"], saves, manifest)
        for pool in self.pools.values():
            pool.prune_files()  # after the manifest stopped naming them
        return self.run.read_manifest()

    def _iterate(self) -> tuple[int, dict[str, Any]]:
        """One PPO iteration; the agent-steps it added and RLlib's result."""
        result = self.algo.train()
        env_steps = int(result.get("env_runners", {}).get("num_env_steps_sampled", 0))
        if env_steps <= 0:
            raise RuntimeError(
                "RLlib returned no samples in a training iteration; check the "
                "Ray cluster's workers (`ray status`)"
            )
        self.state["env_steps"] += env_steps
        self.state["iterations"] += 1
        self._snapshot()
        push_pools(self.algo, self.pools, self.board)
        return env_steps * self.per_env_step, result

    def _loop(self, progress: bool) -> dict[str, Any]:
        """Train up to ``total_timesteps``, checkpointing on the way."""
        tc = self.tc
        done = last_ckpt = self.state["env_steps"] * self.per_env_step
        log = _Log(
            self.run, tc.total_timesteps, min(done, tc.total_timesteps), progress
        )
        t0 = time.perf_counter() - self.state["wall_s"]
        try:
            while done < tc.total_timesteps:
                t1 = time.perf_counter()
                added, result = self._iterate()
                done += added
                log.update(done, added, result, added / (time.perf_counter() - t1))
                if (
                    done - last_ckpt >= tc.checkpoint_every
                    and done < tc.total_timesteps
                ):
                    self.state["wall_s"] = time.perf_counter() - t0
                    self.save(False)
                    last_ckpt = done
            self.state["wall_s"] = time.perf_counter() - t0
            return self.save(True)
        finally:
            log.close()


def _agent_names(config: ExperimentConfig) -> list[str]:
    """The market's agent names, without building a market."""
    from attn_env.config import make_config
    from attn_env.core import MarketSpec

    return list(MarketSpec.from_config(make_config(config.env)).agents)


def _obs_space(config: ExperimentConfig) -> Any:
    """The observation space of one seat, as float32 (RLlib's modules are)."""
    from gymnasium.spaces import Box

    import attn_env

    space = attn_env.vector_env(1, config=config.env).single_observation_space
    return Box(
        np.asarray(space.low, np.float32),
        np.asarray(space.high, np.float32),
        dtype=np.float32,
    )

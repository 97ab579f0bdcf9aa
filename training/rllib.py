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
(:data:`RLLIB_PARAMS`), e.g. ``{num_env_runners: 2, entropy_coeff: 0.001}``,
and ``log_std_init``, the policy's initial ``log_std``: unset, it is 0 (RLlib's
and SB3's start) except under ``squash: clip``, where it is ``log(1/4)``
(:data:`CLIP_LOG_STD`): ``configs/fpsb_n2.yaml`` with only ``backend: rllib``
added then reaches ``bne_l2 <= 0.05`` within 300k agent-steps (docs/training.md).
``train.self_play_pool: P > 0`` plays self-play as ``training.sb3`` does
(``training.selfplay``): a learner holding several seats controls one per
market, its other seats play a pool of its last ``P`` snapshots, one added after
every PPO iteration, saved as ``DIR/pool/<learner>/<steps>.safetensors`` (the
SB3 policy's weights, as the SB3 backend writes them) and listed in the
manifest, so ``--resume`` keeps the pool. The trainer pushes the pool's weights
(numpy) to the env on every env runner (:meth:`MarketMultiAgentEnv.set_pool`).
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from attn_env.config import ExperimentConfig
from attn_env.errors import UserError
from training.actions import map_mode
from training.checkpoint import save_tensors
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
from training.run import RunFolder, RunManifest
from training.selfplay import plays_pool
from training.skeleton import TrainingRun
from training.train_config import RLLIB_PARAMS, check_rllib_params

__all__ = [
    "INSTALL_HINT",
    "RLLIB_PARAMS",
    "MarketMultiAgentEnv",
    "RllibRun",
    "check_rllib_params",
    "log_std_default",
    "parse_address",
    "pool_board",
    "rllib_params",
    "session",
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
CLIP_LOG_STD = float(np.log(0.25))
"""Initial ``log_std`` under ``squash: clip`` when ``algo_params.log_std_init`` is
unset: the spread in ``s`` that an untrained ``squash: sigmoid`` policy has at
``s = 1/2`` (the sigmoid's slope there is 1/4). With SB3's start (``log_std`` 0:
one standard deviation is the whole of ``[0, 1]``) RLlib PPO on
``configs/fpsb_n2.yaml`` was at ``bne_l2`` 0.076 after 204,800 agent-steps;
from this start the same YAML reaches ``bne_l2 <= 0.05`` within 300k
(docs/training.md, docs/rl_libraries.md)."""


def log_std_default(mode: str) -> float:
    """The RLlib backend's initial ``log_std`` for action-map ``mode`` when the
    config sets none: :data:`CLIP_LOG_STD` for ``shade_clip``, else 0 (RLlib's
    and SB3's own start)."""
    return CLIP_LOG_STD if mode == "shade_clip" else 0.0


def _module_specs(learners, tc) -> dict[str, Any]:
    """One PPO RLModule spec per learner, laid out as an SB3 ``ActorCriticPolicy``
    (separate actor and critic MLPs of ``net_arch``, tanh, a free ``log_std``)."""
    from ray.rllib.core.rl_module.default_model_config import DefaultModelConfig
    from ray.rllib.core.rl_module.rl_module import RLModuleSpec

    model = DefaultModelConfig(
        fcnet_hiddens=list(tc.net_arch),
        fcnet_activation="tanh",
        vf_share_layers=False,
        free_log_std=True,
    )
    return {
        lr.name: RLModuleSpec(
            observation_space=lr.obs_space,
            action_space=lr.action_map.space(),
            model_config=model,
        )
        for lr in learners
    }


HARMONIC_POINTS_PER_DOUBLING = 4
"Points of RLlib's schedule for ``lr_decay_steps`` per doubling of ``1 + t / N``."


def _learning_rate(tc, seats: int) -> float | list[list[float]]:
    """``train.learning_rate``, or RLlib's piecewise schedule of its decay over
    agent-steps (RLlib's schedule counts env steps, each ``num_envs`` markets
    of ``seats`` learner seats): with ``anneal_lr`` linear to 0 at
    ``total_timesteps``; with ``lr_decay_steps`` the harmonic decay through
    points where ``1 + t / lr_decay_steps`` is a power of ``2 ** (1/4)``
    (linear between them: within 1 % of the curve), up to ``total_timesteps``."""
    per_step = tc.num_envs * seats
    end = max(1, tc.total_timesteps // per_step)
    if tc.lr_decay_steps is not None:
        decay = tc.lr_decay_steps / per_step
        ratio = 2.0 ** (1.0 / HARMONIC_POINTS_PER_DOUBLING)
        steps, k = [], 0
        while (t := round(decay * (ratio**k - 1.0))) < end:
            steps += [t] if t not in steps else []
            k += 1
        return [[t, tc.learning_rate / (1.0 + t / decay)] for t in [*steps, end]]
    if not tc.anneal_lr:
        return tc.learning_rate
    return [[0, tc.learning_rate], [end, 0.0]]


def _build_algo(
    config: ExperimentConfig,
    learners,
    params: dict[str, Any],
    pool_board: str | None = None,
):
    """PPO on :class:`MarketMultiAgentEnv` with ``params`` (RLlib's options and
    ours, consumed here); ``(config, algorithm, learner seats per market)``."""
    from ray.rllib.algorithms.ppo import PPOConfig
    from ray.rllib.core.rl_module.multi_rl_module import MultiRLModuleSpec

    tc = config.train
    specs = _module_specs(learners, tc)
    runners = int(params.pop("num_env_runners"))
    per_runner = int(params.pop("num_envs_per_env_runner"))
    seats = sum(seats_per_market(lr, tc) for lr in learners)
    # one env step plays num_envs markets; a PPO batch is n_steps of them, counted
    # in agent-steps as SB3's n_steps * n_envs
    batch = tc.n_steps * tc.num_envs * seats
    # RLlib slices each module's batch by agent-steps, as SB3's batch_size
    minibatch = params.pop("minibatch_size", tc.batch_size)
    log_std_init = float(params.pop("log_std_init"))
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
            lr=_learning_rate(tc, seats),
            gamma=tc.gamma,
            train_batch_size_per_learner=batch,
            minibatch_size=int(minibatch),
            **params,
        )
        .debugging(seed=config.seed, log_level="ERROR")
    )
    algo = cfg.build_algo()
    _set_log_std(algo, [lr.name for lr in learners], log_std_init)
    return cfg, algo, seats


def _set_log_std(algo, names: list[str], value: float) -> None:
    """Start every module's state-independent ``log_std`` at ``value``."""
    if value == 0.0:  # RLlib's own start
        return
    states = module_states(algo)
    fresh = {}
    for name in names:
        mod = {k: np.asarray(v) for k, v in states[name].items()}
        mod["pi.log_std"] = np.full_like(mod["pi.log_std"], value)
        fresh[name] = mod
    set_states(algo, fresh)


class _Log:
    """Progress bar and TensorBoard scalars per PPO iteration.

    Args:
        job: the run; its ``last_result`` (RLlib's result dict) and ``last_rate``
            (agent-steps/s) describe the iteration just done.
    """

    def __init__(self, job: RllibRun, total: int, start: int, progress: bool) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.job = job
        self.writer = SummaryWriter(str(job.folder.tb_folder("rllib")))
        self.bar = None
        if progress:
            from tqdm.auto import tqdm

            self.bar = tqdm(
                total=total, initial=start, unit="step", desc="train (rllib)"
            )

    def update(self, done: int, added: int) -> None:
        """Log the iteration that brought the run to ``done`` agent-steps."""
        scalars = _scalars(self.job.last_result, self.job.last_rate)
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


def _scalars(result: dict[str, Any], rate: float) -> dict[str, float]:
    """TensorBoard scalars of one RLlib result: speed, return, per-module losses."""
    ret = result.get("env_runners", {}).get("episode_return_mean")
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
    return scalars


def rllib_params(
    config: ExperimentConfig, num_env_runners: int | None = None
) -> dict[str, Any]:
    """RLlib PPO options of ``config``: :data:`DEFAULTS`, then
    ``train.algo_params``, then ``num_env_runners`` if given; ``log_std_init``
    from :func:`log_std_default` when the config sets none."""
    # the config's PPO epochs, as the sb3 backend reads them (algo_params win)
    params = {
        **DEFAULTS,
        "num_epochs": config.train.n_epochs,
        **config.train.algo_params,
    }
    mode = map_mode(config.env.actions, config.train.squash)
    params.setdefault("log_std_init", log_std_default(mode))
    if num_env_runners is not None:
        if num_env_runners < 0:
            raise UserError(f"--num-env-runners must be >= 0, got {num_env_runners}")
        params["num_env_runners"] = num_env_runners
    return params


@contextlib.contextmanager
def session(
    config: ExperimentConfig,
    out: str | Path,
    resume: bool = False,
    address: str | None = None,
    num_env_runners: int | None = None,
) -> Iterator[RllibRun]:
    """A started :class:`RllibRun` on a running Ray (built, resumed, config
    written); Ray, its actors and the run folder's lock are released on exit."""
    from training.train_config import check_train_config

    check_train_config(config.train)
    params = rllib_params(config, num_env_runners)
    ray = import_ray()  # before the run folder: without Ray, nothing is created
    if resume:
        run, old = RunFolder.resume(out)
    else:
        run, old = RunFolder.fresh(out), None
    try:
        job = RllibRun(config, run, old, params)
        try:
            init_ray(ray, address, int(params["num_env_runners"]))
            job.start_ray(ray)
            yield job
        finally:
            job.stop()
            ray.shutdown()  # also after a failed start: no Ray process left behind
    finally:
        run.close()


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
    with session(config, out, resume, address, num_env_runners) as job:
        return job.loop(progress)


class RllibRun(TrainingRun):
    """One RLlib training run into a locked :class:`~training.run.RunFolder`.

    :class:`~training.skeleton.TrainingRun` holds the run folder, manifest,
    resume checks, self-play pools and the checkpoint loop; this class builds
    PPO, moves RLModule and optimizer state in and out, and runs iterations.
    """

    backend = "rllib"

    def __init__(
        self,
        config: ExperimentConfig,
        run: RunFolder,
        old: RunManifest | None,
        params: dict[str, Any],
    ) -> None:
        import torch

        super().__init__(
            config,
            run,
            old,
        )
        self.params, self.hyper = params, dict(params)
        self.algo: Any = None
        self.ray: Any = None
        self.board: Any = None
        self.last_result: dict[str, Any] = {}
        self.last_rate = 0.0
        torch.set_num_threads(self.tc.threads)
        obs_space = _obs_space(config)
        for lr in self.learners:
            lr.obs_space = obs_space
        seats = sum(seats_per_market(lr, self.tc) for lr in self.learners)
        self.per_env_step = self.tc.num_envs * seats
        "Agent-steps of one env step (``num_envs`` markets, every learner seat)."
        self.state.update(iterations=0, env_steps=0)
        if old is not None:
            self.state.update(
                iterations=old.iterations or 0,
                env_steps=old.timesteps // self.per_env_step,
            )

    def start_ray(self, ray: Any) -> None:
        """Build PPO on the running Ray, restore a resumed run, push the pools."""
        self.ray = ray
        self.start()
        push_pools(self.algo, self._pools(), self.board)

    def stop(self) -> None:
        """Stop the algorithm's actors (env runners), if it was built."""
        if self.algo is not None:
            self.algo.stop()
            self.algo = None

    def _pools(self) -> dict[str, Any]:
        return {lr.name: lr.pool for lr in self.learners if lr.pool is not None}

    # -- the backend's hooks ----------------------------------------------------------

    def build_models(self, old: RunManifest | None) -> None:
        """PPO with one RLModule per learner, and the self-play pools (with a pool
        board that env runners Ray restarts read them from)."""
        from training.selfplay import SnapshotPool

        tc = self.tc
        board_name = None
        if any(plays_pool(lr.seats, tc.self_play_pool) for lr in self.learners):
            board_name = f"attn_market_pools_{uuid.uuid4().hex[:12]}"
            self.board = pool_board(self.ray, board_name)
        _cfg, self.algo, _seats = _build_algo(
            self.config, self.learners, self.params, board_name
        )
        for lr in self.learners:
            if plays_pool(lr.seats, tc.self_play_pool):
                lr.pool = SnapshotPool(
                    tc.self_play_pool, lr.action_map, self.folder, lr.name
                )

    def load_state(self, old: RunManifest, saved: dict[str, tuple[Any, Path]]) -> None:
        """Load the checkpoint's RLModules and optimizers into the learner."""
        states, optimizers = {}, {}
        for lr in self.learners:
            tree, path = saved[lr.name]
            if not isinstance(tree, dict) or not isinstance(tree.get("rllib"), dict):
                raise UserError(
                    f"{path}: no RLModule state (part 'rllib'); cannot resume it "
                    "with backend rllib"
                )
            states[lr.name] = {k: np.asarray(v) for k, v in tree["rllib"].items()}
            # runs saved before the optimizer was kept resume with a fresh one
            optimizers.update(from_storable(tree.get("optimizer") or {}))
        set_states(self.algo, states, optimizers)

    def save_state(self, lr: Any) -> tuple[Any, Any]:
        """The SB3 policy of ``lr``'s RLModule; its writer saves the policy, the
        RLModule's own state and its optimizer's."""
        import torch

        mod = {k: np.asarray(v) for k, v in module_states(self.algo)[lr.name].items()}
        policy = sb3_policy(lr, self.tc.net_arch, to_sb3_state(mod))
        optims = optimizer_states(self.algo)
        tensors = {
            "policy": policy.state_dict(),
            "rllib": {k: torch.as_tensor(v) for k, v in mod.items()},
            # Adam's buffers as tensors; steps and param_groups in the JSON index
            "optimizer": {
                name: o for name, o in optims.items() if o.get("module_id") == lr.name
            },
        }
        return policy, (lambda path, t=tensors: save_tensors(path, t))

    def train_chunk(self) -> list[Any]:
        """One PPO iteration (every learner trains)."""
        t0 = time.perf_counter()
        result = self.algo.train()
        env_steps = int(result.get("env_runners", {}).get("num_env_steps_sampled", 0))
        if env_steps <= 0:
            raise RuntimeError(
                "RLlib returned no samples in a training iteration; check the "
                "Ray cluster's workers (`ray status`)"
            )
        self.state["env_steps"] += env_steps
        self.state["iterations"] += 1
        self.last_result = result
        self.last_rate = env_steps * self.per_env_step / (time.perf_counter() - t0)
        return list(self.learners)

    def snapshot(self, learners: list[Any]) -> None:
        """Add the new policies to the pools and push them to every env runner."""
        super().snapshot(learners)
        push_pools(self.algo, self._pools(), self.board)

    def learner_steps(self, lr: Any) -> int:
        return (
            self.state["env_steps"] * self.tc.num_envs * seats_per_market(lr, self.tc)
        )

    def record(self, lr: Any) -> dict[str, Any]:
        return {
            "n_updates": self.state["iterations"],
            "episode_num": 0,
            "sb3": {},
            "rllib": self.hyper,
        }

    def run_record(self) -> dict[str, Any]:
        return {
            "iterations": self.state["iterations"],
            "env_steps": self.state["env_steps"],
        }

    def open_log(self, total: int, start: int, enabled: bool) -> _Log:
        return _Log(self, total, start, enabled)


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

"""``train: {backend: rllib}``: multi-agent PPO with Ray RLlib, saved in our run format.

The same YAML as the stable-baselines3 trainer (``training.sb3``) drives it:

1. **Learners.** ``kind: learn`` agents are grouped as in ``training.sb3``
   (:func:`training.sb3.plan_learners`): one RLModule per role with
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
import os
import socket
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from attn_env.config import ExperimentConfig
from attn_env.observation import role_of
from training.checkpoint import (
    MANIFEST,
    WEIGHTS,
    check_run_manifest,
    inside_run,
    load_tensors,
    read_manifest,
    save_tensors,
    write_checkpoint,
)
from training.selfplay import plays_pool
from training.train_config import RLLIB_PARAMS, check_rllib_params

__all__ = [
    "RLLIB_PARAMS",
    "MarketMultiAgentEnv",
    "check_rllib_params",
    "to_sb3_state",
    "train",
]

INSTALL_HINT = 'Ray RLlib is not installed; run `pip install -e ".[rllib]"`'
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
SEP = "/"
"Agent ids of the RLlib env: ``<agent name>/<market index>``."


def _import_ray():
    try:
        import ray
        from ray.rllib.env.multi_agent_env import MultiAgentEnv  # noqa: F401
    except ImportError:
        raise ValueError(INSTALL_HINT) from None
    return ray


# -- the env -----------------------------------------------------------------------


def _env_base() -> type:
    try:
        from ray.rllib.env.multi_agent_env import MultiAgentEnv
    except ImportError:  # the module imports without ray; the env needs it
        return object
    return MultiAgentEnv


class MarketMultiAgentEnv(_env_base()):
    """An RLlib ``MultiAgentEnv`` over a ``vector_env`` batch of markets.

    With ``train.self_play_pool: P > 0``, a learner holding several seats
    controls one seat per market (seat ``m mod n_seats`` in market ``m``, as
    ``training.sb3``); its other seats are played by :attr:`pools`, frozen past
    policies that the trainer pushes with :meth:`set_pool` after every
    training iteration (one drawn per market and round, sampling, acting in the
    env's units).

    Args:
        env_config: ``{"experiment": ExperimentConfig, "num_envs": int}``
            (``num_envs`` defaults to ``train.num_envs``); RLlib's
            ``EnvContext`` adds ``worker_index``, which offsets the seed so every
            env runner plays its own markets.
    """

    def __init__(self, env_config: dict[str, Any] | None = None) -> None:
        super().__init__()
        from agents import for_market
        from attn_env.config import make_config
        from attn_env.core import MarketSpec
        from attn_env.players import Seats
        from training.sb3 import plan_learners, training_env
        from training.selfplay import PoolPlayer, SnapshotPool, seat_matrix

        # RLlib's EnvContext carries the runner's index as attributes
        worker = int(getattr(env_config, "worker_index", 0))
        vector_index = int(getattr(env_config, "vector_index", 0))
        env_config = dict(env_config or {})
        config: ExperimentConfig = env_config["experiment"]
        n = int(env_config.get("num_envs", config.train.num_envs))
        names = MarketSpec.from_config(make_config(config.env)).agents
        self.learners = plan_learners(config, names)
        action = self.learners[0].action_map.env_action  # one env.action for all
        self.venv = training_env(config, n, action)
        self.n_markets = n
        self.net_arch = list(config.train.net_arch)
        owner = {s: lr for lr in self.learners for s in lr.seats}
        self.pools: dict[str, SnapshotPool] = {
            lr.name: SnapshotPool(config.train.self_play_pool, lr.action_map)
            for lr in self.learners
            if plays_pool(lr.seats, config.train.self_play_pool)
        }
        self._tags: dict[str, list[Any]] = {name: [] for name in self.pools}
        players = []
        for j, name in enumerate(names):
            spec = config.agent_spec(name)
            if j not in owner:
                players.append(for_market(spec.kind, spec.params, config.env))
            elif owner[j].name in self.pools:
                # every seat of its role; the learner's own seats are overwritten
                players.append(PoolPlayer(self.pools[owner[j].name]))
            else:
                players.append(None)
        self.others = Seats(players, n_buyers=config.env.n_buyers)
        self._seed: int | None = config.seed + 1_000_003 * worker + 7919 * vector_index
        self._rng = np.random.default_rng(self._seed)
        # (seat, agent name, learner, markets where the learner plays that seat)
        self._seats = []
        for j in sorted(owner):
            lr = owner[j]
            plays = seat_matrix(lr.seats, n, config.train.self_play_pool)
            markets = np.flatnonzero((plays == j).any(axis=1))
            if len(markets):
                self._seats.append((j, names[j], lr, markets))
        self._ids = {
            j: [f"{name}{SEP}{m}" for m in markets]
            for j, name, _, markets in self._seats
        }
        space = self.venv.single_observation_space
        from gymnasium.spaces import Box

        obs_space = Box(
            np.asarray(space.low, np.float32),
            np.asarray(space.high, np.float32),
            dtype=np.float32,
        )
        for lr in self.learners:
            lr.obs_space = obs_space
        self.agents = [a for j, *_ in self._seats for a in self._ids[j]]
        self.possible_agents = list(self.agents)
        self.observation_spaces = dict.fromkeys(self.agents, obs_space)
        self.action_spaces = {
            a: lr.action_map.space()
            for j, _, lr, _ in self._seats
            for a in self._ids[j]
        }
        self._obs: np.ndarray | None = None
        self._pending: np.ndarray | None = None
        self._board: str | None = env_config.get("pool_board")

    def set_pool(self, name: str, members: list[tuple[Any, dict[str, Any]]]) -> int:
        """Replace learner ``name``'s self-play pool: ``[(tag, SB3 state dict)]``.

        State dicts hold numpy arrays (an SB3 ``ActorCriticPolicy``'s, as
        :func:`to_sb3_state` gives); members already held (same tag) are kept.
        Returns the pool's size.
        """
        import torch

        pool = self.pools[name]
        lr = next(x for x in self.learners if x.name == name)
        held = dict(zip(self._tags[name], pool.members, strict=True))
        pool.members, self._tags[name] = [], []
        for tag, state in members[-pool.size :]:
            member = held.get(tag)
            if member is None:
                weights = {k: torch.as_tensor(np.asarray(v)) for k, v in state.items()}
                member = pool.as_member(_sb3_policy(lr, self.net_arch, weights))
            pool.members.append(member)
            self._tags[name].append(tag)
        return len(pool.members)

    def _view(self, obs: np.ndarray) -> dict[str, np.ndarray]:
        return {
            a: obs[m, j]
            for j, _, _, markets in self._seats
            for m, a in zip(markets, self._ids[j], strict=True)
        }

    def _pull_pools(self) -> None:
        """Fill empty pools from the trainer's pool board (a restarted runner)."""
        if not self._board or all(p.members for p in self.pools.values()):
            return
        import ray

        payload = ray.get(ray.get_actor(self._board).get.remote())
        for name, members in payload.items():
            if name in self.pools and members:
                self.set_pool(name, members)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        self._pull_pools()
        if seed is not None:
            self._seed, self._pending = seed, None
            self._rng = np.random.default_rng(seed)
        if self._pending is not None:
            # the vector env already started the next episode (same-step autoreset)
            obs, self._pending = self._pending, None
        else:
            obs, _ = self.venv.reset(seed=self._seed)
            self._seed = None
        self.others.reset(self.n_markets, self._rng)
        self._obs = np.asarray(obs, dtype=np.float32)
        return self._view(self._obs), {}

    def step(self, action_dict: dict[str, Any]):
        obs = self._obs
        full = self.others.act(obs, self._rng)
        for j, _, lr, markets in self._seats:
            raw = np.asarray([action_dict[a] for a in self._ids[j]], np.float64)
            full[markets, j, :] = lr.action_map.to_action(raw.reshape(-1, 1))
        nxt, rew, term, trunc, info = self.venv.step(full)
        self.others.observe(info)
        done = bool(np.any(term) or np.any(trunc))
        nxt = np.asarray(nxt, dtype=np.float32)
        if done:
            # every market plays the same number of rounds: all end together
            final = np.asarray(info.get("final_obs", nxt), dtype=np.float32)
            self._pending, out = nxt, final
        else:
            self._obs = out = nxt
        rew = np.asarray(rew, dtype=np.float64)
        rewards = {
            a: float(rew[m, j])
            for j, _, _, markets in self._seats
            for m, a in zip(markets, self._ids[j], strict=True)
        }
        return (
            self._view(out),
            rewards,
            {"__all__": done},
            {"__all__": False},
            {},
        )


def _seats_per_market(lr, tc) -> int:
    """Seats ``lr`` plays in each market: one under self-play, else all of them."""
    return 1 if plays_pool(lr.seats, tc.self_play_pool) else len(lr.seats)


def _module_by_role(agent_id, *args, **kwargs) -> str:
    return role_of(str(agent_id).rsplit(SEP, 1)[0])


def _module_by_agent(agent_id, *args, **kwargs) -> str:
    return str(agent_id).rsplit(SEP, 1)[0]


# -- weights -----------------------------------------------------------------------

_TO_SB3 = (
    ("encoder.actor_encoder.net.mlp.", "mlp_extractor.policy_net."),
    ("encoder.critic_encoder.net.mlp.", "mlp_extractor.value_net."),
    ("pi.net.mlp.0.", "action_net."),
    ("vf.net.mlp.0.", "value_net."),
    ("pi.log_std", "log_std"),
)


def to_sb3_state(module_state: dict[str, Any]) -> dict[str, Any]:
    """An RLlib PPO RLModule's state dict as an SB3 ``ActorCriticPolicy``'s.

    The module must have been built with ``vf_share_layers=False`` and
    ``free_log_std=True`` (as this backend builds it); RLlib's clip constants
    are dropped.
    """
    import torch

    out: dict[str, Any] = {}
    for key, value in module_state.items():
        if "clip_param_const" in key:
            continue
        for src, dst in _TO_SB3:
            if key.startswith(src):
                out[dst + key[len(src) :]] = torch.as_tensor(np.asarray(value))
                break
        else:
            raise ValueError(f"unexpected RLModule weight {key!r}")
    return out


def _sb3_policy(lr, net_arch: list[int], state: dict[str, Any]):
    """An SB3 ``ActorCriticPolicy`` holding the RLModule's weights."""
    import torch
    from stable_baselines3.common.policies import ActorCriticPolicy

    policy = ActorCriticPolicy(
        lr.obs_space,
        lr.action_map.space(),
        lambda _: 0.0,
        net_arch=list(net_arch),
        activation_fn=torch.nn.Tanh,
        ortho_init=False,
    )
    policy.load_state_dict(state)
    return policy


# -- ray -----------------------------------------------------------------------------


def _init_ray(ray, address: str | None, runners: int) -> None:
    address = address or os.environ.get("RAY_ADDRESS") or None
    if address in (None, "", "local"):
        ray.init(
            address="local",  # a new Ray in this process, even if one runs nearby
            num_cpus=max(2, runners + 1),
            include_dashboard=False,
            ignore_reinit_error=True,
            log_to_driver=False,
            configure_logging=False,
        )
        return
    if address != "auto":
        host, _, port = address.rpartition(":")
        host = host.removeprefix("ray://")
        try:
            with socket.create_connection((host or "127.0.0.1", int(port)), 5):
                pass
        except (OSError, ValueError):
            raise ValueError(
                f"cannot reach a Ray cluster at {address!r}; start one with "
                "`ray start --head --port=PORT` or drop --address / RAY_ADDRESS"
            ) from None
    token = Path.home() / ".ray" / "auth_token"
    if "RAY_AUTH_MODE" not in os.environ and token.is_file():
        # `ray start` of Ray >= 2.52 enables token auth when this file exists,
        # but a driver joining by address does not send the token unless asked
        os.environ["RAY_AUTH_MODE"] = "token"
    try:  # Ray reads RAY_AUTH_MODE when imported: refresh its config
        from ray._raylet import Config

        Config.initialize("")
    except (ImportError, AttributeError):
        pass
    try:
        ray.init(
            address=address,
            include_dashboard=False,
            ignore_reinit_error=True,
            log_to_driver=False,
            configure_logging=False,
        )
    except (ConnectionError, RuntimeError, ValueError) as err:
        text = " ".join(str(err).split())[:200]
        raise ValueError(
            f"cannot join the Ray cluster at {address!r}: {text}"
        ) from None


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
    seats = sum(_seats_per_market(lr, tc) for lr in learners)
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
                _module_by_role if tc.share == "role" else _module_by_agent
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


def _module_states(algo) -> dict[str, dict[str, Any]]:
    """Each trained RLModule's state dict (numpy), from the learner."""
    from ray.rllib.core import COMPONENT_LEARNER, COMPONENT_RL_MODULE

    state = algo.learner_group.get_state(
        components=f"{COMPONENT_LEARNER}/{COMPONENT_RL_MODULE}"
    )
    return state[COMPONENT_LEARNER][COMPONENT_RL_MODULE]


def _optimizer_states(algo) -> dict[str, dict[str, Any]]:
    """The learner's optimizers: ``{name: {"module_id", "state"}}``, numpy inside.

    ``state`` is torch's ``Optimizer.state_dict()`` as RLlib returns it: per
    parameter buffers (Adam's ``exp_avg``, ``exp_avg_sq``) as numpy arrays,
    ``step`` and the ``param_groups`` as plain numbers, tuples and lists.
    """
    from ray.rllib.core import COMPONENT_LEARNER, COMPONENT_OPTIMIZER

    state = algo.learner_group.get_state(
        components=f"{COMPONENT_LEARNER}/{COMPONENT_OPTIMIZER}"
    )
    return state[COMPONENT_LEARNER][COMPONENT_OPTIMIZER]


def _from_storable(obj: Any) -> Any:
    """What :func:`save_tensors` gave back, with tensors as numpy arrays again, as
    RLlib hands optimizer states out (``save_tensors`` stores numpy as tensors)."""
    import torch

    if isinstance(obj, torch.Tensor):
        return obj.numpy()
    if isinstance(obj, dict):
        return {k: _from_storable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return type(obj)(_from_storable(v) for v in obj)
    return obj


def _set_states(
    algo,
    modules: dict[str, dict[str, Any]],
    optimizers: dict[str, dict[str, Any]] | None = None,
) -> None:
    """Load RLModule weights (and optimizer states) into the learner; sync runners."""
    from ray.rllib.core import (
        COMPONENT_LEARNER,
        COMPONENT_OPTIMIZER,
        COMPONENT_RL_MODULE,
    )

    state: dict[str, Any] = {COMPONENT_RL_MODULE: modules}
    if optimizers:
        state[COMPONENT_OPTIMIZER] = optimizers
    algo.learner_group.set_state({COMPONENT_LEARNER: state})
    algo.env_runner_group.sync_weights(
        from_worker_or_learner_group=algo.learner_group, inference_only=True
    )


def _pool_board(ray, name: str):
    """A Ray actor holding the latest pools, for env runners Ray (re)starts later.

    The trainer pushes each pool to the running env runners directly; one that
    Ray restarts mid-run builds a fresh env with empty pools, which pulls them
    from this board (by ``name``) at its first reset.
    """

    @ray.remote(num_cpus=0)
    class PoolBoard:
        def __init__(self) -> None:
            self.payload: dict[str, Any] = {}

        def put(self, payload: dict[str, Any]) -> None:
            self.payload = payload

        def get(self) -> dict[str, Any]:
            return self.payload

    return PoolBoard.options(name=name).remote()


def _push_pools(algo, pools: dict[str, Any], board: Any = None) -> None:
    """Send every self-play pool (numpy weights) to the env of every env runner,
    and to the pool ``board`` (for runners started later)."""
    if not pools:
        return
    payload = {
        name: [
            (
                file,
                {k: v.detach().cpu().numpy() for k, v in m.policy.state_dict().items()},
            )
            for file, m in zip(pool.files, pool.members, strict=True)
        ]
        for name, pool in pools.items()
    }

    def push(runner) -> list[dict[str, int]]:
        env = getattr(runner, "env", None)
        if env is None:  # a local runner without env (remote runners sample)
            return []
        return [
            {name: e.unwrapped.set_pool(name, ms) for name, ms in payload.items()}
            for e in getattr(env, "envs", [env])
        ]

    if board is not None:
        import ray

        ray.get(board.put.remote(payload))
    sizes = algo.env_runner_group.foreach_env_runner(push, local_env_runner=True)
    if not any(sizes):
        raise RuntimeError("no RLlib env runner took the self-play pool")


class _Log:
    """Progress bar and TensorBoard scalars per PPO iteration."""

    def __init__(self, out: Path, total: int, start: int, progress: bool) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(str(out / "tb" / "rllib"))
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
    import attn_env
    from training.policy import build_policy, policy_spec
    from training.sb3 import _write_config, plan_learners
    from training.selfplay import SnapshotPool
    from training.train_config import check_train_config

    check_train_config(config.train)
    tc = config.train
    out = Path(out)
    old = None
    if resume:
        old = read_manifest(out)
        check_run_manifest(out, old)
        if old.get("backend") != "rllib":
            raise ValueError(
                f"cannot resume {str(out)!r} with backend rllib: it was trained "
                f"with {old.get('backend', 'sb3')}"
            )
    elif (out / MANIFEST).exists():
        raise ValueError(
            f"{str(out)!r} already holds a trained run; pass --resume to "
            "continue it or choose another --out folder"
        )
    params = {**DEFAULTS, **tc.algo_params}
    if num_env_runners is not None:
        if num_env_runners < 0:
            raise ValueError(f"--num-env-runners must be >= 0, got {num_env_runners}")
        params["num_env_runners"] = num_env_runners
    ray = _import_ray()
    import torch

    torch.set_num_threads(tc.threads)
    probe = attn_env.vector_env(1, config=config.env)
    names = list(probe.agents)
    learners = plan_learners(config, names)
    space = probe.single_observation_space
    from gymnasium.spaces import Box

    for lr in learners:
        lr.obs_space = Box(
            np.asarray(space.low, np.float32),
            np.asarray(space.high, np.float32),
            dtype=np.float32,
        )
        if old is not None:
            entry = old["learners"].get(lr.name)
            if entry is None or entry["action"] != dataclasses.asdict(lr.action_map):
                raise ValueError(
                    f"cannot resume {str(out)!r}: learner {lr.name!r} is new or "
                    "its action map changed"
                )
    _init_ray(ray, address, int(params["num_env_runners"]))
    out.mkdir(parents=True, exist_ok=True)
    hyper = dict(params)
    board = board_name = None
    if any(plays_pool(lr.seats, tc.self_play_pool) for lr in learners):
        board_name = f"attn_market_pools_{uuid.uuid4().hex[:12]}"
        board = _pool_board(ray, board_name)
    _cfg, algo, seats = _build_algo(config, learners, params, board_name)
    per_env_step = tc.num_envs * seats
    pools = {
        lr.name: SnapshotPool(tc.self_play_pool, lr.action_map, out / "pool" / lr.name)
        for lr in learners
        if plays_pool(lr.seats, tc.self_play_pool)
    }
    state = {"iterations": 0, "wall_s": 0.0, "env_steps": 0}
    if old is not None:
        states, optimizers = {}, {}
        for lr in learners:
            entry = old["learners"][lr.name]
            path = inside_run(out, f"{old['checkpoint']}/{entry['model']}", "model")
            saved = load_tensors(path)
            if not isinstance(saved, dict) or "rllib" not in saved:
                raise ValueError(
                    f"{path}: no RLModule state (part 'rllib'); cannot resume it "
                    "with backend rllib"
                )
            states[lr.name] = {k: v.numpy() for k, v in saved["rllib"].items()}
            # runs saved before the optimizer was kept resume with a fresh one
            optimizers.update(_from_storable(saved.get("optimizer") or {}))
        _set_states(algo, states, optimizers)
        for name, pool in pools.items():
            files = list(old["pool"].get(name, []))
            for file in files:
                inside_run(out, f"pool/{name}/{file}", "pool file")
            spec = old["learners"][name]["policy"]
            try:
                pool.restore(lambda s=spec: build_policy("ppo", s), files, "cpu")
            except ValueError as err:
                raise ValueError(f"{out / MANIFEST}: learner {name!r}: {err}") from None
        state = {
            "iterations": int(old.get("iterations", 0)),
            "wall_s": float(old.get("wall_s", 0.0)),
            "env_steps": int(old["timesteps"]) // per_env_step,
        }
    _write_config(out, config)

    def learner_steps(lr) -> int:
        return state["env_steps"] * tc.num_envs * _seats_per_market(lr, tc)

    def snapshot(empty_only: bool = False) -> None:
        """Add the current policy of every self-play learner to its pool."""
        if not pools:
            return
        mods = _module_states(algo)
        for lr in learners:
            pool = pools.get(lr.name)
            if pool is not None and not (empty_only and pool.members):
                mod = {k: np.asarray(v) for k, v in mods[lr.name].items()}
                policy = _sb3_policy(lr, tc.net_arch, to_sb3_state(mod))
                pool.add(policy, learner_steps(lr))

    snapshot(empty_only=True)  # a fresh pool starts with the initial policy
    _push_pools(algo, pools, board)

    def save(finished: bool) -> dict[str, Any]:
        mods = _module_states(algo)
        optims = _optimizer_states(algo)
        entries, saves = {}, {}
        for lr in learners:
            mod = {k: np.asarray(v) for k, v in mods[lr.name].items()}
            policy = _sb3_policy(lr, tc.net_arch, to_sb3_state(mod))
            file = f"{lr.name}{WEIGHTS}"
            entries[lr.name] = {
                "role": lr.role,
                "seats": [names[s] for s in lr.seats],
                "algo": "ppo",
                "backend": "rllib",
                "action": dataclasses.asdict(lr.action_map),
                "timesteps": learner_steps(lr),
                "n_updates": state["iterations"],
                "episode_num": 0,
                "model": file,
                "policy": policy_spec(policy),
                "sb3": {},
                "rllib": hyper,
            }
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
            saves[file] = lambda path, t=tensors: save_tensors(path, t)
        manifest = {
            "algo": "ppo",
            "backend": "rllib",
            "mechanism": config.env.mechanism,
            "seed": config.seed,
            "agents": names,
            "timesteps": state["env_steps"] * per_env_step,
            "total_timesteps": tc.total_timesteps,
            "finished": finished,
            "learners": entries,
            "pool": {name: list(pool.files) for name, pool in pools.items()},
            "turns": state["iterations"],
            **state,
        }
        write_checkpoint(out, manifest["timesteps"], saves, manifest)
        for pool in pools.values():
            pool.prune_files()  # after the manifest stopped naming them
        return read_manifest(out)

    done = state["env_steps"] * per_env_step
    log = _Log(out, tc.total_timesteps, min(done, tc.total_timesteps), progress)
    last_ckpt = done
    t0 = time.perf_counter() - state["wall_s"]
    try:
        while done < tc.total_timesteps:
            t1 = time.perf_counter()
            result = algo.train()
            env_steps = int(
                result.get("env_runners", {}).get("num_env_steps_sampled", 0)
            )
            if env_steps <= 0:
                raise RuntimeError(
                    "RLlib returned no samples in a training iteration; check the "
                    "Ray cluster's workers (`ray status`)"
                )
            state["env_steps"] += env_steps
            state["iterations"] += 1
            snapshot()
            _push_pools(algo, pools, board)
            added = env_steps * per_env_step
            done += added
            log.update(done, added, result, added / (time.perf_counter() - t1))
            if done - last_ckpt >= tc.checkpoint_every and done < tc.total_timesteps:
                state["wall_s"] = time.perf_counter() - t0
                save(False)
                last_ckpt = done
        state["wall_s"] = time.perf_counter() - t0
        return save(True)
    finally:
        log.close()
        algo.stop()
        ray.shutdown()

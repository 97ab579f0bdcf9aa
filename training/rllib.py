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
from attn_env.errors import UserError
from attn_env.observation import role_of
from training.checkpoint import MANIFEST, WEIGHTS, load_tensors, save_tensors
from training.run import RunFolder
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
        raise UserError(INSTALL_HINT) from None
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


CONNECT_TIMEOUT_S = 5.0
"Seconds to open a TCP connection to ``--address`` and to hear its gRPC answer."
RAY_TIMEOUTS = {
    "RAY_gcs_rpc_server_connect_timeout_s": "5",
    "RAY_gcs_rpc_server_reconnect_timeout_s": "10",
    "RAY_py_gcs_connect_timeout_s": "15",
}
"Ray's own waits for a cluster, bounded so that joining one ends in <= 30 s."
_H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0])
"An HTTP/2 client preface and an empty SETTINGS frame (what a gRPC client sends)."


def parse_address(address: str) -> tuple[str, int]:
    """``(host, port)`` of ``[ray://]HOST:PORT``, else one line naming it."""
    rest = address.removeprefix("ray://")
    host, _, port = rest.rpartition(":")
    host = host.strip("[]")  # [::1]:6379
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise UserError(f"--address {address!r} is not HOST:PORT (e.g. 127.0.0.1:6379)")
    return host, int(port)


def probe_ray(address: str, timeout: float = CONNECT_TIMEOUT_S) -> None:
    """One line unless something at ``address`` answers as a gRPC server does.

    A Ray head's GCS (and Ray Client's server) speak gRPC over HTTP/2: after a
    client's preface the server sends a SETTINGS frame. A closed port, an
    unroutable host or a TCP service that is not Ray ends here within
    ``2 * timeout`` seconds, before ``ray.init`` could wait minutes on it.
    """
    host, port = parse_address(address)
    hint = (
        "start one with `ray start --head --port=PORT` or drop --address / RAY_ADDRESS"
    )
    try:
        with socket.create_connection((host, port), timeout) as conn:
            conn.settimeout(timeout)
            conn.sendall(_H2_PREFACE)
            head = conn.recv(9)
    except TimeoutError:
        raise UserError(
            f"cannot reach a Ray cluster at {address!r}: no answer within "
            f"{timeout:g} s (not Ray, or unroutable); {hint}"
        ) from None
    except OSError as err:
        raise UserError(
            f"cannot reach a Ray cluster at {address!r} ({err.strerror or err}); {hint}"
        ) from None
    if len(head) < 9 or head[3] != 4:  # frame type 4: SETTINGS
        raise UserError(
            f"cannot reach a Ray cluster at {address!r}: what answers there does "
            f"not speak gRPC, so it is not a Ray head; {hint}"
        )


def _ray_config_for_joining() -> None:
    """Token auth as `ray start` set it up; bounded waits (:data:`RAY_TIMEOUTS`)."""
    token = Path.home() / ".ray" / "auth_token"
    if "RAY_AUTH_MODE" not in os.environ and token.is_file():
        # `ray start` of Ray >= 2.52 enables token auth when this file exists,
        # but a driver joining by address does not send the token unless asked
        os.environ["RAY_AUTH_MODE"] = "token"
    for key, value in RAY_TIMEOUTS.items():
        os.environ.setdefault(key, value)
    try:  # Ray reads its config from the environment when imported: refresh it
        from ray._raylet import Config

        Config.initialize("")
    except (ImportError, AttributeError):
        pass


def _init_ray(ray, address: str | None, runners: int) -> None:
    """Start a local Ray, or join the cluster at ``address`` (one line if not)."""
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
        probe_ray(address)
    _ray_config_for_joining()
    try:
        ray.init(
            address=address,
            include_dashboard=False,
            ignore_reinit_error=True,
            log_to_driver=False,
            configure_logging=False,
        )
    except (ConnectionError, RuntimeError, ValueError, TimeoutError) as err:
        text = " ".join(str(err).split())[:200]
        raise UserError(f"cannot join the Ray cluster at {address!r}: {text}") from None


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
    ray = _import_ray()  # before the run folder: without Ray, nothing is created
    if resume:
        run, old = RunFolder.resume(out)
    else:
        run, old = RunFolder.fresh(out), None
    try:
        job = _RllibRun(config, run, old, params)
        try:
            _init_ray(ray, address, int(params["num_env_runners"]))
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

        from training.sb3 import plan_learners

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
            self.board = _pool_board(ray, board_name)
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
        from training.sb3 import write_config

        write_config(self.run, self.config)
        self._snapshot(empty_only=True)  # a fresh pool starts with the initial policy
        _push_pools(self.algo, self.pools, self.board)
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
            optimizers.update(_from_storable(saved.get("optimizer") or {}))
        _set_states(self.algo, states, optimizers)
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
            self.state["env_steps"] * self.tc.num_envs * _seats_per_market(lr, self.tc)
        )

    def _snapshot(self, empty_only: bool = False) -> None:
        """Add the current policy of every self-play learner to its pool."""
        if not self.pools:
            return
        mods = _module_states(self.algo)
        for lr in self.learners:
            pool = self.pools.get(lr.name)
            if pool is not None and not (empty_only and pool.members):
                mod = {k: np.asarray(v) for k, v in mods[lr.name].items()}
                policy = _sb3_policy(lr, self.tc.net_arch, to_sb3_state(mod))
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

        mods, optims = _module_states(self.algo), _optimizer_states(self.algo)
        entries, saves = {}, {}
        for lr in self.learners:
            mod = {k: np.asarray(v) for k, v in mods[lr.name].items()}
            policy = _sb3_policy(lr, self.tc.net_arch, to_sb3_state(mod))
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
        _push_pools(self.algo, self.pools, self.board)
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

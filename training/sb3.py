"""``attn-market train``: stable-baselines3 learners on the vectorised market.

Reads top to bottom:

1. **Learners.** Agents with ``kind: learn`` are grouped into learners, one SB3
   model each: one per role with ``share: role`` (all learning buyers share a
   policy, all learning sellers another), one per agent with ``share: none``.
2. **Envs.** Each learner gets its own ``vector_env`` of ``num_envs`` markets
   wrapped in a :class:`~training.vec_adapter.MarketVecEnv`: its seats are SB3
   sub-envs; fixed agents play their kinds, other learners play their latest
   frozen policy, and with self-play its own other seats play its past
   snapshots (``training.selfplay``).
3. **Loop.** Learners train in turn, ``alternate_every`` agent-steps at a time
   (the one with the fewest steps goes next), each against the others' policies
   frozen at the end of their last turn; a single learner simply trains in
   chunks. After each chunk: refresh its frozen copy, add a self-play snapshot,
   and every ``checkpoint_every`` steps write an atomic checkpoint.
4. **Output.** The run folder (:class:`training.run.RunFolder`: locked, every
   path checked) with the resolved config, weights (safetensors), manifest and
   TensorBoard logs (``tb/<learner>``), readable by ``training.load_policy``.
   ``--resume`` rebuilds each model from the JSON manifest (its SB3 keywords
   checked for type and range) and loads its weights and optimizer state;
   nothing is unpickled.

Frozen opponents *sample* from their policy (as they did while learning), which
keeps exploration alive when two roles learn in turn: under ``shade_clip`` a
freshly initialised policy's mean shading is 0, and a buyer bidding 0 and a
seller asking the top would never trade.
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import Any

import numpy as np

from agents import for_market
from attn_env.checks import is_int, is_real
from attn_env.config import ExperimentConfig, TrainConfig
from attn_env.errors import ConfigError, UserError
from attn_env.players import Seats
from training.actions import CLIP_LOG_STD
from training.checkpoint import MANIFEST, save_tensors
from training.learners import Learner, plan_learners, training_env
from training.policy import RolePolicy, algo_class, freeze, resolve_device
from training.run import RunFolder, RunManifest
from training.sb3_internals import counters, model_state, set_counters, set_model_state
from training.selfplay import PoolPlayer, SnapshotPool, plays_pool, seat_matrix
from training.skeleton import TrainingRun
from training.train_config import (
    BUFFER_KWARGS,
    MAX_LAYER,
    OBJECTS,
    SB3_INT_CAPS,
    SET_BY_TRAINER,
    check_train_config,
    resolve_sb3_kwargs,
)
from training.vec_adapter import MarketVecEnv

__all__ = [
    "Learner",
    "Trainer",
    "plan_learners",
    "set_run_logger",
    "train",
    "training_env",
]


def _model_kwargs(learner: Learner, tc: TrainConfig) -> dict[str, Any]:
    """The SB3 hyperparameters of a learner's model (JSON: the manifest keeps them).

    A PPO policy under ``squash: clip`` starts with ``log_std``
    :data:`~training.actions.CLIP_LOG_STD` (the RLlib backend's start too)
    unless ``algo_params.policy_kwargs.log_std_init`` sets one.
    """
    kwargs: dict[str, Any] = {
        "gamma": tc.gamma,
        "learning_rate": tc.learning_rate,
        "seed": learner.seed,
    }
    rollout = tc.n_steps * learner.env.num_envs
    policy: dict[str, Any] = {"net_arch": list(tc.net_arch)}
    if tc.algo == "ppo":
        kwargs.update(
            n_steps=tc.n_steps,
            batch_size=max(2, min(tc.batch_size, rollout)),
            n_epochs=tc.n_epochs,
        )
        if learner.action_map.mode == "shade_clip":
            policy["log_std_init"] = CLIP_LOG_STD
    else:
        kwargs.update(batch_size=tc.batch_size)
    kwargs.update(tc.algo_params)
    # policy_kwargs of algo_params join train.net_arch's (they never replace it)
    kwargs["policy_kwargs"] = {
        **policy,
        **(tc.algo_params.get("policy_kwargs") or {}),
    }
    return kwargs


def _make_model(
    learner: Learner,
    algo: str,
    kwargs: dict[str, Any],
    device: str,
    tb: Path | None,
):
    """A fresh SB3 model; TensorBoard writes only into ``tb`` (a checked folder).

    The logger is set here rather than through ``tensorboard_log``: SB3 would
    pick (and, resuming, reuse) a ``<name>_<n>`` folder by globbing the log
    folder, which could be a planted symlink.
    """
    model = algo_class(algo)(
        "MlpPolicy", learner.env, **resolve_sb3_kwargs(kwargs), device=device, verbose=0
    )
    set_run_logger(model, tb)
    return model


def set_run_logger(model: Any, tb: Path | None) -> None:
    """Give ``model`` a logger that writes only into ``tb`` (TensorBoard), or nowhere.

    Without a logger of its own, SB3's ``learn`` makes an empty folder
    ``SB3-<time>`` in the system's temporary folder on every call: outside the
    run folder, which a run must not touch.
    """
    from stable_baselines3.common.logger import Logger, configure

    if tb is None:
        model.set_logger(Logger(folder=None, output_formats=[]))
    else:
        model.set_logger(configure(str(tb), ["tensorboard"]))


def check_sb3_kwargs(where: str, algo: str, kwargs: Any) -> None:
    """``UserError`` (one line) unless a manifest's ``sb3`` keywords are sane.

    Each must be a keyword of the SB3 class (not one the trainer sets), of its
    default's type (booleans are not numbers), integers within the ranges
    ``algo_params`` may set (:data:`training.train_config.SB3_INT_CAPS`, one
    table for configs and manifests; others ``[-1, 2**20]``),
    floats finite, ``policy_kwargs.net_arch`` layer sizes in ``[1, MAX_LAYER]``.
    """
    if not isinstance(kwargs, dict):
        raise UserError(f"{where} 'sb3' must be an object")
    params = inspect.signature(algo_class(algo).__init__).parameters
    for key, value in kwargs.items():
        if key not in params or key in (*SET_BY_TRAINER, "self"):
            raise UserError(f"{where} 'sb3': {key!r} is not a keyword of {algo}")
        if not _sb3_value_ok(key, value, params[key].default):
            raise UserError(
                f"{where} 'sb3': {key} = {str(value)[:40]} is not a valid value "
                f"(like its default {params[key].default!r}, within its cap)"
            )
    arch = (kwargs.get("policy_kwargs") or {}).get("net_arch", [])
    layers = (
        arch
        if isinstance(arch, list)
        else [n for v in arch.values() if isinstance(v, list) for n in v]
        if isinstance(arch, dict)
        else None
    )
    if layers is None or not all(is_int(n) and 1 <= n <= MAX_LAYER for n in layers):
        raise UserError(
            f"{where} 'sb3': policy_kwargs.net_arch must list layer sizes in "
            f"[1, {MAX_LAYER}], got {str(arch)[:40]}"
        )


def _sb3_value_ok(key: str, value: Any, default: Any) -> bool:
    """Whether ``value`` fits keyword ``key`` whose SB3 default is ``default``."""
    if key in OBJECTS:
        return value is None
    if key in ("policy_kwargs", *BUFFER_KWARGS):
        return value is None or isinstance(value, dict)
    if key == "seed" or is_int(default):
        low, high = SB3_INT_CAPS.get(key, (-1, 2**20))
        return is_int(value) and low <= value <= high
    if isinstance(default, bool):
        return isinstance(value, bool)
    if isinstance(default, str):
        return (isinstance(value, str) and len(value) <= 32) or is_real(value)
    return (value is None and default is None) or is_real(value)


def _chunk(learner: Learner, tc: TrainConfig, remaining: int) -> int:
    """Agent-steps of the next turn, whole PPO rollouts."""
    steps = min(tc.alternate_every, tc.checkpoint_every, remaining)
    unit = learner.env.num_envs * (tc.n_steps if tc.algo == "ppo" else 1)
    return max(unit, int(np.ceil(steps / unit)) * unit)


class _Anneal:
    """SB3 learning-rate schedule over the run's agent-steps ``t``: linear from
    ``start`` to 0 at ``total_timesteps`` (``train.anneal_lr``), or harmonic,
    ``start / (1 + t / decay_steps)`` (``train.lr_decay_steps``).

    SB3's own progress restarts with every ``learn`` call (the trainer calls it
    once per chunk), so the schedule reads the run's agent-steps instead, all
    learners together: a resumed run continues where its rate left off.
    """

    def __init__(
        self, run: TrainingRun, start: float, decay_steps: int | None = None
    ) -> None:
        self.run, self.start, self.decay_steps = run, start, decay_steps

    def __call__(self, _progress_remaining: float) -> float:
        if self.decay_steps is not None:
            return self.start / (1.0 + self.run.timesteps / self.decay_steps)
        total = max(self.run.tc.total_timesteps, 1)
        return self.start * max(0.0, 1.0 - self.run.timesteps / total)


class _Progress:
    """One progress bar over all learners' turns (an SB3 callback factory)."""

    def __init__(self, total: int, start: int, enabled: bool) -> None:
        self.bar = None
        if enabled:
            from tqdm.auto import tqdm

            self.bar = tqdm(
                total=total, initial=start, unit="step", desc="train", smoothing=0.1
            )

    def callback(self, learner: Learner):
        from stable_baselines3.common.callbacks import BaseCallback

        bar = self.bar

        class _Tick(BaseCallback):
            def _on_step(self) -> bool:
                if bar is not None:
                    bar.update(self.training_env.num_envs)
                    bar.set_postfix_str(learner.name, refresh=False)
                return True

        return _Tick()

    def update(self, done: int, added: int) -> None:
        """Nothing: the bar moves with every env step (:meth:`callback`)."""

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _others(
    learner: Learner,
    learners: list[Learner],
    config: ExperimentConfig,
    agent_names: list[str],
) -> Seats:
    """Players of the seats ``learner`` does not control."""
    owner = {s: other for other in learners for s in other.seats}
    players: list[Any] = []
    for j, name in enumerate(agent_names):
        if j in learner.seats:
            # under self-play its other seats (per market) play the pool
            players.append(None if learner.pool is None else PoolPlayer(learner.pool))
        elif j in owner:
            players.append(owner[j].frozen)
        else:
            spec = config.agent_spec(name)
            players.append(for_market(spec.kind, spec.params, config.env))
    return Seats(players, n_buyers=config.env.n_buyers)


class Trainer(TrainingRun):
    """A training run with SB3: learners, their envs and models, built from a config.

    ``Trainer(config, out).run()`` is :func:`train`; building the object first
    gives access to the in-memory learners (tests compare them with what
    :func:`training.load_policy` reads back). The run folder, manifest, resume
    checks, self-play pools and the checkpoint loop are
    :class:`~training.skeleton.TrainingRun`'s; this class builds SB3 models,
    saves and loads their state and trains one turn.

    Args:
        config: the experiment (``train`` section: algorithm, sharing, steps, ...).
        out: the run folder; must not hold a run unless ``resume``.
        resume: continue the run in ``out`` from its last checkpoint.
        progress: show a progress bar.
    """

    backend = "sb3"

    def __init__(
        self,
        config: ExperimentConfig,
        out: str | Path,
        resume: bool = False,
        progress: bool = True,
    ) -> None:
        check_train_config(config.train)
        if config.train.backend != "sb3":
            raise ConfigError(
                f"train.backend is {config.train.backend!r}: train it with "
                "training.train or `attn-market train`, not training.sb3"
            )
        self.out, self.progress = Path(out), progress
        self._bar: _Progress | None = None
        # the run folder is locked from here until run() ends (or close())
        if resume:
            run, old = RunFolder.resume(self.out)
        else:
            run, old = RunFolder.fresh(self.out), None
        self.run_folder = run
        try:
            super().__init__(config, run, old)
            self._set_up_torch()
            self.start()
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Release the run folder's lock (a later :meth:`save` takes it again)."""
        self.run_folder.close()

    def _set_up_torch(self) -> None:
        """Device, CPU threads and the global seeds of torch and numpy."""
        import torch
        from stable_baselines3.common.utils import set_random_seed

        self.device = resolve_device(self.config.train.device)
        # Process-wide: more threads than free cores makes small-MLP PPO crawl
        # (measured 14x slower with 2 threads on a loaded 2-core machine).
        torch.set_num_threads(self.config.train.threads)
        set_random_seed(self.config.seed)

    # -- the backend's hooks ----------------------------------------------------------

    def build_models(self, old: RunManifest | None) -> None:
        """Envs and self-play pools, SB3 models (with the run's keywords, resuming),
        their frozen copies, and who plays the other seats."""
        self._build_envs()
        self._sb3_kwargs: dict[str, dict[str, Any]] = {}
        for lr in self.learners:
            tb = self.run_folder.tb_folder(lr.name)
            if old is None:
                kwargs, algo = _model_kwargs(lr, self.tc), self.tc.algo
            else:
                kwargs, algo = self._old_kwargs(lr, old)
            try:
                lr.model = _make_model(lr, algo, kwargs, self.device, tb)
            except (TypeError, ValueError, RuntimeError, AssertionError) as err:
                if old is None:
                    raise
                text = " ".join(str(err).split())[:200]
                raise UserError(
                    f"{self.out / MANIFEST}: learner {lr.name!r}: cannot rebuild "
                    f"its model ({text})"
                ) from None
            self._sb3_kwargs[lr.name] = kwargs
            if self.tc.anneal_lr or self.tc.lr_decay_steps is not None:
                lr.model.lr_schedule = _Anneal(
                    self, float(kwargs["learning_rate"]), self.tc.lr_decay_steps
                )
            lr.frozen = RolePolicy(
                freeze(lr.model.policy),
                lr.action_map,
                deterministic=False,
                env_units=True,
            )
        for lr in self.learners:
            lr.env.others = _others(lr, self.learners, self.config, self.names)

    def _build_envs(self) -> None:
        """Each learner's vector env of ``num_envs`` markets, and its self-play pool."""
        tc = self.tc
        for lr in self.learners:
            if plays_pool(lr.seats, tc.self_play_pool):
                lr.pool = SnapshotPool(
                    tc.self_play_pool, lr.action_map, self.run_folder, lr.name
                )
            draws = tc.opponent_draws
            venv = training_env(
                self.config, tc.num_envs * draws, lr.action_map.env_action
            )
            seats = seat_matrix(lr.seats, tc.num_envs, tc.self_play_pool)
            lr.env = MarketVecEnv(venv, seats, lr.action_map, seed=lr.seed, draws=draws)

    def _old_kwargs(self, lr: Learner, old: RunManifest) -> tuple[dict[str, Any], str]:
        """The run's own SB3 keywords for ``lr`` (as SB3's ``load`` kept them),
        checked for type and range."""
        entry = old.learners[lr.name]
        where = f"{self.out / MANIFEST}: learner {lr.name!r}"
        check_sb3_kwargs(where, entry.algo, entry.sb3)
        return dict(entry.sb3), entry.algo

    def load_state(self, old: RunManifest, saved: dict[str, tuple[Any, Path]]) -> None:
        """Weights, optimizer state and counters from safetensors; nothing unpickled."""
        for lr in self.learners:
            entry = old.learners[lr.name]
            tree, path = saved[lr.name]
            set_model_state(lr.model, tree, path)
            lr.model.num_timesteps = entry.timesteps
            set_counters(lr.model, entry.n_updates, entry.episode_num)
            lr.frozen.policy = freeze(lr.model.policy)
            # A fresh, reproducible stream for the continued run.
            lr.env.seed(lr.seed + lr.timesteps)

    def save_state(self, lr: Learner) -> tuple[Any, Any]:
        return lr.model.policy, (
            lambda path, m=lr.model: save_tensors(path, model_state(m))
        )

    def learner_steps(self, lr: Learner) -> int:
        return lr.timesteps

    def record(self, lr: Learner) -> dict[str, Any]:
        return {**counters(lr.model), "sb3": self._sb3_kwargs[lr.name]}

    def open_log(self, total: int, start: int, enabled: bool) -> _Progress:
        self._bar = _Progress(total, start, enabled)
        return self._bar

    def train_chunk(self) -> list[Learner]:
        """One turn: the learner with the fewest steps trains one chunk."""
        tc = self.tc
        lr = min(self.learners, key=lambda x: x.timesteps)
        steps = _chunk(lr, tc, max(tc.total_timesteps - self.timesteps, 1))
        bar = self._bar
        lr.model.learn(
            steps,
            callback=bar.callback(lr) if bar is not None else None,
            reset_num_timesteps=False,
            tb_log_name=lr.name,
        )
        lr.frozen.policy = freeze(lr.model.policy)
        return [lr]

    def run(self) -> dict[str, Any]:
        """Train up to ``total_timesteps`` agent-steps, checkpointing on the way."""
        try:
            return self.loop(self.progress)
        finally:
            self._bar = None
            self.close()


def train(
    config: ExperimentConfig,
    out: str | Path,
    resume: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Train the learning agents of ``config`` into run folder ``out``.

    Args:
        config: the experiment (``train`` section: algorithm, sharing, steps, ...).
        out: the run folder; must not hold a run unless ``resume``.
        resume: continue the run in ``out`` from its last checkpoint, up to
            ``config.train.total_timesteps`` agent-steps in all.
        progress: show a progress bar.

    Returns:
        The final manifest (timesteps, learners, checkpoint, wall time).
    """
    return Trainer(config, out, resume=resume, progress=progress).run()


def main_summary(manifest: dict[str, Any]) -> str:
    """One line about a finished run, for the command line."""
    return json.dumps(
        {
            "timesteps": manifest["timesteps"],
            "learners": list(manifest["learners"]),
            "checkpoint": manifest["checkpoint"],
            "wall_s": round(manifest.get("wall_s", 0.0), 2),
        }
    )

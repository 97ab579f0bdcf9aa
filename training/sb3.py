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

import dataclasses
import inspect
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from agents import for_market
from attn_env.checks import is_real
from attn_env.config import ExperimentConfig, TrainConfig
from attn_env.errors import ConfigError, UserError
from attn_env.players import Seats
from training.checkpoint import MANIFEST, WEIGHTS, load_tensors, save_tensors
from training.learners import Learner, plan_learners, training_env, write_config
from training.policy import (
    RolePolicy,
    action_map_from,
    algo_class,
    build_policy,
    freeze,
    policy_spec,
    resolve_device,
)
from training.run import MAX_STEPS, RunFolder
from training.sb3_internals import counters, model_state, set_counters, set_model_state
from training.selfplay import PoolPlayer, SnapshotPool, plays_pool, seat_matrix
from training.train_config import MAX_LAYER, check_train_config, resolve_sb3_kwargs
from training.vec_adapter import MarketVecEnv

__all__ = ["Learner", "Trainer", "plan_learners", "train", "training_env"]


def _model_kwargs(learner: Learner, tc: TrainConfig) -> dict[str, Any]:
    """The SB3 hyperparameters of a learner's model (JSON: the manifest keeps them)."""
    kwargs: dict[str, Any] = {
        "gamma": tc.gamma,
        "learning_rate": tc.learning_rate,
        "policy_kwargs": {"net_arch": list(tc.net_arch)},
        "seed": learner.seed,
    }
    rollout = tc.n_steps * learner.env.num_envs
    if tc.algo == "ppo":
        kwargs.update(
            n_steps=tc.n_steps, batch_size=max(2, min(tc.batch_size, rollout))
        )
    else:
        kwargs.update(batch_size=tc.batch_size)
    kwargs.update(tc.algo_params)
    # policy_kwargs of algo_params join train.net_arch's (they never replace it)
    kwargs["policy_kwargs"] = {
        "net_arch": list(tc.net_arch),
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
    if tb is not None:
        from stable_baselines3.common.logger import configure

        model.set_logger(configure(str(tb), ["tensorboard"]))
    return model


_SET_BY_TRAINER = ("policy", "env", "device", "tensorboard_log", "verbose")
_OBJECTS = ("rollout_buffer_class", "replay_buffer_class", "action_noise")
"SB3 keywords that take classes or objects: a manifest can only leave them unset."
_INT_CAPS = {
    "n_epochs": 1_000,
    "gradient_steps": 1_000,
    "buffer_size": 10_000_000,
    "learning_starts": MAX_STEPS,
    "seed": 2**32 - 1,
}
"Largest value of an integer SB3 keyword in a manifest (others: ``2**20``)."


def check_sb3_kwargs(where: str, algo: str, kwargs: Any) -> None:
    """``UserError`` (one line) unless a manifest's ``sb3`` keywords are sane.

    Each must be a keyword of the SB3 class (not one the trainer sets), of its
    default's type (booleans are not numbers), integers within
    :data:`_INT_CAPS` (``2**20`` by default; ``-1`` where SB3 means "auto"),
    floats finite, ``policy_kwargs.net_arch`` layer sizes in ``[1, MAX_LAYER]``.
    """
    if not isinstance(kwargs, dict):
        raise UserError(f"{where} 'sb3' must be an object")
    params = inspect.signature(algo_class(algo).__init__).parameters
    for key, value in kwargs.items():
        if key not in params or key in (*_SET_BY_TRAINER, "self", "_init_setup_model"):
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
    if layers is None or not all(
        isinstance(n, int) and not isinstance(n, bool) and 1 <= n <= MAX_LAYER
        for n in layers
    ):
        raise UserError(
            f"{where} 'sb3': policy_kwargs.net_arch must list layer sizes in "
            f"[1, {MAX_LAYER}], got {str(arch)[:40]}"
        )


def _sb3_value_ok(key: str, value: Any, default: Any) -> bool:
    """Whether ``value`` fits keyword ``key`` whose SB3 default is ``default``."""
    if key in _OBJECTS:
        return value is None
    if key == "policy_kwargs" or key.endswith("_buffer_kwargs"):
        return value is None or isinstance(value, dict)
    if key == "seed" or (isinstance(default, int) and not isinstance(default, bool)):
        return (
            isinstance(value, int)
            and not isinstance(value, bool)
            and -1 <= value <= _INT_CAPS.get(key, 2**20)
        )
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


class Trainer:
    """A training run: learners, their envs and models, built from a config.

    ``Trainer(config, out).run()`` is :func:`train`; building the object first
    gives access to the in-memory learners (tests compare them with what
    :func:`training.load_policy` reads back).

    Args:
        config: the experiment (``train`` section: algorithm, sharing, steps, ...).
        out: the run folder; must not hold a run unless ``resume``.
        resume: continue the run in ``out`` from its last checkpoint.
        progress: show a progress bar.
    """

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
        self.config, self.out, self.progress = config, Path(out), progress
        # the run folder is locked from here until run() ends (or close())
        old: dict[str, Any] | None = None
        if resume:
            self.run_folder, old = RunFolder.resume(self.out)
        else:
            self.run_folder = RunFolder.fresh(self.out)
        try:
            self._set_up(old)
        except BaseException:
            self.close()
            raise

    def _set_up(self, old: dict[str, Any] | None) -> None:
        """Learners, envs and models (the checkpoint's when resuming), then config."""
        import attn_env

        config = self.config
        self._set_up_torch()
        self.agent_names = list(attn_env.vector_env(1, config=config.env).agents)
        self.learners = plan_learners(config, self.agent_names)
        if old is not None:
            self._check_resumable(old)
        self._build_envs()
        self._build_models(old)
        for lr in self.learners:
            lr.env.others = _others(lr, self.learners, config, self.agent_names)
        self.state = {"turns": 0, "wall_s": 0.0}
        if old is not None:
            self.state = {
                "turns": int(old.get("turns", 0)),
                "wall_s": float(old.get("wall_s", 0.0)),
            }
        # Only now, every check passed: a refused --resume leaves the run's
        # config.yaml matching its checkpoint.
        write_config(self.run_folder, config)

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

    def _check_resumable(self, old: dict[str, Any]) -> None:
        """The run in ``out`` trained the same learners with the same action maps."""
        names = sorted(lr.name for lr in self.learners)
        algos = sorted({e["algo"] for e in old["learners"].values()})
        if algos != [self.config.train.algo]:
            raise UserError(
                f"cannot resume {str(self.out)!r}: it trained with algo "
                f"{', '.join(map(str, algos))}, the config asks for "
                f"{self.config.train.algo!r}"
            )
        if sorted(old["learners"]) != names:
            raise UserError(
                f"cannot resume {str(self.out)!r}: it trained learners "
                f"{sorted(old['learners'])}, the config asks for {names}"
            )
        for lr in self.learners:
            if action_map_from(old["learners"][lr.name]) != lr.action_map:
                raise UserError(f"cannot resume {lr.name!r}: its action map changed")

    def _build_envs(self) -> None:
        """Each learner's vector env of ``num_envs`` markets, and its self-play pool."""
        tc = self.config.train
        for lr in self.learners:
            if plays_pool(lr.seats, tc.self_play_pool):
                lr.pool = SnapshotPool(
                    tc.self_play_pool, lr.action_map, self.run_folder, lr.name
                )
            venv = training_env(self.config, tc.num_envs, lr.action_map.env_action)
            seats = seat_matrix(lr.seats, tc.num_envs, tc.self_play_pool)
            lr.env = MarketVecEnv(venv, seats, lr.action_map, seed=lr.seed)

    def _build_models(self, old: dict[str, Any] | None) -> None:
        """Fresh SB3 models (or the checkpoint's, resuming) and their frozen copies."""
        tc = self.config.train
        self._sb3_kwargs: dict[str, dict[str, Any]] = {}
        for lr in self.learners:
            tb = self.run_folder.tb_folder(lr.name)
            if old is not None:
                self._resume_model(lr, old, tb)
            else:
                kwargs = _model_kwargs(lr, tc)
                lr.model = _make_model(lr, tc.algo, kwargs, self.device, tb)
                self._sb3_kwargs[lr.name] = kwargs
            lr.frozen = RolePolicy(
                freeze(lr.model.policy),
                lr.action_map,
                deterministic=False,
                env_units=True,
            )
            if lr.pool is not None and not lr.pool.members:
                lr.pool.add(lr.model.policy, lr.timesteps)

    def _resume_model(self, lr: Learner, old: dict[str, Any], tb: Path) -> None:
        """Rebuild ``lr``'s model from the manifest; load weights and optimizer state.

        The hyperparameters are the run's (from the manifest), as SB3's own
        ``load`` kept them; the state comes from safetensors only.
        """
        entry = old["learners"][lr.name]
        where = self.out / MANIFEST
        check_sb3_kwargs(f"{where}: learner {lr.name!r}", entry["algo"], entry["sb3"])
        path = self.run_folder.checkpoint_file(old, entry["model"], f"{lr.name} model")
        try:
            lr.model = _make_model(lr, entry["algo"], entry["sb3"], self.device, tb)
        except (TypeError, ValueError, RuntimeError, AssertionError) as err:
            text = " ".join(str(err).split())[:200]
            raise UserError(
                f"{where}: learner {lr.name!r}: cannot rebuild its model ({text})"
            ) from None
        self._sb3_kwargs[lr.name] = dict(entry["sb3"])
        set_model_state(lr.model, load_tensors(path, device="cpu"), path)
        lr.model.num_timesteps = int(entry["timesteps"])
        set_counters(lr.model, entry.get("n_updates", 0), entry.get("episode_num", 0))
        # A fresh, reproducible stream for the continued run.
        lr.env.seed(lr.seed + lr.timesteps)
        if lr.pool is not None:
            files = list(old["pool"].get(lr.name, []))
            algo, spec = entry["algo"], entry["policy"]

            def build() -> Any:
                try:
                    return build_policy(algo, spec)
                except ValueError as err:
                    raise UserError(f"{where}: learner {lr.name!r}: {err}") from None

            lr.pool.restore(build, files, self.device)

    @property
    def timesteps(self) -> int:
        """Agent-steps trained so far, all learners together."""
        return sum(lr.timesteps for lr in self.learners)

    def step(self, progress: _Progress | None = None) -> Learner:
        """One turn: the learner with the fewest steps trains one chunk."""
        tc = self.config.train
        lr = min(self.learners, key=lambda x: x.timesteps)
        steps = _chunk(lr, tc, max(tc.total_timesteps - self.timesteps, 1))
        lr.model.learn(
            steps,
            callback=progress.callback(lr) if progress is not None else None,
            reset_num_timesteps=False,
            tb_log_name=lr.name,
        )
        lr.frozen.policy = freeze(lr.model.policy)
        if lr.pool is not None:
            lr.pool.add(lr.model.policy, lr.timesteps)
        self.state["turns"] += 1
        return lr

    def save(self, finished: bool = False) -> dict[str, Any]:
        """Write an atomic checkpoint of every learner now; returns the manifest."""
        config, names, learners = self.config, self.agent_names, self.learners
        manifest = {
            "algo": config.train.algo,
            "mechanism": config.env.mechanism,
            "seed": config.seed,
            "agents": names,
            "timesteps": self.timesteps,
            "total_timesteps": config.train.total_timesteps,
            "finished": finished,
            "learners": {
                lr.name: {
                    "role": lr.role,
                    "seats": [names[s] for s in lr.seats],
                    "algo": config.train.algo,
                    "action": dataclasses.asdict(lr.action_map),
                    "timesteps": lr.timesteps,
                    **counters(lr.model),
                    "model": f"{lr.name}{WEIGHTS}",
                    "policy": policy_spec(lr.model.policy),
                    "sb3": self._sb3_kwargs[lr.name],
                }
                for lr in learners
            },
            "pool": {
                lr.name: list(lr.pool.files) for lr in learners if lr.pool is not None
            },
            **self.state,
        }
        saves = {
            f"{lr.name}{WEIGHTS}": (
                lambda path, m=lr.model: save_tensors(path, model_state(m))
            )
            for lr in learners
        }
        self.run_folder.write_checkpoint(manifest["timesteps"], saves, manifest)
        for lr in learners:
            if lr.pool is not None:
                lr.pool.prune_files()
        return self.run_folder.read_manifest()

    def run(self) -> dict[str, Any]:
        """Train up to ``total_timesteps`` agent-steps, checkpointing on the way."""
        tc = self.config.train
        last_ckpt = self.timesteps
        bar = _Progress(
            tc.total_timesteps, min(last_ckpt, tc.total_timesteps), self.progress
        )
        t0 = time.perf_counter() - self.state["wall_s"]
        try:
            while self.timesteps < tc.total_timesteps:
                self.step(bar)
                done = self.timesteps
                if (
                    done - last_ckpt >= tc.checkpoint_every
                    and done < tc.total_timesteps
                ):
                    self.state["wall_s"] = time.perf_counter() - t0
                    self.save()
                    last_ckpt = done
            self.state["wall_s"] = time.perf_counter() - t0
            return self.save(finished=True)
        finally:
            bar.close()
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

"""The skeleton both trainers share: :class:`TrainingRun`.

A training run, whatever the library, is the same job: plan the learners
(``training.learners``), check that a resumed run matches the config, build
the models, load a checkpoint's state and self-play pools, train in chunks up
to ``total_timesteps``, write a checkpoint every ``checkpoint_every``
agent-steps with a typed manifest (``training.manifest``) into a locked run
folder (``training.run``). :class:`TrainingRun` does all of that once; a
backend (``training.sb3.Trainer``, ``training.rllib.RllibRun``) supplies only
what is specific to its library:

=====================  ==============================================================
hook                   what the backend does
=====================  ==============================================================
``build_models(old)``  build its models (from ``old``'s hyperparameters, resuming)
``load_state``         load the checkpoint's tensors of every learner into them
``save_state(lr)``     the learner's SB3-layout policy and a ``save(path)`` writer
``train_chunk()``      train one chunk; the learners that moved (their policies then
                       join their self-play pools)
``learner_steps(lr)``  agent-steps the learner has trained
``record(lr)``         its manifest fields of the library (counters, hyperparameters)
``open_log``           a progress bar and logger (``update(added)``, ``close()``)
=====================  ==============================================================
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar

from attn_env.config import ExperimentConfig, make_config
from attn_env.core import MarketSpec
from attn_env.errors import UserError
from training.checkpoint import load_tensors
from training.learners import Learner, plan_learners, write_config
from training.manifest import LearnerEntry, RunManifest
from training.run import MANIFEST, WEIGHTS, RunFolder

__all__ = ["TrainingRun", "agent_names", "check_resumable"]


def agent_names(config: ExperimentConfig) -> list[str]:
    """The market's agent names, without building a market."""
    return list(MarketSpec.from_config(make_config(config.env)).agents)


def check_resumable(
    out: Path, old: RunManifest, learners: list[Learner], algo: str, backend: str
) -> None:
    """``UserError`` unless ``old`` trained these learners with this algorithm,
    backend and action maps (one line naming the first difference)."""
    if old.backend != backend:
        raise UserError(
            f"cannot resume {str(out)!r} with backend {backend}: it was trained "
            f"with {old.backend}"
        )
    algos = sorted({e.algo for e in old.learners.values()})
    if algos != [algo]:
        raise UserError(
            f"cannot resume {str(out)!r}: it trained with algo "
            f"{', '.join(algos)}, the config asks for {algo!r}"
        )
    names = sorted(lr.name for lr in learners)
    if sorted(old.learners) != names:
        raise UserError(
            f"cannot resume {str(out)!r}: it trained learners "
            f"{sorted(old.learners)}, the config asks for {names}"
        )
    for lr in learners:
        if old.learners[lr.name].action != lr.action_map:
            raise UserError(f"cannot resume {lr.name!r}: its action map changed")


class TrainingRun(ABC):
    """One training run into a locked run folder; subclasses supply the library.

    Args:
        config: the experiment.
        run: the run folder, locked (``RunFolder.fresh`` or ``RunFolder.resume``).
        old: the manifest of the run to continue, or None for a fresh run.
    """

    backend: ClassVar[str]
    "``sb3`` or ``rllib``: recorded in the manifest, checked on ``--resume``."
    device: str = "cpu"
    "Where restored self-play snapshots live."

    def __init__(
        self, config: ExperimentConfig, run: RunFolder, old: RunManifest | None
    ) -> None:
        self.config, self.tc, self.folder, self.old = config, config.train, run, old
        self.names = agent_names(config)
        self.learners = plan_learners(config, self.names)
        if old is not None:
            check_resumable(run.path, old, self.learners, self.tc.algo, self.backend)
        self.state: dict[str, Any] = {"turns": 0, "wall_s": 0.0}
        if old is not None:
            self.state = {"turns": old.turns or 0, "wall_s": old.wall_s or 0.0}

    # -- the backend's hooks ----------------------------------------------------------

    @abstractmethod
    def build_models(self, old: RunManifest | None) -> None:
        """Build every learner's model (with ``old``'s hyperparameters, resuming)."""

    @abstractmethod
    def load_state(self, old: RunManifest, saved: dict[str, tuple[Any, Path]]) -> None:
        """Load each learner's checkpoint tensors ``saved[name] = (tree, path)``."""

    @abstractmethod
    def save_state(self, lr: Learner) -> tuple[Any, Any]:
        """``(policy, save)``: its SB3-layout policy and ``save(path)`` writing
        everything ``load_state`` needs."""

    @abstractmethod
    def train_chunk(self) -> list[Learner]:
        """Train one chunk (a turn, an iteration); the learners that trained."""

    @abstractmethod
    def learner_steps(self, lr: Learner) -> int:
        """Agent-steps ``lr`` has trained so far."""

    @abstractmethod
    def record(self, lr: Learner) -> dict[str, Any]:
        """``lr``'s library fields of its manifest entry (``sb3``, counters, ...)."""

    @abstractmethod
    def open_log(self, total: int, start: int, enabled: bool) -> Any:
        """A progress log: ``update(done, added)`` after each chunk, ``close()``."""

    def run_record(self) -> dict[str, Any]:
        """Run-level manifest fields of the library (none by default)."""
        return {}

    # -- what every backend shares ----------------------------------------------------

    @property
    def timesteps(self) -> int:
        """Agent-steps trained so far, all learners together."""
        return sum(self.learner_steps(lr) for lr in self.learners)

    def start(self) -> None:
        """Build the models, restore a resumed run's state and pools, write the
        config (only now: a refused ``--resume`` leaves the run's config as it was)."""
        self.build_models(self.old)
        if self.old is not None:
            self.load_state(self.old, self._saved(self.old))
            self._restore_pools(self.old)
        for lr in self.learners:
            if lr.pool is not None and not lr.pool.members:
                lr.pool.add(self.save_state(lr)[0], self.learner_steps(lr))
        write_config(self.folder, self.config)

    def _saved(self, old: RunManifest) -> dict[str, tuple[Any, Path]]:
        """Each learner's checkpoint tensors and the file they came from."""
        out = {}
        for lr in self.learners:
            entry = old.learners[lr.name]
            path = self.folder.checkpoint_file(old, entry.model, f"{lr.name} model")
            out[lr.name] = (load_tensors(path, device="cpu"), path)
        return out

    def _restore_pools(self, old: RunManifest) -> None:
        """Each self-play learner's pool from the snapshots the manifest lists."""
        from training.policy import build_policy

        where = self.folder.path / MANIFEST
        for lr in self.learners:
            if lr.pool is None:
                continue
            entry = old.learners[lr.name]

            def build(entry: LearnerEntry = entry, name: str = lr.name) -> Any:
                try:
                    return build_policy(entry.algo, entry.policy)
                except ValueError as err:
                    raise UserError(f"{where}: learner {name!r}: {err}") from None

            try:
                lr.pool.restore(build, list(old.pool.get(lr.name, ())), self.device)
            except UserError as err:
                if str(where) in str(err):
                    raise
                raise UserError(f"{where}: learner {lr.name!r}: {err}") from None

    def step(self) -> list[Learner]:
        """One chunk (:meth:`train_chunk`), counted as a turn; the learners that
        trained, their new policies in their self-play pools."""
        moved = self.train_chunk()
        self.state["turns"] += 1
        self.snapshot(moved)
        return moved

    def snapshot(self, learners: list[Learner]) -> None:
        """Add each self-play learner's current policy (of ``learners``) to its pool."""
        for lr in learners:
            if lr.pool is not None:
                lr.pool.add(self.save_state(lr)[0], self.learner_steps(lr))

    def _entry(self, lr: Learner, policy: Any) -> LearnerEntry:
        from training.policy import policy_spec

        return LearnerEntry(
            role=lr.role,
            seats=tuple(self.names[s] for s in lr.seats),
            algo=self.tc.algo,
            action=lr.action_map,
            timesteps=self.learner_steps(lr),
            model=f"{lr.name}{WEIGHTS}",
            policy=policy_spec(policy),
            backend=self.backend,
            **self.record(lr),
        )

    def manifest(self, finished: bool, entries: dict[str, LearnerEntry]) -> RunManifest:
        """The typed manifest of the run now."""
        return RunManifest(
            algo=self.tc.algo,
            backend=self.backend,
            mechanism=self.config.env.mechanism,
            seed=self.config.seed,
            agents=tuple(self.names),
            timesteps=self.timesteps,
            total_timesteps=self.tc.total_timesteps,
            finished=finished,
            learners=entries,
            pool={
                lr.name: tuple(lr.pool.files)
                for lr in self.learners
                if lr.pool is not None
            },
            turns=self.state["turns"],
            wall_s=self.state["wall_s"],
            **self.run_record(),
        )

    def save(self, finished: bool = False) -> dict[str, Any]:
        """Write an atomic checkpoint of every learner now; the manifest written."""
        entries, saves = {}, {}
        for lr in self.learners:
            policy, save = self.save_state(lr)
            entries[lr.name] = self._entry(lr, policy)
            saves[entries[lr.name].model] = save
        written = self.folder.save(self.manifest(finished, entries), saves)
        for lr in self.learners:
            if lr.pool is not None:
                lr.pool.prune_files()  # after the manifest stopped naming them
        return written

    def loop(self, progress: bool) -> dict[str, Any]:
        """Train up to ``total_timesteps`` agent-steps, checkpointing on the way."""
        tc = self.tc
        done = last_ckpt = self.timesteps
        log = self.open_log(tc.total_timesteps, min(done, tc.total_timesteps), progress)
        t0 = time.perf_counter() - self.state["wall_s"]
        try:
            while done < tc.total_timesteps:
                self.step()
                added, done = self.timesteps - done, self.timesteps
                log.update(done, added)
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
            log.close()

"""Self-play: a learner's other seats played by a pool of its own frozen past policies.

With ``self_play_pool: P > 0`` and a learner holding several seats of a role
(``share: role``), the learner controls one seat per market (seat
``m mod n_seats`` in market ``m``, so every seat is learned from) and the other
seats of its role are played by snapshots of its past policy: after every
training chunk a copy of the current policy joins the pool and the oldest
leaves once there are ``P``. Each round, every market draws one pool member
for its frozen seats. Snapshots are written to
``DIR/pool/<learner>/<steps>.safetensors`` (weights only: the architecture is
the learner's, described in the manifest) so a resumed run keeps its pool.
Every path goes through the run folder (:class:`training.run.RunFolder`), which
checks it first; the pool deletes only snapshots it recorded (written, or named
by the manifest it resumed from), never a file it did not make.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from attn_env.errors import UserError
from attn_env.fileio import atomic_save
from training.actions import ActionMap
from training.checkpoint import WEIGHTS, save_tensors
from training.policy import RolePolicy, freeze, load_weights
from training.run import RunFolder

__all__ = ["PoolPlayer", "SnapshotPool", "plays_pool", "seat_matrix"]


def plays_pool(seats: Sequence[int], pool_size: int) -> bool:
    """Whether a learner holding ``seats`` plays self-play (a pool, several seats)."""
    return pool_size > 0 and len(seats) > 1


def seat_matrix(seats: Sequence[int], n_markets: int, pool_size: int) -> NDArray:
    """``int [N, k]``: the seats a learner controls in each market.

    Under self-play (:func:`plays_pool`) one seat per market, seat ``m mod
    len(seats)`` in market ``m``; otherwise all of its seats in every market.
    """
    s = np.asarray(seats, dtype=np.int64)
    if plays_pool(seats, pool_size):
        return s[np.arange(n_markets) % len(s)][:, None]
    return np.tile(s, (n_markets, 1))


class SnapshotPool:
    """At most ``size`` frozen copies of one learner's policy, newest last.

    Args:
        size: pool capacity (``TrainConfig.self_play_pool``), >= 1.
        action_map: the learner's action map (shared by all snapshots).
        run: the run folder snapshots are saved in (``None``: memory only).
        name: the learner's name (``DIR/pool/<name>``), needed with ``run``.
    """

    def __init__(
        self,
        size: int,
        action_map: ActionMap,
        run: RunFolder | None = None,
        name: str | None = None,
    ) -> None:
        if size < 1:
            raise UserError(f"self_play_pool must be >= 1 for a pool, got {size}")
        if run is not None and name is None:
            raise TypeError("a pool saved in a run folder needs the learner's name")
        self.size = size
        self.action_map = action_map
        self.run, self.name = run, name
        self.members: list[RolePolicy] = []
        self.files: list[str] = []
        self.recorded: set[str] = set()
        "Snapshot files this pool wrote or resumed: the only ones it may delete."

    def as_member(self, policy: Any) -> RolePolicy:
        """A member of SB3 ``policy`` (put in inference mode, no gradients): it
        samples as while learning and acts in the env's units."""
        policy.set_training_mode(False)
        policy.requires_grad_(False)
        return RolePolicy(policy, self.action_map, deterministic=False, env_units=True)

    def __len__(self) -> int:
        return len(self.members)

    def add(self, policy: Any, tag: int) -> None:
        """Freeze a copy of SB3 ``policy`` (sampling, as while learning); save it."""
        frozen = freeze(policy)
        self.members.append(self.as_member(frozen))
        if self.run is not None:
            self.run.lock()
            path = self.run.pool_folder(self.name) / f"{tag:012d}{WEIGHTS}"
            state = {"policy": frozen.state_dict()}
            atomic_save(path, lambda tmp: save_tensors(tmp, state))
            self.files.append(path.name)
            self.recorded.add(path.name)
        del self.members[: -self.size]
        del self.files[: -self.size]

    def restore(self, build: Callable[[], Any], files: list[str], device: str) -> None:
        """Reload saved snapshots (resume); missing files are skipped.

        Args:
            build: a fresh policy of the learner's architecture (its weights
                are replaced by each snapshot's).
            files: snapshot file names, as the manifest lists them (checked
                there: plain ``.safetensors`` names).
            device: where the snapshots run.

        Raises:
            UserError: a snapshot is not a weights file of this policy, or its
                path is not a real file of the run (one line naming it).
                Nothing is unpickled.
        """
        if self.run is None:
            return
        self.recorded.update(files)
        for name in files[-self.size :]:
            path = self.run.pool_file(self.name, name)
            if path is not None:
                pol = build()
                load_weights(pol, path)
                pol.to(device)
                self.members.append(self.as_member(pol))
                self.files.append(name)

    def prune_files(self) -> None:
        """Delete recorded snapshots that left the pool (after the manifest stopped
        naming them); files the pool did not record are never touched."""
        if self.run is None:
            return
        keep = set(self.files)
        self.run.prune_pool(self.name, self.recorded, keep)
        self.recorded &= keep


class PoolPlayer:
    """Plays one seat with a pool member drawn per market and round (an agent)."""

    def __init__(self, pool: SnapshotPool) -> None:
        self.pool = pool

    def reset(self, num_envs: int, rng: np.random.Generator) -> None:
        """Stateless between rounds: the member is drawn in :meth:`act`."""

    def act(self, obs: NDArray, rng: np.random.Generator) -> NDArray[np.float32]:
        if not self.pool.members:
            raise RuntimeError(
                "the self-play pool is empty; add a snapshot before playing"
            )
        pick = rng.integers(len(self.pool.members), size=len(obs))
        out = np.zeros((len(obs), 1), dtype=np.float32)
        for i, member in enumerate(self.pool.members):
            rows = pick == i
            if rows.any():
                out[rows] = member.act(obs[rows])
        return out

    def observe(self, feedback: dict[str, Any]) -> None:
        """Frozen policies ignore feedback."""

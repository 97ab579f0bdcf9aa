"""The manifest of a run folder, typed: :class:`RunManifest` and :class:`LearnerEntry`.

``DIR/manifest.json`` names the current checkpoint and says how to rebuild
every learner from it (algorithm, action map, SB3 policy spec, step counts,
hyperparameters) and which self-play snapshots the pool holds. Both backends
(``training.sb3``, ``training.rllib``) write it through :meth:`RunManifest.to_dict`
and every reader (``load_policy``, ``--resume``) checks it through
:func:`parse_manifest`: one place parses, one place writes.

A manifest is untrusted input (a run folder may come from anywhere): every
field a loader or ``--resume`` uses is checked for type and range (counts are
integers in ``[0, MAX_STEPS]``, never booleans; file names are bare
``.safetensors`` names) and each error is one line naming the manifest.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from attn_env.checks import is_real
from attn_env.errors import UserError
from attn_env.observation import ROLES
from training.actions import ActionMap

__all__ = [
    "ALGOS",
    "BACKENDS",
    "FORMAT",
    "LEARNER_KEYS",
    "MAX_STEPS",
    "RUN_KEYS",
    "WEIGHTS",
    "LearnerEntry",
    "RunManifest",
    "is_learner_name",
    "is_pool_file",
    "parse_manifest",
]

FORMAT = "attn-market-run/2"
WEIGHTS = ".safetensors"
"Suffix of every weights file (checkpoint models and self-play snapshots)."
MAX_STEPS = 10**15
"Largest step, update or episode count a manifest may hold."
ALGOS = ("ppo", "sac")
BACKENDS = ("sb3", "rllib")
"Trainers that write run folders; a manifest without ``backend`` is SB3's."
LEARNER_KEYS = (
    "role",
    "seats",
    "algo",
    "action",
    "timesteps",
    "model",
    "policy",
    "sb3",
)
"What each ``learners`` entry of a manifest must hold."
RUN_KEYS = ("algo", "timesteps", "learners", "pool")
"What a manifest must hold besides ``format`` and ``checkpoint``."
_POOL_FILE = re.compile(r"[0-9]{12,16}" + re.escape(WEIGHTS))
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
"A learner name usable as one folder name (``pool/<learner>``, ``tb/<learner>``)."


def is_pool_file(name: str) -> bool:
    """Whether ``name`` is a self-play snapshot name ``<steps>.safetensors``."""
    return _POOL_FILE.fullmatch(name) is not None


def is_learner_name(name: Any) -> bool:
    """Whether ``name`` can name a learner (and so one folder of the run)."""
    return isinstance(name, str) and _NAME.fullmatch(name) is not None


@dataclass(frozen=True)
class LearnerEntry:
    """One learner of a run: how to rebuild its policy and where its weights are."""

    role: str
    "``buyer`` or ``seller``."
    seats: tuple[str, ...]
    "The agent names it controls."
    algo: str
    action: ActionMap
    timesteps: int
    model: str
    "Its weights file in the checkpoint folder (a bare ``.safetensors`` name)."
    policy: dict[str, Any]
    "The SB3 policy spec (``class``, ``kwargs``; ``training.policy.build_policy``)."
    sb3: dict[str, Any]
    "SB3 keywords that rebuild the model (``{}`` for RLlib runs)."
    n_updates: int = 0
    episode_num: int = 0
    backend: str = "sb3"
    rllib: dict[str, Any] | None = None
    "The RLlib PPO options the run used (RLlib runs only)."

    def to_dict(self) -> dict[str, Any]:
        """The JSON object of this entry in ``manifest.json``."""
        out = dataclasses.asdict(self)
        out["seats"] = list(self.seats)
        if self.rllib is None:
            del out["rllib"]
        return out


@dataclass(frozen=True)
class RunManifest:
    """The whole ``manifest.json`` of a run (its ``checkpoint`` set when written)."""

    algo: str
    timesteps: int
    "Agent-steps trained so far, all learners together."
    learners: dict[str, LearnerEntry]
    pool: dict[str, tuple[str, ...]] = field(default_factory=dict)
    "Self-play snapshot file names per learner (``pool/<learner>/``)."
    backend: str = "sb3"
    mechanism: str | None = None
    seed: int | None = None
    agents: tuple[str, ...] | None = None
    total_timesteps: int | None = None
    finished: bool | None = None
    turns: int | None = None
    wall_s: float | None = None
    iterations: int | None = None
    "RLlib PPO iterations (RLlib runs only)."
    env_steps: int | None = None
    "Env steps of ``num_envs`` markets (RLlib runs only)."
    checkpoint: str | None = None
    "``checkpoints/<steps>-<i>``; filled in by ``RunFolder.write_checkpoint``."
    format: str = FORMAT

    def to_dict(self) -> dict[str, Any]:
        """The JSON object written as ``manifest.json`` (unset fields left out)."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if value is None:
                continue
            if f.name == "learners":
                value = {k: e.to_dict() for k, e in value.items()}
            elif f.name == "pool":
                value = {k: list(v) for k, v in value.items()}
            elif f.name == "agents":
                value = list(value)
            out[f.name] = value
        return out


# -- parsing --------------------------------------------------------------------------


def parse_manifest(run_dir: str | Path, data: dict[str, Any]) -> RunManifest:
    """The typed manifest of ``data``, or ``UserError`` (one line naming the file).

    Checks the keys, types and ranges ``training.load_policy`` and ``--resume``
    read; ``format`` and ``checkpoint`` are checked by ``training.run.read_manifest``.
    """
    path = Path(run_dir) / "manifest.json"
    _need(path, "manifest", data, RUN_KEYS)
    counts = {
        key: _count(path, repr(key), data[key])
        for key in ("timesteps", "turns", "iterations", "total_timesteps", "env_steps")
        if key in data
    }
    wall = data.get("wall_s")
    if "wall_s" in data and not (is_real(wall) and wall >= 0):
        raise UserError(f"{path}: 'wall_s' must be a number >= 0")
    learners, pool = data["learners"], data["pool"]
    if not isinstance(learners, dict) or not learners:
        raise UserError(f"{path}: 'learners' must be a non-empty object")
    if not isinstance(pool, dict):
        raise UserError(f"{path}: 'pool' must be an object")
    entries = {name: _learner(path, name, e) for name, e in learners.items()}
    return RunManifest(
        algo=str(data["algo"])[:32],
        learners=entries,
        pool=_pool(path, pool, entries),
        backend=_choice(path, "'backend'", data.get("backend", "sb3"), BACKENDS),
        mechanism=_optional(path, data, "mechanism", str),
        seed=_optional(path, data, "seed", int),
        agents=_names(path, "'agents'", data["agents"]) if "agents" in data else None,
        finished=_optional(path, data, "finished", bool),
        wall_s=None if wall is None else float(wall),
        checkpoint=data.get("checkpoint"),
        format=data.get("format", FORMAT),
        **counts,
    )


def _learner(path: Path, name: Any, entry: Any) -> LearnerEntry:
    """One checked ``learners`` entry."""
    what = f"learner {name!r}"
    if not is_learner_name(name):
        raise UserError(f"{path}: {what} is not a plain learner name")
    if not isinstance(entry, dict):
        raise UserError(f"{path}: {what} must be an object")
    _need(path, what, entry, LEARNER_KEYS)
    _need(path, f"{what} action", entry["action"], ("mode", "role", "low", "high"))
    _need(path, f"{what} policy", entry["policy"], ("class", "kwargs"))
    seats = _names(path, f"{what} 'seats'", entry["seats"])
    _choice(path, f"{what} role", entry["role"], ROLES)
    _choice(path, f"{what} action role", entry["action"]["role"], ROLES)
    _choice(path, f"{what} 'algo'", entry["algo"], ALGOS)
    counts = {
        key: _count(path, f"{what} {key!r}", entry.get(key, 0))
        for key in ("timesteps", "n_updates", "episode_num")
    }
    if not isinstance(entry["sb3"], dict):
        raise UserError(f"{path}: {what} 'sb3' must be an object")
    rllib = entry.get("rllib")
    if rllib is not None and not isinstance(rllib, dict):
        raise UserError(f"{path}: {what} 'rllib' must be an object")
    _file_name(path, entry["model"], f"{what} model")
    return LearnerEntry(
        role=entry["role"],
        seats=seats,
        algo=entry["algo"],
        action=_action(path, what, entry["action"]),
        model=entry["model"],
        policy=entry["policy"],
        sb3=entry["sb3"],
        backend=_choice(
            path, f"{what} 'backend'", entry.get("backend", "sb3"), BACKENDS
        ),
        rllib=rllib,
        **counts,
    )


def _action(path: Path, what: str, action: dict[str, Any]) -> ActionMap:
    """The learner's action map (its bounds finite numbers, ``low < high``)."""
    low, high = action["low"], action["high"]
    if not (is_real(low) and is_real(high)):
        raise UserError(f"{path}: {what} action 'low' and 'high' must be numbers")
    try:
        return ActionMap(action["mode"], action["role"], float(low), float(high))
    except UserError as err:
        raise UserError(f"{path}: {what} action: {err}") from None


def _pool(
    path: Path, pool: dict[str, Any], learners: dict[str, LearnerEntry]
) -> dict[str, tuple[str, ...]]:
    """Each self-play learner's snapshot names, checked."""
    out = {}
    for name, files in pool.items():
        if name not in learners:
            raise UserError(f"{path}: pool {name!r} is not a learner of the run")
        if not isinstance(files, list):
            raise UserError(f"{path}: pool {name!r} must be a list of file names")
        for f in files:
            _file_name(path, f, f"pool {name!r} file")
            if not is_pool_file(f):
                raise UserError(
                    f"{path}: pool {name!r} file {f!r} is not a "
                    f"<steps>{WEIGHTS} snapshot name"
                )
        out[name] = tuple(files)
    return out


def _choice(path: Path, what: str, value: Any, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise UserError(
            f"{path}: {what} must be one of {', '.join(allowed)}, "
            f"got {str(value)[:40]!r}"
        )
    return value


def _names(path: Path, what: str, value: Any) -> tuple[str, ...]:
    if not (
        isinstance(value, list) and value and all(isinstance(a, str) for a in value)
    ):
        raise UserError(f"{path}: {what} must be a list of agent names")
    return tuple(value)


def _optional(path: Path, data: dict[str, Any], key: str, tp: type) -> Any:
    """``data[key]`` if present (of type ``tp``; ``true`` is no int), else None."""
    if key not in data:
        return None
    value = data[key]
    if not isinstance(value, tp) or (tp is int and isinstance(value, bool)):
        raise UserError(
            f"{path}: {key!r} must be of type {tp.__name__}, got {str(value)[:40]!r}"
        )
    return value


def _count(path: Path, what: str, value: Any) -> int:
    """An integer in ``[0, MAX_STEPS]`` (``true`` is not 1), else one line."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise UserError(
            f"{path}: {what} must be an integer >= 0, got {str(value)[:40]!r}"
        )
    if not 0 <= value <= MAX_STEPS:
        raise UserError(
            f"{path}: {what} must be an integer in [0, {MAX_STEPS:.0e}], "
            f"got {str(value)[:40]}"
        )
    return value


def _need(path: Path, what: str, obj: Any, keys: tuple[str, ...]) -> None:
    if not isinstance(obj, dict):
        raise UserError(f"{path}: {what} must be an object, got {type(obj).__name__}")
    missing = [k for k in keys if k not in obj]
    if missing:
        raise UserError(f"{path}: {what} lacks key(s) {', '.join(map(repr, missing))}")


def _file_name(manifest: Path, name: Any, what: str) -> None:
    """A bare ``*.safetensors`` file name (no folder part, nothing hidden)."""
    if (
        not isinstance(name, str)
        or not name.endswith(WEIGHTS)
        or name != PurePosixPath(name).name
        or "\\" in name
        or name.startswith(".")
    ):
        raise UserError(
            f"{manifest}: {what} {name!r} is not a plain {WEIGHTS} file name; "
            "refusing it"
        )

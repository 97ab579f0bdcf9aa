"""One typed configuration object, loaded from YAML, flowing to the constructors.

Each section is a frozen dataclass whose fields carry a one-line docstring
(the comment under them). Unknown keys are rejected with a message that lists
the known ones, and types are checked, so a typo in a YAML file fails loudly
with the bad key named.

Layout of a config file (DESIGN.md section 6)::

    seed: 0
    env: {mechanism: cda, n_buyers: 10, n_sellers: 10, valuation: uniform, rounds: 1}
    agents:
      buyer: {kind: zi_c}          # by role ...
      seller_3: {kind: truthful}   # ... or by agent name (wins over the role)
    episodes: 2000
    train: {algo: ppo, total_timesteps: 200000, share: role}
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from attn_env import mechanisms
from attn_env.actions import ACTION_MODES
from attn_env.checks import ConfigError, is_real, reject_unknown
from attn_env.feedback import check_feedback
from attn_env.mechanisms import Mechanism
from attn_env.mechanisms.exposure_floor import check_floor
from attn_env.observation import role_of
from attn_env.valuations import source_names

__all__ = [
    "MAX_HISTORY",
    "REDRAW",
    "AgentSpec",
    "ConfigError",
    "EnvConfig",
    "ExperimentConfig",
    "SolveConfig",
    "TrainConfig",
    "from_dict",
    "load_config",
    "make_config",
    "reject_unknown",
    "validate_env",
    "validate_experiment",
]

REDRAW = ("round", "episode")
MAX_HISTORY = 10_000
"Most past rounds of prices an observation may hold (``history``)."
_FLOAT32_MAX = float(np.finfo(np.float32).max)


@dataclass(frozen=True)
class EnvConfig:
    """Options of the attention-market environment (keywords of ``parallel_env``)."""

    mechanism: str | Mechanism = "first_price"
    "Mechanism name (``attn_env.mechanisms.names()``) or a mechanism instance."
    mechanism_params: dict[str, Any] = field(default_factory=dict)
    "Keyword parameters of the mechanism (reserve, k, quality, ...)."
    n_buyers: int = 2
    "Number of buyers ``buyer_0..``."
    n_sellers: int = 0
    "Number of sellers (two-sided mechanisms only; defaults to n_buyers there)."
    n_slots: int = 1
    "Number of slots K (one-sided and matching mechanisms)."
    valuation: str = "uniform"
    "Valuation source: ``uniform`` or ``attention``."
    valuation_params: dict[str, Any] = field(default_factory=dict)
    "Keyword parameters of the valuation source (corpus, layers, bank path, ...)."
    value_dist: str = "uniform"
    "Distribution of buyers' values theta: ``uniform``, ``beta``, ``lognormal``."
    value_low: float = 0.0
    "Lower end of buyers' value range."
    value_high: float = 1.0
    "Upper end of buyers' value range."
    cost_low: float = 0.0
    "Lower end of sellers' cost range."
    cost_high: float = 1.0
    "Upper end of sellers' cost range."
    rounds: int = 1
    "Rounds per episode."
    redraw: str = "round"
    "When values are redrawn: every ``round`` or once per ``episode``."
    budget: float | None = None
    "Buyers' budget for the episode (``None``: unlimited)."
    history: int = 0
    "How many past rounds of public prices each agent observes."
    feedback: str = "none"
    "Published after each round: ``none``, ``winning_bid``, ``min_bid_to_win``."
    max_bid: float | None = None
    "Top of bids and asks; ``None``: value_high (two-sided: max with cost_high)."
    action: str = "auto"
    "What an action is: ``absolute`` (the bid or ask), ``shade`` (s in [0, 1]), or"
    " ``auto``: absolute, but learners in ``attn-market train`` shade."
    exposure_floor: float = 0.0
    "Least expected share of a page's attention per buyer, in [0, 1/n_buyers]."


@dataclass(frozen=True)
class AgentSpec:
    """A fixed or learning agent: its kind and parameters."""

    kind: str = "truthful"
    "Agent kind (``agents.names()``) or ``learn`` for a learning agent."
    params: dict[str, Any] = field(default_factory=dict)
    "Keyword parameters of the agent kind (e.g. ``shade: 0.8``)."


@dataclass(frozen=True)
class TrainConfig:
    """Options of ``attn-market train``."""

    backend: str = "sb3"
    "Training library: ``sb3`` (stable-baselines3) or ``rllib`` (Ray RLlib, PPO)."
    algo: str = "ppo"
    "``ppo`` or ``sac``."
    total_timesteps: int = 200_000
    "Agent-steps of experience to train on."
    share: str = "role"
    "Parameter sharing: ``role`` (one policy per role) or ``none`` (independent)."
    num_envs: int = 64
    "Markets stepped in parallel to collect experience."
    squash: str = "sigmoid"
    "Raw policy sample -> ``s`` under ``env.action: shade``: ``sigmoid`` or ``clip``."
    gamma: float = 0.0
    "Discount factor (0 for one-shot rounds)."
    learning_rate: float = 3e-4
    "Optimizer learning rate."
    n_steps: int = 64
    "Rollout length per env (PPO)."
    batch_size: int = 1024
    "Minibatch size."
    net_arch: list[int] = field(default_factory=lambda: [64, 64])
    "Hidden layer sizes of policy and value networks."
    self_play_pool: int = 0
    "Frozen past checkpoints in the opponent pool (0: no self-play)."
    checkpoint_every: int = 50_000
    "Agent-steps between atomic checkpoints."
    alternate_every: int = 16_384
    "Agent-steps per learner turn (learners alternate; self-play snapshots per turn)."
    device: str = "auto"
    "``auto`` picks cuda when present, else cpu."
    threads: int = 1
    "Torch CPU threads (1 is fastest for these small networks, and on a busy machine)."
    algo_params: dict[str, Any] = field(default_factory=dict)
    "Extra keyword arguments for the SB3 algorithm."


@dataclass(frozen=True)
class SolveConfig:
    """Options of the equilibrium solver (``solve`` command, ``kind: equilibrium``)."""

    values: int = 64
    "Value (or cost) grid points per role: quantile midpoints of its distribution."
    bids: int = 101
    "Bid (or ask) grid points, equally spaced on ``[0, max_bid]``."
    iterations: int = 3000
    "Most dual-averaging iterations."
    step: float = 2.0
    "Initial step size ``eta_0`` (utilities scaled by each value's best utility)."
    decay: float = 0.05
    "Step-size decay: ``eta_t = step * t ** -decay``."
    tolerance: float = 0.001
    "Stop when every role's relative utility loss on the solve grid is below this."
    samples: int = 200
    "Opponent profiles per iteration where no closed form exists (double auctions)."
    refine: int = 4
    "The reported utility loss is a best response on grids this many times finer."
    cache: bool = True
    "Keep solutions under the cache folder, so repeated runs do not solve again."


@dataclass(frozen=True)
class ExperimentConfig:
    """A whole experiment: env, agents, episodes and training."""

    seed: int = 0
    "Seed of every generator in the run."
    env: EnvConfig = field(default_factory=EnvConfig)
    "The market."
    agents: dict[str, AgentSpec] = field(default_factory=dict)
    "Agents by role (``buyer``, ``seller``) or by name (``buyer_0``)."
    episodes: int = 1000
    "Episodes played by ``simulate`` and ``evaluate``."
    warmup: int = 0
    "Rounds every market plays before the measured episodes (agents learn; unmeasured)."
    train: TrainConfig = field(default_factory=TrainConfig)
    "Training options."
    solve: SolveConfig = field(default_factory=SolveConfig)
    "Equilibrium-solver options."

    def agent_spec(self, agent: str) -> AgentSpec:
        """The spec for ``agent`` (by name, else by its role, else truthful)."""
        if agent in self.agents:
            return self.agents[agent]
        return self.agents.get(role_of(agent), AgentSpec())

    def to_dict(self) -> dict[str, Any]:
        """Plain data, for saving beside a checkpoint or in results."""
        return dataclasses.asdict(self)


def _check_type(value: Any, tp: Any, where: str) -> Any:
    """Check (and lightly coerce: int -> float) ``value`` against annotation ``tp``."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        errors = []
        for arg in typing.get_args(tp):
            try:
                return _check_type(value, arg, where)
            except ConfigError as err:
                errors.append(str(err))
        raise ConfigError(f"{where}: {value!r} matches none of {tp}")
    if tp is type(None):
        if value is None:
            return None
        raise ConfigError(f"{where}: expected null, got {value!r}")
    if tp is Any:
        return value
    if (
        isinstance(tp, type)
        and not dataclasses.is_dataclass(tp)
        and tp
        not in (
            int,
            float,
            bool,
            str,
        )
    ):
        if isinstance(value, tp):
            return value
        raise ConfigError(f"{where}: expected {tp.__name__}, got {value!r}")
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, where)
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        _, vt = typing.get_args(tp)
        return {str(k): _check_type(v, vt, f"{where}.{k}") for k, v in value.items()}
    if origin is list:
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        (et,) = typing.get_args(tp)
        return [_check_type(v, et, f"{where}[{i}]") for i, v in enumerate(value)]
    if tp is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if tp is float and isinstance(value, str):
        # PyYAML reads 1e30 (no dot in the mantissa) as a string
        try:
            number = float(value)
        except ValueError:
            number = math.nan
        if math.isfinite(number):
            return number
    if tp is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if tp is bool and isinstance(value, bool):
        return value
    if tp is str and isinstance(value, str):
        return value
    name = getattr(tp, "__name__", str(tp))
    raise ConfigError(f"{where}: expected {name}, got {value!r}")


MOVED_KEYS = {
    ("TrainConfig", "action"): (
        "the key moved: what an action means is the env's option (env.action: "
        "shade or absolute), how the policy squashes into it is train.squash "
        "(sigmoid or clip); train.action shade_clip = env.action shade + "
        "train.squash clip"
    ),
}
"Keys of earlier versions, and where they went (named in the error)."


def from_dict(cls: type, data: Any, where: str = "config") -> Any:
    """Build dataclass ``cls`` from a mapping, rejecting unknown keys by name."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    known = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in data.items():
        if key not in known:
            moved = MOVED_KEYS.get((cls.__name__, key))
            if moved:
                raise ConfigError(f"{where}.{key}: {moved}")
            raise ConfigError(
                f"{where}: unknown key {key!r}; known keys: {', '.join(known)}"
            )
        kwargs[key] = _check_type(value, hints[key], f"{where}.{key}")
    return cls(**kwargs)


def load_config(path: str | Path) -> ExperimentConfig:
    """Read a YAML file into an :class:`ExperimentConfig` (errors name the bad key)."""
    import yaml

    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"config file {str(path)!r} is a folder, not a YAML file")
    if not path.is_file():
        raise ConfigError(f"config file {str(path)!r} does not exist")
    try:
        with path.open(encoding="utf-8") as fh:
            data = yaml.safe_load(fh)
    except yaml.YAMLError as err:
        msg = " ".join(str(err).split())
        raise ConfigError(f"{path}: not valid YAML: {msg}") from None
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path}: not UTF-8 text ({err.reason})") from None
    config = from_dict(ExperimentConfig, data, where=path.name)
    validate_experiment(config)
    return config


def validate_experiment(c: ExperimentConfig) -> None:
    """``ValueError`` naming the first bad option of a whole experiment.

    Checks the env (:func:`validate_env`), ``seed`` and ``episodes``, and that
    every key of ``agents`` is a role (``buyer``, ``seller``) or an agent of the
    market; the agent kinds are checked where agents are built.
    """
    for name, least in (("seed", 0), ("episodes", 1), ("warmup", 0)):
        v = getattr(c, name)
        if isinstance(v, bool) or not isinstance(v, int | np.integer) or v < least:
            raise ValueError(f"{name} must be an integer >= {least}, got {v!r}")
    validate_env(c.env)
    n_sellers = (
        (c.env.n_sellers or c.env.n_buyers)
        if mechanisms.family(c.env.mechanism) == "two_sided"
        else 0
    )
    names = [f"buyer_{i}" for i in range(c.env.n_buyers)]
    names += [f"seller_{j}" for j in range(n_sellers)]
    unknown = sorted(set(c.agents) - {"buyer", "seller", *names})
    if unknown:
        shown = names if len(names) <= 6 else [*names[:2], "...", *names[-2:]]
        raise ConfigError(
            f"agents: unknown key(s) {', '.join(map(repr, unknown))}; a key is a "
            f"role (buyer, seller) or an agent of the market ({', '.join(shown)})"
        )


def make_config(config: EnvConfig | None = None, **options: Any) -> EnvConfig:
    """Merge ``config`` and keyword ``options`` into a validated :class:`EnvConfig`.

    Raises:
        ValueError: an unknown option (the message lists the known ones) or a bad
            value (the message names it and what was expected).
    """
    reject_unknown(EnvConfig, options, "environment option(s)")
    if config is None:
        config = EnvConfig()
    elif not isinstance(config, EnvConfig):
        raise ValueError(f"config must be an EnvConfig, got {type(config).__name__}")
    config = dataclasses.replace(config, **options)
    validate_env(config)
    return config


def validate_env(c: EnvConfig) -> None:
    """``ValueError`` naming the first bad environment option and what it expects."""

    def bad(name: str, expected: str) -> ValueError:
        return ValueError(f"{name} must be {expected}, got {getattr(c, name)!r}")

    if isinstance(c.mechanism, Mechanism):
        if c.mechanism_params:
            raise ValueError(
                "mechanism_params must be empty when mechanism is an instance "
                f"(its parameters are set), got {c.mechanism_params!r}"
            )
    elif c.mechanism not in mechanisms.names():
        raise ValueError(
            f"unknown mechanism {c.mechanism!r}; known: {', '.join(mechanisms.names())}"
        )
    for name in ("n_buyers", "n_slots", "rounds"):
        v = getattr(c, name)
        if isinstance(v, bool) or not isinstance(v, int | np.integer) or v < 1:
            raise bad(name, "an integer >= 1")
    for name in ("n_sellers", "history"):
        v = getattr(c, name)
        if isinstance(v, bool) or not isinstance(v, int | np.integer) or v < 0:
            raise bad(name, "an integer >= 0")
    if c.history > MAX_HISTORY:
        raise bad("history", f"at most {MAX_HISTORY} (past rounds observed)")
    fam = mechanisms.family(c.mechanism)
    check_feedback(c.feedback, fam, mechanisms.name_of(c.mechanism))
    if c.n_sellers and fam != "two_sided":
        raise ValueError(
            f"n_sellers must be 0 for the {fam} mechanism "
            f"{mechanisms.name_of(c.mechanism)!r} (the publisher is the market), "
            f"got {c.n_sellers}"
        )
    if fam == "two_sided" and c.n_slots != 1:
        raise ValueError(
            f"n_slots must be 1 for the two-sided mechanism "
            f"{mechanisms.name_of(c.mechanism)!r} (one unit per trader), "
            f"got {c.n_slots}"
        )
    if c.valuation not in source_names():
        raise bad("valuation", f"one of {', '.join(source_names())}")
    if c.redraw not in REDRAW:
        raise bad("redraw", f"one of {', '.join(REDRAW)}")
    if c.action not in ACTION_MODES:
        raise bad("action", f"one of {', '.join(ACTION_MODES)}")
    # values may be one fixed number (0 < value_low == value_high: a common value)
    for lo, hi, rel in (
        ("value_low", "value_high", "<="),
        ("cost_low", "cost_high", "<"),
    ):
        a, b = getattr(c, lo), getattr(c, hi)
        if not (
            is_real(a)
            and is_real(b)
            and 0.0 <= a
            and (a < b or (a == b > 0.0 and rel == "<="))
        ):
            also = f" and {hi} > 0" if rel == "<=" else ""
            raise ValueError(
                f"{lo}, {hi} must satisfy 0 <= {lo} {rel} {hi}{also}, got {a!r}, {b!r}"
            )
    for name in ("value_low", "value_high", "cost_low", "cost_high", "budget"):
        v = getattr(c, name)
        if is_real(v) and abs(v) > _FLOAT32_MAX:
            raise bad(name, f"finite as float32 (at most {_FLOAT32_MAX:.4g})")
    if is_real(c.max_bid) and c.max_bid > _FLOAT32_MAX:
        raise bad("max_bid", f"finite as float32 (at most {_FLOAT32_MAX:.4g})")
    if c.budget is not None and not (is_real(c.budget) and c.budget >= 0):
        raise bad("budget", "None (unlimited) or a finite number >= 0")
    if c.max_bid is not None and not (is_real(c.max_bid) and c.max_bid > 0):
        raise bad("max_bid", "None (the top of the value/cost ranges) or a number > 0")
    for name in ("mechanism_params", "valuation_params"):
        if not isinstance(getattr(c, name), dict):
            raise bad(name, "a mapping of keyword parameters")
    if c.exposure_floor:  # attn_env.mechanisms.exposure_floor: a free lottery
        if fam == "two_sided":
            raise bad("exposure_floor", "0 in a two-sided market (no slots)")
        check_floor(c.exposure_floor, c.n_buyers)
    _check_valuation_params(c.valuation, c.valuation_params)
    if c.valuation_params.get("slot_weights") is not None:  # uniform source
        from attn_env.valuations.positions import PositionModel

        PositionModel.parse(c.valuation_params["slot_weights"]).weights(c.n_slots)


def _check_valuation_params(name: str, params: dict[str, Any]) -> None:
    """The keys of ``valuation_params`` are keywords of source ``name``'s class.

    ``dist``, ``low`` and ``high`` come from ``value_dist``, ``value_low`` and
    ``value_high``; a class taking ``**kwargs`` checks the rest itself.
    """
    from attn_env.valuations import source_class
    from attn_env.valuations.fake_traffic import check_fake_traffic

    own = {"dist": "value_dist", "low": "value_low", "high": "value_high"}
    taken = sorted(set(params) & set(own))
    if taken:
        raise ValueError(
            f"valuation_params: {', '.join(map(repr, taken))} is set by "
            f"{', '.join(own[k] for k in taken)}; drop it from valuation_params"
        )
    if "fake_traffic" in params:  # bot traffic wraps every source
        check_fake_traffic(params["fake_traffic"])
        params = {k: v for k, v in params.items() if k != "fake_traffic"}
    sig = inspect.signature(source_class(name).__init__)
    kinds = [p.kind for p in sig.parameters.values()]
    if inspect.Parameter.VAR_KEYWORD in kinds:
        return
    known = [k for k in sig.parameters if k not in ("self", *own)]
    unknown = sorted(set(params) - set(known))
    if unknown:
        raise ValueError(
            f"valuation_params: unknown option(s) {', '.join(map(repr, unknown))} "
            f"for the {name!r} source; known: {', '.join([*known, 'fake_traffic'])}"
        )

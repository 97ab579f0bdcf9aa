"""One typed configuration object, loaded from YAML, flowing to the constructors.

Each section is a frozen dataclass whose fields carry a one-line docstring
(the comment under them). Unknown keys are rejected with a message that lists
the known ones, and types are checked, so a typo in a YAML file fails loudly
with the bad key named.

A config is a file a user hands in, so it is read with limits (docs/security.md):
a size cap, YAML nesting, expanded size and aliases bounded, duplicate keys
refused; every size that makes work (agents, slots, rounds, episodes, grids,
threads, ...) has a cap named in its error; numbers are checked before they
reach numpy or torch (a bool is not a number, a 400-digit integer is refused);
``mechanism_params`` are checked against what the mechanism declares. Every
error is one :class:`ConfigError` line naming the key.

Layout of a config file (docs/design.md#config-files)::

    seed: 0
    env: {mechanism: cda, n_buyers: 10, n_sellers: 10, valuation: uniform, rounds: 1}
    agents:
      buyer: {kind: zi_c}          # by role ...
      seller_3: {kind: truthful}   # ... or by agent name (wins over the role)
    episodes: 2000
    train: {algo: ppo, total_timesteps: 200000, share: role}
    plugins: [my_pkg.mechanisms]   # imported first: what they register is known
"""

from __future__ import annotations

import dataclasses
import inspect
import itertools
import math
import re
import types
import typing
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from attn_env import mechanisms
from attn_env.actions import ACTION_MODES, ActionOption
from attn_env.checks import (
    ConfigError,
    check_device,
    check_int,
    check_real,
    is_int,
    is_real,
    reject_unknown,
    show,
)
from attn_env.feedback import check_feedback
from attn_env.fileio import MAX_NESTING, read_user_bytes
from attn_env.mechanisms import Mechanism
from attn_env.mechanisms.exposure_floor import check_floor
from attn_env.observation import OBS_BASE_DIM, feedback_dim, role_of
from attn_env.plugins import check_module_names, import_plugins
from attn_env.valuations import source_names

__all__ = [
    "MAX_AGENTS",
    "MAX_CELLS",
    "MAX_CONFIG_BYTES",
    "MAX_EPISODES",
    "MAX_HISTORY",
    "MAX_LAYER",
    "MAX_MARKETS",
    "MAX_PRICE",
    "MAX_ROUNDS",
    "MAX_SEED",
    "MAX_SLOTS",
    "REDRAW",
    "AgentSpec",
    "ConfigError",
    "EnvConfig",
    "ExperimentConfig",
    "SolveClass",
    "SolveConfig",
    "SolvePrior",
    "SolveUtility",
    "TrainConfig",
    "from_dict",
    "game_in_sync",
    "load_config",
    "make_config",
    "one_draw_only",
    "read_config_yaml",
    "reject_unknown",
    "validate_env",
    "validate_experiment",
    "validate_solve",
    "validate_train",
]

REDRAW = ("round", "episode")
MAX_HISTORY = 10_000
"Most past rounds of prices an observation may hold (``history``)."

# -- caps on every size that makes work (one-line errors name them) -------------
MAX_AGENTS = 10_000
"Most buyers, and most sellers, in one market (``n_buyers``, ``n_sellers``)."
MAX_SLOTS = 1_000
"Most slots in one market (``n_slots``)."
MAX_CELLS = 1_000_000
"Most numbers one market holds per step: agents x observation width (history"
" and feedback included), and buyers x slots (a matching's value table). Every"
" vector env steps up to 1,024 such markets at once."
MAX_ROUNDS = 1_000_000
"Most rounds in one episode (``rounds``)."
MAX_EPISODES = 100_000_000
"Most episodes ``simulate`` and ``evaluate`` play (``episodes``)."
MAX_WARMUP = 1_000_000_000
"Most unmeasured warm-up rounds (``warmup``)."
MAX_SEED = 2**32 - 1
"Largest seed: numpy's and SB3's global seeding take 32-bit seeds."
MAX_PRICE = 1e12
"Largest value, cost, budget, bid, reserve or other number a market option or a"
" mechanism parameter may set: far under float32's 3.4e38 (observations) even"
" summed over ``MAX_ROUNDS`` rounds."
MAX_PARAM_INT = 2**53
"Largest magnitude of an integer in free-form parameters (agent, valuation,"
" algorithm): exact as a float64, and within numpy's int64."
MAX_CONFIG_BYTES = 1 << 20
"Size cap of a config file (1 MiB; the shipped configs are under 2 KiB)."
MAX_YAML_NODES = 100_000
"Most values a config's YAML may expand to, aliases counted at every use."
MAX_YAML_ALIASES = 1_000
"Most alias uses (``*name``) in one config."
MAX_LAYER = 65_536
"Widest hidden layer ``train.net_arch`` may ask for."
MAX_WEIGHTS = 100_000_000
"Most weights between hidden layers of one ``train.net_arch`` (400 MB as float32)."
MAX_ROLLOUT = 10_000_000
"Most experience rows one rollout holds: ``train.n_steps x train.num_envs``."
MAX_MARKETS = 16_384
"Most markets a training step clears (``num_envs`` x ``opponent_draws``)."
_TRAIN_INTS = {
    "total_timesteps": (1, 10**12),
    "num_envs": (1, MAX_MARKETS),
    "n_steps": (1, 1_000_000),
    "n_epochs": (1, 1_000),
    "batch_size": (1, 100_000_000),
    "self_play_pool": (0, 1_000),
    "checkpoint_every": (1, 10**12),
    "alternate_every": (1, 10**12),
    "threads": (1, 256),
    "opponent_draws": (1, 1_024),
}
"Integer options of ``train`` and their ranges (``threads``: torch CPU threads)."
_SOLVE_INTS = {
    "values": (2, 100_000),
    "bids": (2, 100_000),
    "iterations": (1, 10_000_000),
    "samples": (1, 1_000_000),
    "refine": (1, 64),
}
"Integer options of ``solve`` and their ranges (memory is checked by the solver)."
SOLVE_MARKET_DEFAULTS = ("values", "bids", "iterations", "refine")
"Options of ``solve`` whose ``None`` is the market's default (the solver fills them)."


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
    utility: SolveUtility = field(default_factory=lambda: SolveUtility())
    "Buyers' utility of a round's surplus x in the rewards: ``linear`` (x) or"
    " ``{kind: crra, rho}`` (``sign(x) |x|^rho``); in a config file ``env.utility``"
    " and ``solve.utility`` are one setting (either sets both)."
    value_ranges: dict[str, list[float]] = field(default_factory=dict)
    "Buyers with their own value range, ``{buyer_0: [low, high]}`` (the others"
    " draw from ``[value_low, value_high]``); a config's ``solve.classes`` fill it."

    @property
    def actions(self) -> ActionOption:
        """:attr:`action` resolved (``auto`` has one meaning, decided here)."""
        return ActionOption.resolve(self.action)


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
    anneal_lr: bool = False
    "Decay the learning rate linearly to 0 over ``total_timesteps`` (both backends)."
    lr_decay_steps: int | None = None
    "Decay it harmonically instead: ``learning_rate / (1 + t / lr_decay_steps)``"
    " after ``t`` agent-steps, half the start at ``lr_decay_steps`` (both backends)."
    n_steps: int = 64
    "Rollout length per env (PPO)."
    n_epochs: int = 10
    "PPO epochs over each rollout (SB3's default; ``algo_params.n_epochs`` wins)."
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
    opponent_draws: int = 1
    "Single-round markets: each learner action is scored against this many"
    " independent draws of the fixed agents (the learners' own draws shared), the"
    " reward their mean; lowers the reward's noise against frozen opponents"
    " (``exploit``'s best responders). SB3 backend only."


UTILITY_KINDS = ("linear", "crra")
"Bidders' utility of money in the solver: risk-neutral, or CRRA ``x^rho``."


@dataclass(frozen=True)
class SolveUtility:
    """Bidders' utility of their surplus ``x`` in the solver (``solve.utility``)."""

    kind: str = "linear"
    "``linear`` (risk-neutral) or ``crra``: ``u(x) = x^rho`` (first price only)."
    rho: float = 1.0
    "CRRA exponent in (0, 1]; 1 is risk-neutral, smaller is more risk-averse."


@dataclass(frozen=True)
class SolveClass:
    """A class of bidders with its own value range and strategy (``solve.classes``)."""

    agents: list[str] = field(default_factory=list)
    "The buyers in the class (``buyer_0``, ...); every buyer in exactly one class."
    name: str = ""
    "The class's name in the solution (default ``class_<i>``)."
    value_low: float | None = None
    "Lower end of the class's values (``None``: the market's ``value_low``)."
    value_high: float | None = None
    "Upper end of the class's values (``None``: the market's ``value_high``)."


PRIOR_KINDS = ("independent", "common_noise", "source")
"Joint laws of the buyers' values in the solver (``solve.prior.kind``)."


@dataclass(frozen=True)
class SolvePrior:
    """The joint law of the buyers' values in the solver (``solve.prior``).

    ``independent``: each buyer's value an independent draw of the market's law
    (as before). ``common_noise``: affiliated values ``v_i = low + (high - low)
    (w c + (1 - w) e_i)`` with ``c``, ``e_i`` independent ``U[0, 1]`` and ``w =
    common``. ``source``: whole markets drawn from the valuation source, each
    market's values kept together (the attention source: theta x r of one
    query's candidates). Both integrate over ``draws`` value profiles drawn once
    (common random numbers).
    """

    kind: str = "independent"
    "``independent``, ``common_noise`` or ``source``."
    common: float = 0.5
    "Weight ``w`` of the common component, in [0, 1) (``common_noise``)."
    draws: int | None = None
    "Value profiles drawn once and integrated over (``common_noise``, ``source``);"
    " ``None``: 65536 with two buyers (their pair law costs nothing per iteration),"
    " 8192 with more (each iteration is linear in the draws)."


@dataclass(frozen=True)
class SolveConfig:
    """Options of the equilibrium solver (``solve`` command, ``kind: equilibrium``)."""

    values: int | None = None
    "Value (or cost) grid points per role: quantile midpoints of its distribution;"
    " ``None``: 128 for one-slot first price with 3 or more buyers, else 64."
    bids: int | None = None
    "Bid (or ask) grid points, equally spaced on ``[0, max_bid]``; ``None``: 401"
    " for ROI-constrained one-slot markets with 4 or more buyers, 201 for"
    " all-pay, else 101."
    iterations: int | None = None
    "Most dual-averaging iterations; ``None``: 10000 for all-pay, else 3000."
    step: float = 2.0
    "Initial step size ``eta_0`` (utilities scaled by each value's best utility)."
    decay: float = 0.05
    "Step-size decay: ``eta_t = step * t ** -decay``."
    stop: float = 0.001
    "Stop when every role's relative utility loss on the solve grid is below this."
    tolerance: float = 0.02
    "Largest reported utility loss of a converged solution (above it: flagged)."
    allow_unconverged: bool = False
    "Let ``kind: equilibrium`` and ``evaluate`` use a solution over ``tolerance``."
    samples: int = 200
    "Opponent profiles per iteration where no closed form exists (double auctions)."
    refine: int | None = None
    "The reported utility loss is a best response on grids this many times finer;"
    " ``None``: 16 for all-pay, else 4."
    cache: bool = True
    "Keep solutions under the cache folder, so repeated runs do not solve again."
    utility: SolveUtility = field(default_factory=SolveUtility)
    "Bidders' utility of their surplus: ``{kind: crra, rho: 0.5}`` for risk aversion."
    classes: list[SolveClass] = field(default_factory=list)
    "Asymmetric bidders: classes with their own value ranges and strategies."
    prior: SolvePrior = field(default_factory=SolvePrior)
    "Joint law of the values: ``{kind: common_noise, common: 0.5}`` (affiliated),"
    " ``{kind: source}`` (the valuation source's markets, values kept together)."
    roi_target: float | None = None
    "ROI-constrained bidders: a bid must keep ``v A(b) >= (1 + target) P(b)``."
    scale_floor: float = 1e-9
    "Least per-value utility scale of a step, times ``max_bid`` (small: types that"
    " rarely win still learn; was 1e-4, which left first price n >= 8 at L2 0.01+)."


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
    plugins: list[str] = field(default_factory=list)
    "Modules imported before the rest of the config is checked (their mechanisms,"
    " sources and agent kinds are then known by name); see attn_env.plugins."

    def __post_init__(self) -> None:
        env, solve = game_in_sync(self.env, self.solve)
        object.__setattr__(self, "env", env)
        object.__setattr__(self, "solve", solve)

    def agent_spec(self, agent: str) -> AgentSpec:
        """The spec for ``agent`` (by name, else by its role, else truthful)."""
        if agent in self.agents:
            return self.agents[agent]
        return self.agents.get(role_of(agent), AgentSpec())

    def to_dict(self) -> dict[str, Any]:
        """Plain data, for saving beside a checkpoint or in results."""
        return dataclasses.asdict(self)


def _check_type(value: Any, tp: Any, where: str) -> Any:
    """Check (and lightly coerce: int -> float) ``value`` against annotation ``tp``.

    Floats must be finite; a value typed ``Any`` must be plain data
    (:func:`_check_plain`). Ranges are checked by the ``validate_*`` functions.
    """
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None and len(options) < len(typing.get_args(tp)):
            return None
        if len(options) == 1:  # Optional[X]: X's own message
            return _check_type(value, options[0], where)
        for arg in options:
            try:
                return _check_type(value, arg, where)
            except ConfigError:
                pass
        names = " or ".join(getattr(a, "__name__", str(a)) for a in options)
        raise ConfigError(f"{where}: expected {names}, got {show(value)}")
    if tp is type(None):
        if value is None:
            return None
        raise ConfigError(f"{where}: expected null, got {show(value)}")
    if tp is Any:
        return _check_plain(value, where)
    if (
        isinstance(tp, type)
        and not dataclasses.is_dataclass(tp)
        and tp not in (int, float, bool, str)
    ):
        if isinstance(value, tp):
            return value
        raise ConfigError(f"{where}: expected {tp.__name__}, got {show(value)}")
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, where)
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {show(value)}")
        _, vt = typing.get_args(tp)
        return {
            str(k): _check_type(v, vt, _key_path(where, k)) for k, v in value.items()
        }
    if origin is list:
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{where}: expected a list, got {show(value)}")
        (et,) = typing.get_args(tp)
        return [_check_type(v, et, f"{where}[{i}]") for i, v in enumerate(value)]
    if tp is float and isinstance(value, int | float) and not isinstance(value, bool):
        if is_real(value):
            return float(value)
        raise ConfigError(f"{where}: expected a finite number, got {show(value)}")
    if tp is float and isinstance(value, str):
        # PyYAML reads 1e30 (no dot in the mantissa) as a string
        try:
            number = float(value)
        except ValueError:
            number = math.nan
        if math.isfinite(number):
            return number
    if tp is int and is_int(value):
        return int(value)
    if tp is bool and isinstance(value, bool):
        return value
    if tp is str and isinstance(value, str):
        return value
    name = getattr(tp, "__name__", str(tp))
    raise ConfigError(f"{where}: expected {name}, got {show(value)}")


_PLAIN_KEY = re.compile(r"[A-Za-z0-9_-]{1,40}")


def _key_path(where: str, key: Any) -> str:
    """``where.key`` for a plain key, else ``where[<repr>]`` (one line, short)."""
    if isinstance(key, str) and _PLAIN_KEY.fullmatch(key):
        return f"{where}.{key}"
    return f"{where}[{show(key)}]"


def _check_plain(value: Any, where: str, depth: int = 0) -> Any:
    """``value`` if it is plain data with bounded numbers, else one line naming it.

    Plain data: null, booleans, strings, integers of magnitude at most
    :data:`MAX_PARAM_INT`, finite floats, and lists and mappings of those, at
    most ``MAX_NESTING`` deep. Free-form parameters (a mechanism's, a source's,
    an agent's) reach numpy through their owners: nothing there may overflow.
    """
    if depth > MAX_NESTING:
        raise ConfigError(f"{where}: nests over {MAX_NESTING} levels deep")
    if value is None or isinstance(value, bool | str):
        return value
    if is_int(value):
        if abs(int(value)) > MAX_PARAM_INT:
            raise ConfigError(
                f"{where}: integer {show(value)} is too large (magnitude at most "
                f"2**53 = {MAX_PARAM_INT:,})"
            )
        return value
    if isinstance(value, float | np.floating):
        if not math.isfinite(value):
            raise ConfigError(f"{where}: expected a finite number, got {show(value)}")
        return value
    if isinstance(value, list | tuple):
        for i, v in enumerate(value):
            _check_plain(v, f"{where}[{i}]", depth + 1)
        return value
    if isinstance(value, dict):
        for k, v in value.items():
            if not (k is None or isinstance(k, bool | str) or is_int(k)):
                raise ConfigError(
                    f"{where}: a key must be a string or a number, got {show(k)}"
                )
            _check_plain(v, _key_path(where, k), depth + 1)
        return value
    raise ConfigError(
        f"{where}: expected plain data (numbers, strings, lists, mappings), got "
        f"{type(value).__name__} {show(value)}"
    )


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
        raise ConfigError(f"{where}: expected a mapping, got {show(data)}")
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
    """Read a YAML file into an :class:`ExperimentConfig` (errors name the bad key).

    The file is read with limits (:func:`read_config_yaml`); the modules under
    ``plugins`` are imported before anything else is checked, so the names they
    register are known. A file that sets nothing (empty, comments only, ``{}``)
    runs on every default and says so with a ``UserWarning``.
    """
    path = Path(path)
    data = read_config_yaml(path)
    if data is None or data == {}:
        warnings.warn(
            f"{path} sets nothing: every option takes its default (first_price, "
            "2 truthful buyers, 1000 episodes); check the file",
            UserWarning,
            stacklevel=2,
        )
    if isinstance(data, dict) and "scenario" in data:
        raise ConfigError(
            f"{path.name} is a scenario config (scenario: {show(data['scenario'])}); "
            "scenarios run with simulate, train, evaluate and compare"
        )
    if isinstance(data, dict) and "plugins" in data:
        where = f"{path.name}: plugins"
        import_plugins(check_module_names(data["plugins"], where), where)
    config = from_dict(ExperimentConfig, data, where=path.name)
    validate_experiment(config)
    return config


def read_config_yaml(path: str | Path) -> Any:
    """The plain data of a YAML config file, read with limits; one line if bad.

    A regular file of at most :data:`MAX_CONFIG_BYTES`, UTF-8, parsed by a
    ``yaml.SafeLoader`` (no Python tags) that refuses nesting deeper than
    ``MAX_NESTING``, more than :data:`MAX_YAML_ALIASES` alias uses, an
    expansion to more than :data:`MAX_YAML_NODES` values (billion laughs),
    recursive aliases and a key given twice in one mapping.
    """
    import yaml

    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"config file {str(path)!r} is a folder, not a YAML file")
    if not path.exists():
        raise ConfigError(f"config file {str(path)!r} does not exist")
    raw = read_user_bytes(path, "config file", MAX_CONFIG_BYTES)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path}: not UTF-8 text ({err.reason})") from None
    try:
        return yaml.load(text, Loader=_limited_loader(str(path)))
    except yaml.YAMLError as err:
        msg = " ".join(str(err).split())
        raise ConfigError(f"{path}: not valid YAML: {msg}") from None
    except (ValueError, OverflowError) as err:  # e.g. an int of over 4,300 digits
        if isinstance(err, ConfigError):
            raise
        msg = " ".join(str(err).split())
        raise ConfigError(f"{path}: a value cannot be read: {msg}") from None


_FLOAT_12 = re.compile(
    r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9][0-9_]*)[eE][-+]?[0-9]+$"
)
"A float in exponent form as YAML 1.2 writes it (``1e30``, ``2.5E-3``)."


def _limited_loader(where: str) -> type:
    """A ``yaml.SafeLoader`` subclass that bounds what a document may cost."""
    import yaml

    class LimitedLoader(yaml.SafeLoader):
        """Counts nesting depth, alias uses and expanded size while composing.

        Also reads ``1e30`` and ``1.0e200`` as floats (YAML 1.2; PyYAML's YAML
        1.1 wants a dot and a signed exponent, else a string).
        """

        def __init__(self, stream: Any) -> None:
            super().__init__(stream)
            self._depth = 0
            self._aliases = 0
            self._sizes: dict[int, int] = {}

        def compose_node(self, parent: Any, index: Any) -> Any:
            if self.check_event(yaml.AliasEvent):
                self._aliases += 1
                if self._aliases > MAX_YAML_ALIASES:
                    line = self.peek_event().start_mark.line + 1
                    raise ConfigError(
                        f"{where}: more than {MAX_YAML_ALIASES:,} alias uses "
                        f"(*name), line {line}; the cap is {MAX_YAML_ALIASES:,}"
                    )
                return super().compose_node(parent, index)
            self._depth += 1
            if self._depth > MAX_NESTING:
                line = self.peek_event().start_mark.line + 1
                raise ConfigError(
                    f"{where}: nests over {MAX_NESTING} levels deep (line {line}); "
                    f"the cap is {MAX_NESTING}"
                )
            try:
                node = super().compose_node(parent, index)
            finally:
                self._depth -= 1
            self._sizes[id(node)] = self._size(node)
            return node

        def _size(self, node: Any) -> int:
            """Values ``node`` expands to, every alias counted at each use."""
            if isinstance(node, yaml.MappingNode):
                children = [n for pair in node.value for n in pair]
                _no_duplicate_keys(node, where)
            elif isinstance(node, yaml.SequenceNode):
                children = node.value
            else:
                return 1
            total = 1
            for child in children:
                size = self._sizes.get(id(child))
                if size is None:  # an alias of a node still being composed
                    raise ConfigError(
                        f"{where}: a recursive alias (line "
                        f"{child.start_mark.line + 1}): a value cannot contain itself"
                    )
                total += size
            if total > MAX_YAML_NODES:
                raise ConfigError(
                    f"{where}: expands to over {MAX_YAML_NODES:,} values (aliases "
                    f"repeat what they name), line {node.start_mark.line + 1}; the "
                    f"cap is {MAX_YAML_NODES:,}"
                )
            return total

    LimitedLoader.add_implicit_resolver(
        "tag:yaml.org,2002:float", _FLOAT_12, list("-+0123456789.")
    )
    return LimitedLoader


def _no_duplicate_keys(node: Any, where: str) -> None:
    """``ConfigError`` if a mapping node gives one scalar key twice (YAML keeps
    the last silently; a config with ``n_buyers`` twice is a mistake)."""
    import yaml

    seen: set[tuple[str, str]] = set()
    for key, _ in node.value:
        if not isinstance(key, yaml.ScalarNode) or key.tag.endswith(":merge"):
            continue
        ident = (key.tag, key.value)
        if ident in seen:
            raise ConfigError(
                f"{where}: key {key.value!r} appears twice in one mapping "
                f"(line {key.start_mark.line + 1})"
            )
        seen.add(ident)


def validate_experiment(c: ExperimentConfig) -> None:
    """``ConfigError`` naming the first bad option of a whole experiment.

    Checks ``seed``, ``episodes`` and ``warmup`` against their caps, the env
    (:func:`validate_env`), every key of ``agents`` (a role the market has, or
    one of its agents), the ``train`` and ``solve`` sections' ranges
    (:func:`validate_train`, :func:`validate_solve`) and ``plugins`` (names
    only; :func:`load_config` imports them). The agent kinds are checked where
    agents are built, the training stack's options in ``training.train_config``.
    """
    check_int(c.seed, "seed", 0, MAX_SEED)
    check_int(c.episodes, "episodes", 1, MAX_EPISODES)
    check_int(c.warmup, "warmup", 0, MAX_WARMUP)
    validate_env(c.env)
    _check_agent_keys(c)
    validate_train(c.train)
    draws = c.train.opponent_draws
    if draws > 1 and (why := one_draw_only(c.env)):
        raise ConfigError(f"train.opponent_draws {draws} {why}")
    validate_solve(c.solve)
    check_module_names(c.plugins, "plugins")


def one_draw_only(env: EnvConfig) -> str | None:
    """Why a learner in ``env`` cannot be scored against several opponent draws
    (``train.opponent_draws``, ``exploit --opponent-draws``), or ``None``."""
    if env.rounds != 1:
        return (
            f"needs a single-round market (env.rounds: 1), got rounds {env.rounds}: "
            "over several rounds the draws' states would part"
        )
    if common := env.valuation_params.get("common"):
        return (
            f"needs independent values, got valuation_params.common {common!r}: "
            "the opponents' values depend on the learner's, so fresh opponent "
            "draws would not be its opponents"
        )
    return None


def _check_agent_keys(c: ExperimentConfig) -> None:
    """Every key of ``agents`` is a role of this market or one of its agents."""
    if not isinstance(c.agents, dict):
        raise ConfigError(f"agents must be a mapping, got {show(c.agents)}")
    two_sided = mechanisms.family(c.env.mechanism) == "two_sided"
    n_sellers = mechanisms.n_sellers(c.env.mechanism, c.env.n_buyers, c.env.n_sellers)
    roles = ["buyer", "seller"] if two_sided else ["buyer"]
    if "seller" in c.agents and not two_sided:
        fam = mechanisms.family(c.env.mechanism)
        raise ConfigError(
            f"agents.seller: the {fam} mechanism "
            f"{mechanisms.name_of(c.env.mechanism)!r} has no sellers (the publisher "
            "is the market); roles here: buyer"
        )
    names = [f"buyer_{i}" for i in range(c.env.n_buyers)]
    names += [f"seller_{j}" for j in range(n_sellers)]
    unknown = sorted(set(c.agents) - {*roles, *names})
    if unknown:
        shown = names if len(names) <= 6 else [*names[:2], "...", *names[-2:]]
        raise ConfigError(
            f"agents: unknown key(s) {', '.join(map(repr, unknown))}; a key is a "
            f"role ({', '.join(roles)}) or an agent of the market ({', '.join(shown)})"
        )


def validate_train(tc: TrainConfig) -> None:
    """``ConfigError`` naming the first ``train`` option out of range.

    The static checks only: sizes against their caps (``threads``,
    ``num_envs``, ``total_timesteps``, ...), rates, ``net_arch`` and the device;
    names that need the training stack (algorithm, backend, ``algo_params``)
    are checked by ``training.train_config.check_train_config``.
    """
    for name, (low, high) in _TRAIN_INTS.items():
        check_int(getattr(tc, name), f"train.{name}", low, high)
    if tc.lr_decay_steps is not None:
        check_int(tc.lr_decay_steps, "train.lr_decay_steps", 1, 10**12)
        if tc.anneal_lr:
            raise ConfigError(
                "train.anneal_lr (linear) and train.lr_decay_steps (harmonic) are "
                "two learning-rate decays; set one of them"
            )
    rollout = tc.n_steps * tc.num_envs
    if tc.num_envs * tc.opponent_draws > MAX_MARKETS:
        raise ConfigError(
            f"train.num_envs x train.opponent_draws = "
            f"{tc.num_envs * tc.opponent_draws:,} markets per step, over the cap of "
            f"{MAX_MARKETS:,}; lower one of them"
        )
    if rollout > MAX_ROLLOUT:
        raise ConfigError(
            f"train.n_steps x train.num_envs = {rollout:,} experience rows per "
            f"rollout, over the cap of {MAX_ROLLOUT:,}; lower one of them"
        )
    check_real(tc.gamma, "train.gamma", 0.0, 1.0)
    check_real(tc.learning_rate, "train.learning_rate", 0.0, above=True)
    arch = tc.net_arch
    if (
        not isinstance(arch, list | tuple)
        or not 1 <= len(arch) <= MAX_NESTING
        or not all(is_int(n) and 1 <= n <= MAX_LAYER for n in arch)
    ):
        raise ConfigError(
            f"train.net_arch must be a list of 1 to {MAX_NESTING} layer sizes in "
            f"[1, {MAX_LAYER:,}], got {show(arch)}"
        )
    weights = sum(a * b for a, b in itertools.pairwise(arch))
    if weights > MAX_WEIGHTS:
        raise ConfigError(
            f"train.net_arch {show(arch)} has {weights:,} weights between hidden "
            f"layers, over the cap of {MAX_WEIGHTS:,}"
        )
    check_device(tc.device, "train.device")
    if not isinstance(tc.algo_params, dict):
        raise ConfigError(
            f"train.algo_params must be a mapping, got {show(tc.algo_params)}"
        )


def validate_solve(s: SolveConfig) -> None:
    """``ConfigError`` naming the first ``solve`` option out of range (grid sizes,
    iterations and samples against their caps; finite rates). The solver checks
    the rest, and whether a grid fits in memory."""
    for name, (low, high) in _SOLVE_INTS.items():
        if hasattr(s, name) and not (
            name in SOLVE_MARKET_DEFAULTS and getattr(s, name) is None
        ):
            check_int(getattr(s, name), f"solve.{name}", low, high)
    for f in dataclasses.fields(s):
        value = getattr(s, f.name)
        if f.type in (float, "float") and not is_real(value):
            raise ConfigError(
                f"solve.{f.name} must be a finite number, got {show(value)}"
            )
    _validate_solve_formats(s)


def _validate_solve_prior(s: SolveConfig) -> None:
    """``ConfigError`` naming a bad ``solve.prior`` or ``solve.roi_target``."""
    p = getattr(s, "prior", SolvePrior())
    if not isinstance(p, SolvePrior) or p.kind not in PRIOR_KINDS:
        raise ConfigError(
            f"solve.prior.kind must be one of {', '.join(PRIOR_KINDS)}, got "
            f"{show(getattr(p, 'kind', p))}"
        )
    if not (is_real(p.common) and 0.0 <= p.common < 1.0):
        raise ConfigError(
            f"solve.prior.common must be a number in [0, 1), got {show(p.common)}"
        )
    if p.draws is not None:
        check_int(p.draws, "solve.prior.draws", 16, 1_000_000)
    f = getattr(s, "scale_floor", 1e-9)
    if not (is_real(f) and 0.0 < f < 1.0):
        raise ConfigError(
            f"solve.scale_floor must be a number in (0, 1), got {show(f)}"
        )
    t = getattr(s, "roi_target", None)
    if t is not None and not (is_real(t) and 0.0 <= t <= 100.0):
        raise ConfigError(
            f"solve.roi_target must be null or a number in [0, 100], got {show(t)}"
        )


def _validate_solve_formats(s: SolveConfig) -> None:
    """``ConfigError`` naming a bad ``solve.utility`` or ``solve.classes`` entry
    (whether the classes fit the market is checked by the solver)."""
    _validate_solve_prior(s)
    u = getattr(s, "utility", SolveUtility())
    if not isinstance(u, SolveUtility) or u.kind not in UTILITY_KINDS:
        kind = getattr(u, "kind", u)
        raise ConfigError(
            f"solve.utility.kind must be one of {', '.join(UTILITY_KINDS)}, "
            f"got {show(kind)}"
        )
    if not (is_real(u.rho) and 0.0 < u.rho <= 1.0) or (
        u.kind == "linear" and u.rho != 1.0
    ):
        raise ConfigError(
            "solve.utility.rho must be a number in (0, 1] (and 1 with kind: "
            f"linear), got {show(u.rho)}"
        )
    classes = getattr(s, "classes", [])
    if not isinstance(classes, list):
        raise ConfigError(f"solve.classes must be a list, got {show(classes)}")
    names: set[str] = set()
    for i, c in enumerate(classes):
        where = f"solve.classes[{i}]"
        if not isinstance(c, SolveClass):
            raise ConfigError(f"{where} must be a mapping (agents, ...), got {show(c)}")
        if not c.agents or not all(isinstance(a, str) for a in c.agents):
            raise ConfigError(
                f"{where}.agents must be a non-empty list of buyer names, got "
                f"{show(c.agents)}"
            )
        name = c.name or f"class_{i}"
        if not (isinstance(name, str) and name.isidentifier()) or name in names:
            raise ConfigError(
                f"{where}.name must be a new identifier, got {show(c.name)}"
            )
        names.add(name)
        for key in ("value_low", "value_high"):
            v = getattr(c, key)
            if v is not None and not is_real(v):
                raise ConfigError(f"{where}.{key} must be a finite number or null")
        if c.value_low is not None and c.value_high is not None:
            if not c.value_low < c.value_high:
                raise ConfigError(
                    f"{where}: value_low must be < value_high, got "
                    f"{show(c.value_low)} and {show(c.value_high)}"
                )


def game_in_sync(env: Any, solve: Any) -> tuple[Any, Any]:
    """``env`` and ``solve`` agreeing on the game: its utility, value ranges
    and the affiliation of the values.

    The rewards read ``env.utility`` and ``env.value_ranges``, the solver
    ``solve.utility`` and ``solve.classes``; a config sets either side and the
    other follows (classes give their buyers' ranges; ranges alone give one
    class per distinct range, ``class_0``, ... in buyer order). So do the
    uniform source's ``valuation_params.common`` and ``solve.prior: {kind:
    common_noise, common}``. Both set and different is a ``ConfigError``.
    Anything not yet well typed is left as it is for the validators to name.
    """
    if not (isinstance(env, EnvConfig) and isinstance(solve, SolveConfig)):
        return env, solve
    env, solve = _prior_in_sync(env, solve)
    eu, su = env.utility, solve.utility
    if isinstance(eu, SolveUtility) and isinstance(su, SolveUtility) and eu != su:
        if eu == SolveUtility():
            env = dataclasses.replace(env, utility=su)
        elif su == SolveUtility():
            solve = dataclasses.replace(solve, utility=eu)
        else:
            raise ConfigError(
                f"env.utility ({eu.kind}, rho {eu.rho:g}) and solve.utility "
                f"({su.kind}, rho {su.rho:g}) differ; set one of them"
            )
    ranges = _class_ranges(env, solve.classes)
    if ranges is None or not isinstance(env.value_ranges, dict):
        return env, solve
    if ranges and not env.value_ranges:
        env = dataclasses.replace(env, value_ranges=ranges)
    elif ranges and ranges != env.value_ranges:
        raise ConfigError(
            f"env.value_ranges {show(env.value_ranges)} differ from the ranges of "
            f"solve.classes {show(ranges)}; set one of them"
        )
    elif not ranges and env.value_ranges and (classes := _classes_of(env)):
        solve = dataclasses.replace(solve, classes=classes)
    return env, solve


def _prior_in_sync(env: EnvConfig, solve: SolveConfig) -> tuple[Any, Any]:
    """The uniform source's ``common`` and ``solve.prior``'s, one setting: the
    market the env draws is the one the solver integrates over."""
    params, prior = env.valuation_params, solve.prior
    if (
        env.valuation != "uniform"
        or not isinstance(params, dict)
        or not isinstance(prior, SolvePrior)
        or not is_real(prior.common)
        or not is_real(ours := params.get("common", 0.0))
    ):
        return env, solve
    if prior.kind == "common_noise" and not ours and prior.common:
        params = {**params, "common": float(prior.common)}
        return dataclasses.replace(env, valuation_params=params), solve
    if prior.kind == "common_noise" and ours and ours != prior.common:
        raise ConfigError(
            f"env.valuation_params.common ({ours:g}) and solve.prior.common "
            f"({prior.common:g}) differ; set one of them"
        )
    if prior.kind == "independent" and ours:
        prior = dataclasses.replace(prior, kind="common_noise", common=float(ours))
        return env, dataclasses.replace(solve, prior=prior)
    return env, solve


def _class_ranges(env: EnvConfig, classes: Any) -> dict[str, list[float]] | None:
    """Each classed buyer's ``[low, high]`` (``None`` if ``classes`` is malformed)."""
    if not isinstance(classes, list):
        return None
    out: dict[str, list[float]] = {}
    for c in classes:
        if not (
            isinstance(c, SolveClass)
            and isinstance(c.agents, list)
            and all(isinstance(a, str) for a in c.agents)
            and all(v is None or is_real(v) for v in (c.value_low, c.value_high))
        ):
            return None
        low = env.value_low if c.value_low is None else c.value_low
        high = env.value_high if c.value_high is None else c.value_high
        for a in c.agents:
            out[a] = [float(low), float(high)]
    return out


def _classes_of(env: EnvConfig) -> list[SolveClass]:
    """One class per distinct value range of ``env``'s buyers, in buyer order."""
    groups: dict[tuple[float, ...], list[str]] = {}
    for i in range(env.n_buyers if is_int(env.n_buyers) else 0):
        name = f"buyer_{i}"
        pair = env.value_ranges.get(name, [env.value_low, env.value_high])
        if not (isinstance(pair, list) and len(pair) == 2 and all(map(is_real, pair))):
            return []  # the validator names it
        groups.setdefault(tuple(float(x) for x in pair), []).append(name)
    return [
        SolveClass(agents=names, name=f"class_{i}", value_low=low, value_high=high)
        for i, ((low, high), names) in enumerate(groups.items())
    ]


def make_config(config: EnvConfig | None = None, **options: Any) -> EnvConfig:
    """Merge ``config`` and keyword ``options`` into a validated :class:`EnvConfig`.

    Raises:
        ConfigError: an unknown option (the message lists the known ones) or a bad
            value (the message names it and what was expected).
    """
    reject_unknown(EnvConfig, options, "environment option(s)")
    if config is None:
        config = EnvConfig()
    elif not isinstance(config, EnvConfig):
        raise ConfigError(f"config must be an EnvConfig, got {type(config).__name__}")
    config = dataclasses.replace(config, **options)
    validate_env(config)
    return config


def validate_env(c: EnvConfig) -> None:
    """``ConfigError`` naming the first bad environment option and what it expects.

    Sizes are checked against their caps (:data:`MAX_AGENTS`, :data:`MAX_SLOTS`,
    :data:`MAX_ROUNDS`, :data:`MAX_HISTORY`, :data:`MAX_CELLS`), prices against
    :data:`MAX_PRICE`, and ``mechanism_params`` against the mechanism's own
    parameters (:func:`_check_mechanism_params`).
    """

    def bad(name: str, expected: str) -> ConfigError:
        return ConfigError(f"{name} must be {expected}, got {show(getattr(c, name))}")

    if isinstance(c.mechanism, Mechanism):
        if c.mechanism_params:
            raise ConfigError(
                "mechanism_params must be empty when mechanism is an instance "
                f"(its parameters are set), got {show(c.mechanism_params)}"
            )
    elif not isinstance(c.mechanism, str) or c.mechanism not in mechanisms.names():
        raise ConfigError(
            f"unknown mechanism {show(c.mechanism)}; known: "
            f"{', '.join(mechanisms.names())} (a plug-in's mechanism: name its "
            "module under plugins, or --plugin MODULE)"
        )
    check_int(c.n_buyers, "n_buyers", 1, MAX_AGENTS)
    check_int(c.n_sellers, "n_sellers", 0, MAX_AGENTS)
    check_int(c.n_slots, "n_slots", 1, MAX_SLOTS)
    check_int(c.rounds, "rounds", 1, MAX_ROUNDS)
    check_int(c.history, "history", 0, MAX_HISTORY)
    fam = mechanisms.family(c.mechanism)
    check_feedback(c.feedback, fam, mechanisms.name_of(c.mechanism))
    if c.n_sellers and fam != "two_sided":
        raise ConfigError(
            f"n_sellers must be 0 for the {fam} mechanism "
            f"{mechanisms.name_of(c.mechanism)!r} (the publisher is the market), "
            f"got {c.n_sellers}"
        )
    if fam == "two_sided" and c.n_slots != 1:
        raise ConfigError(
            f"n_slots must be 1 for the two-sided mechanism "
            f"{mechanisms.name_of(c.mechanism)!r} (one unit per trader), "
            f"got {c.n_slots}"
        )
    _check_cells(c, fam)
    if not isinstance(c.valuation, str) or c.valuation not in source_names():
        raise bad("valuation", f"one of {', '.join(source_names())}")
    if c.redraw not in REDRAW:
        raise bad("redraw", f"one of {', '.join(REDRAW)}")
    if c.action not in ACTION_MODES:
        raise bad("action", f"one of {', '.join(ACTION_MODES)}")
    for name in ("value_low", "value_high", "cost_low", "cost_high"):
        v = getattr(c, name)
        if is_real(v) and abs(v) > MAX_PRICE:
            raise bad(name, f"at most {MAX_PRICE:g} (the cap on prices)")
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
            raise ConfigError(
                f"{lo}, {hi} must satisfy 0 <= {lo} {rel} {hi}{also}, got "
                f"{show(a)}, {show(b)}"
            )
    if c.budget is not None:
        check_real(c.budget, "budget", 0.0, MAX_PRICE)
    if c.max_bid is not None:
        check_real(c.max_bid, "max_bid", 0.0, MAX_PRICE, above=True)
    for name in ("mechanism_params", "valuation_params"):
        if not isinstance(getattr(c, name), dict):
            raise bad(name, "a mapping of keyword parameters")
    if not isinstance(c.mechanism, Mechanism):
        _check_mechanism_params(c.mechanism, c.mechanism_params)
    check_real(c.exposure_floor, "exposure_floor", 0.0, 1.0)
    if c.exposure_floor:  # attn_env.mechanisms.exposure_floor: a free lottery
        if fam == "two_sided":
            raise bad("exposure_floor", "0 in a two-sided market (no slots)")
        try:
            check_floor(c.exposure_floor, c.n_buyers)
        except ValueError as err:
            raise ConfigError(str(err)) from None
    _check_valuation_params(c.valuation, c.valuation_params)
    if c.valuation_params.get("slot_weights") is not None:  # uniform source
        from attn_env.valuations.positions import PositionModel

        PositionModel.parse(c.valuation_params["slot_weights"]).weights(c.n_slots)
    if "common" in c.valuation_params:  # uniform source: its own checks
        from attn_env.valuations.uniform import UniformSource

        UniformSource(c.value_dist, common=c.valuation_params["common"])
    _check_utility(c.utility, "utility")
    _check_value_ranges(c)


def _check_utility(u: Any, where: str) -> None:
    """``ConfigError`` unless ``u`` is a linear or CRRA utility with rho in (0, 1]."""
    if not isinstance(u, SolveUtility) or u.kind not in UTILITY_KINDS:
        raise ConfigError(
            f"{where}.kind must be one of {', '.join(UTILITY_KINDS)}, got "
            f"{show(getattr(u, 'kind', u))}"
        )
    if not (is_real(u.rho) and 0.0 < u.rho <= 1.0) or (
        u.kind == "linear" and u.rho != 1.0
    ):
        raise ConfigError(
            f"{where}.rho must be a number in (0, 1] (and 1 with kind: linear), "
            f"got {show(u.rho)}"
        )


def _check_value_ranges(c: EnvConfig) -> None:
    """``value_ranges`` names buyers of the market, each ``[low, high]`` with
    ``0 <= low < high``, and needs the uniform source (its theta is the value)."""
    ranges = c.value_ranges
    if not isinstance(ranges, dict):
        raise ConfigError(f"value_ranges must be a mapping, got {show(ranges)}")
    if ranges and c.valuation != "uniform":
        raise ConfigError(
            "value_ranges needs valuation: uniform (per-buyer ranges of theta), got "
            f"valuation {show(c.valuation)}"
        )
    if ranges and not c.value_low < c.value_high:
        raise ConfigError(
            "value_ranges needs value_low < value_high (each buyer's range is the "
            f"market's mapped onto its own), got {show(c.value_low)}, "
            f"{show(c.value_high)}"
        )
    buyers = [f"buyer_{i}" for i in range(c.n_buyers)]
    for name, pair in ranges.items():
        if name not in buyers:
            raise ConfigError(
                f"value_ranges: {show(name)} is not a buyer of this market "
                f"(buyer_0..buyer_{c.n_buyers - 1})"
            )
        if not (
            isinstance(pair, list)
            and len(pair) == 2
            and all(is_real(x) and 0.0 <= x <= MAX_PRICE for x in pair)
            and pair[0] < pair[1]
        ):
            raise ConfigError(
                f"value_ranges.{name} must be [low, high] with 0 <= low < high <= "
                f"{MAX_PRICE:g}, got {show(pair)}"
            )


def _check_cells(c: EnvConfig, fam: str) -> None:
    """Numbers one market holds per step stay under :data:`MAX_CELLS`."""
    n_agents = c.n_buyers + mechanisms.n_sellers(c.mechanism, c.n_buyers, c.n_sellers)
    width = OBS_BASE_DIM + c.history + feedback_dim(c.feedback, c.history)
    if n_agents * width > MAX_CELLS:
        raise ConfigError(
            f"{n_agents:,} agents x {width:,} observation entries (history "
            f"{c.history:,}) = {n_agents * width:,} numbers per market, over the cap "
            f"of {MAX_CELLS:,}; lower n_buyers, n_sellers or history"
        )
    if c.n_buyers * c.n_slots > MAX_CELLS:
        raise ConfigError(
            f"n_buyers x n_slots = {c.n_buyers * c.n_slots:,} values per market, "
            f"over the cap of {MAX_CELLS:,}; lower n_buyers or n_slots"
        )


def mechanism_parameters(name: str) -> dict[str, Any]:
    """The keyword parameters mechanism ``name`` accepts, with their defaults.

    ``reserve`` and ``seed`` (every mechanism's), the class's declared
    ``params``, and any named keyword of its own ``__init__``.
    """
    cls = mechanisms.mechanism_class(name)
    accepted: dict[str, Any] = {"reserve": 0.0, "seed": None}
    accepted.update(getattr(cls, "params", {}) or {})
    for p in inspect.signature(cls.__init__).parameters.values():
        if p.name != "self" and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL):
            accepted.setdefault(
                p.name, None if p.default is inspect.Parameter.empty else p.default
            )
    return accepted


def _check_mechanism_params(name: str, params: dict[str, Any]) -> None:
    """Keys of ``mechanism_params`` are the mechanism's parameters, and values of
    the type of their defaults, bounded; then the mechanism is built once, so its
    own checks (``k`` in [0, 1], ...) answer at load time, in one line."""
    accepted = mechanism_parameters(name)
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        raise ConfigError(
            f"mechanism_params: unknown parameter(s) {', '.join(map(repr, unknown))} "
            f"for the {name!r} mechanism; known: {', '.join(accepted)}"
        )
    for key, value in params.items():
        where = f"mechanism_params.{key}"
        default = accepted[key]
        if key == "reserve":
            check_real(value, where, 0.0, MAX_PRICE)
        elif key == "seed":
            if value is not None:
                check_int(value, where, 0, MAX_SEED)
        elif key == "n_slots":
            check_int(value, where, 1, MAX_SLOTS)
        elif isinstance(default, bool):
            if not isinstance(value, bool):
                raise ConfigError(f"{where} must be true or false, got {show(value)}")
        elif isinstance(default, int):
            check_int(value, where, -MAX_PARAM_INT, MAX_PARAM_INT)
        elif isinstance(default, float):
            check_real(value, where, -MAX_PRICE, MAX_PRICE)
    try:
        mechanisms.make(name, **params)
    except (TypeError, ValueError) as err:
        if isinstance(err, ConfigError):
            raise
        text = " ".join(str(err).split())
        raise ConfigError(f"mechanism_params of {name!r}: {text}") from None


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
        raise ConfigError(
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
        raise ConfigError(
            f"valuation_params: unknown option(s) {', '.join(map(repr, unknown))} "
            f"for the {name!r} source; known: {', '.join([*known, 'fake_traffic'])}"
        )

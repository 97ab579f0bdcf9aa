"""The typed config of the ``search_day`` scenario (one dataclass per YAML block).

Read with :func:`attn_env.config.from_dict` (unknown keys are refused by name)
and range-checked by :func:`validate`, so every constructor downstream gets
numbers it can trust. ``docs/search_day.md`` documents each key.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from attn_env.checks import check_int, check_one_of, check_real
from attn_env.config import from_dict, read_config_yaml
from attn_env.errors import ConfigError

__all__ = [
    "BIDDER_KINDS",
    "CLICK_MODELS",
    "PUBLISH",
    "AdvertiserConfig",
    "AuctionConfig",
    "EconomicsConfig",
    "SearchDayConfig",
    "SearchTrainConfig",
    "TrafficConfig",
    "load",
    "validate",
]

CLICK_MODELS = ("attention", "pbm", "cascade")
"Position effects: measured attention, a position-based model, the cascade."
BIDDER_KINDS = ("truthful", "pacing", "pid", "onlinelp", "policy")
"Auto-bidders a config may seat (``policy``: a trained run, ``bidders_policy``)."
PUBLISH = ("none", "price", "landscape")
"What the platform publishes after each period (see docs/search_day.md)."

MAX_IMPRESSIONS = 5_000_000
MAX_ADVERTISERS = 1_000
MAX_PERIODS = 1_000
MAX_DAYS = 10_000


@dataclass
class TrafficConfig:
    """A day of queries: how many, how popular, when."""

    impressions: int = 500_000
    "Impressions (queries) in one day; each is one auction."
    periods: int = 48
    "Periods T of the day; bidders act once per period."
    zipf: float = 1.0
    "Zipf exponent of query popularity (a seeded rank order of the queries)."
    diurnal_amplitude: float = 0.6
    "Traffic swing: the period share is proportional to 1 + a * cos(2 pi (t/T - peak))."
    diurnal_peak: float = 0.6
    "Time of the traffic peak, as a fraction of the day."


@dataclass
class AdvertiserConfig:
    """How advertisers are drawn from the seed (or read from ``data``)."""

    n: int = 48
    "Advertisers N (one agent each)."
    second_vertical: float = 0.5
    "Probability that an advertiser also sells in a second vertical."
    value_median: float = 50.0
    "Median value per conversion (lognormal)."
    value_sigma: float = 0.5
    "Log-scale spread of the value per conversion."
    target_cpa: list[float] = field(default_factory=lambda: [0.6, 1.0])
    "Target CPA as a fraction of the value per conversion, uniform on this range."
    budget_conversions: list[float] = field(default_factory=lambda: [30.0, 120.0])
    "Daily budget in target conversions (budget = target CPA x this, uniform on the"
    " range), for a day of 500,000 impressions; scaled with ``traffic.impressions``."


@dataclass
class EconomicsConfig:
    """From attention to clicks and conversions."""

    ctr_top: float = 0.05
    "Click probability of a fully relevant ad (r = 1) in the top slot."
    cvr: float = 0.1
    "Conversion probability of a click on a fully relevant ad: pConv = cvr * r."
    click_model: str = "attention"
    "Position effect: attention (measured), pbm (``pbm`` list) or cascade."
    pbm: list[float] = field(default_factory=lambda: [1.0, 0.62, 0.45, 0.35])
    "Examination probability per slot for ``click_model: pbm`` (descending)."
    relevance: str = "logistic"
    "Map of the bank's raw relevance into [0, 1] (logistic or max)."


@dataclass
class AuctionConfig:
    """The auction run on every impression."""

    mechanism: str = "gsp"
    "A one-sided mechanism: gsp, vcg, first_price or a registered one."
    reserve: float = 0.05
    "Reserve price per click (> 0: a bid of 0 means leaving the auction)."
    slots: int = 4
    "Ad slots K on a page."
    params: dict[str, Any] = field(default_factory=dict)
    "Other keyword parameters of the mechanism."


@dataclass
class SearchTrainConfig:
    """Shared-policy PPO for every advertiser at once (``attn-market train``)."""

    timesteps: int = 1_000_000
    "Advertiser-periods of experience (each day gives advertisers x periods)."
    parallel_days: int = 2
    "Days stepped together in one rollout."
    learning_rate: float = 3e-4
    n_epochs: int = 5
    batch_size: int = 1152
    gamma: float = 0.99
    ent_coef: float = 0.0
    net_arch: list[int] = field(default_factory=lambda: [64, 64])
    max_minutes: float | None = None
    "Stop after this much training time (checked at each evaluation), if set."
    eval_every: int = 200_000
    "Advertiser-periods between evaluations on held-out days (the learning curve)."
    eval_days: int = 2
    "Validation days per evaluation (traffic seeds from 2,000,000 on; ``evaluate``"
    " tests on other days, from 1,000,000 on)."
    keep: str = "best"
    "Which policy the run keeps: best (highest validation score) or last."
    seed: int = 0
    device: str = "auto"
    backend: str = "sb3"
    "Trainer: sb3 (stable-baselines3, in this process) or rllib (Ray RLlib PPO)."


@dataclass
class SearchDayConfig:
    """A day (or several) of sponsored search with auto-bidding advertisers."""

    scenario: str = "search_day"
    "Names this scenario (the registry key)."
    seed: int = 0
    "Seed of advertisers, traffic and tie-breaks; day d uses seed + d."
    days: int = 1
    "Days that ``simulate`` plays (each a fresh draw of traffic)."
    traffic: TrafficConfig = field(default_factory=TrafficConfig)
    advertisers: AdvertiserConfig = field(default_factory=AdvertiserConfig)
    economics: EconomicsConfig = field(default_factory=EconomicsConfig)
    auction: AuctionConfig = field(default_factory=AuctionConfig)
    bidders: dict[str, float] = field(default_factory=lambda: {"pid": 1.0})
    "Share of advertisers per auto-bidder kind (seated in a seeded order)."
    bidders_policy: str | None = None
    "Run folder of a trained policy, for bidders of kind ``policy``."
    seating: str = "fixed"
    "fixed: each advertiser keeps its kind all days; rotate: a new seeded seating"
    " every day, so every advertiser plays every kind (a league)."
    hindsight: bool = False
    "Also compute each advertiser's best fixed multiplier and score bound."
    publish: str = "none"
    "What the platform publishes after each period: none, price or landscape."
    lambda_max: float = 4.0
    "Largest bid multiplier an agent may choose."
    data: str | None = None
    "A folder with queries.jsonl, ads.jsonl and advertisers.yaml (default: shipped"
    " traffic and seeded advertisers)."
    train: SearchTrainConfig = field(default_factory=SearchTrainConfig)
    "Training options (``train`` command): see docs/search_day.md."


def validate(c: SearchDayConfig, where: str = "config") -> SearchDayConfig:
    """Check every range (one line naming the key); return ``c``."""
    if c.scenario != "search_day":
        raise ConfigError(f"{where}.scenario must be 'search_day', got {c.scenario!r}")
    check_int(c.seed, f"{where}.seed", 0, 2**32 - 1)
    check_int(c.days, f"{where}.days", 1, MAX_DAYS)
    t = c.traffic
    check_int(t.impressions, f"{where}.traffic.impressions", 1, MAX_IMPRESSIONS)
    check_int(t.periods, f"{where}.traffic.periods", 1, MAX_PERIODS)
    check_real(t.zipf, f"{where}.traffic.zipf", 0.0, 5.0)
    check_real(t.diurnal_amplitude, f"{where}.traffic.diurnal_amplitude", 0.0, 0.99)
    check_real(t.diurnal_peak, f"{where}.traffic.diurnal_peak", 0.0, 1.0)
    a = c.advertisers
    check_int(a.n, f"{where}.advertisers.n", 1, MAX_ADVERTISERS)
    check_real(a.second_vertical, f"{where}.advertisers.second_vertical", 0.0, 1.0)
    check_real(
        a.value_median, f"{where}.advertisers.value_median", 0.0, 1e6, above=True
    )
    check_real(a.value_sigma, f"{where}.advertisers.value_sigma", 0.0, 3.0)
    _range_pair(a.target_cpa, f"{where}.advertisers.target_cpa", 0.0, 10.0)
    _range_pair(
        a.budget_conversions, f"{where}.advertisers.budget_conversions", 0.0, 1e6
    )
    e = c.economics
    check_real(e.ctr_top, f"{where}.economics.ctr_top", 0.0, 1.0, above=True)
    check_real(e.cvr, f"{where}.economics.cvr", 0.0, 1.0, above=True)
    check_one_of(e.click_model, CLICK_MODELS, f"{where}.economics.click_model")
    check_one_of(e.relevance, ("logistic", "max"), f"{where}.economics.relevance")
    for i, p in enumerate(e.pbm):
        check_real(p, f"{where}.economics.pbm[{i}]", 0.0, 1.0)
    if any(x < y for x, y in zip(e.pbm, e.pbm[1:], strict=False)):
        raise ConfigError(f"{where}.economics.pbm must be descending, got {e.pbm}")
    u = c.auction
    check_int(u.slots, f"{where}.auction.slots", 1, 16)
    check_real(u.reserve, f"{where}.auction.reserve", 0.0, 1e6, above=True)
    if e.click_model == "pbm" and len(e.pbm) < u.slots:
        raise ConfigError(
            f"{where}.economics.pbm has {len(e.pbm)} entries but auction.slots is "
            f"{u.slots}; give one examination probability per slot"
        )
    if not c.bidders:
        raise ConfigError(f"{where}.bidders: name at least one kind ({BIDDER_KINDS})")
    for kind, share in c.bidders.items():
        check_one_of(kind, BIDDER_KINDS, f"{where}.bidders key")
        check_real(share, f"{where}.bidders.{kind}", 0.0, 1.0)
    if sum(c.bidders.values()) <= 0:
        raise ConfigError(f"{where}.bidders: the shares sum to 0")
    if "policy" in c.bidders and c.bidders_policy is None:
        raise ConfigError(
            f"{where}.bidders has kind 'policy' but bidders_policy names no run folder"
        )
    check_one_of(c.publish, PUBLISH, f"{where}.publish")
    check_one_of(c.seating, ("fixed", "rotate"), f"{where}.seating")
    tr = c.train
    check_int(tr.timesteps, f"{where}.train.timesteps", 1, 10**10)
    check_int(tr.parallel_days, f"{where}.train.parallel_days", 1, 256)
    check_real(tr.learning_rate, f"{where}.train.learning_rate", 0.0, 1.0, above=True)
    check_int(tr.n_epochs, f"{where}.train.n_epochs", 1, 100)
    check_int(tr.batch_size, f"{where}.train.batch_size", 2, 10**6)
    check_real(tr.gamma, f"{where}.train.gamma", 0.0, 1.0)
    check_real(tr.ent_coef, f"{where}.train.ent_coef", 0.0, 1.0)
    for i, w in enumerate(tr.net_arch):
        check_int(w, f"{where}.train.net_arch[{i}]", 1, 4096)
    if tr.max_minutes is not None:
        check_real(tr.max_minutes, f"{where}.train.max_minutes", 0.0, 1e5, above=True)
    check_int(tr.eval_every, f"{where}.train.eval_every", 1, 10**10)
    check_int(tr.eval_days, f"{where}.train.eval_days", 1, 1000)
    check_one_of(tr.keep, ("best", "last"), f"{where}.train.keep")
    check_int(tr.seed, f"{where}.train.seed", 0, 2**32 - 1)
    check_one_of(tr.device, ("auto", "cpu", "cuda"), f"{where}.train.device")
    check_one_of(tr.backend, ("sb3", "rllib"), f"{where}.train.backend")
    check_real(c.lambda_max, f"{where}.lambda_max", 0.0, 100.0, above=True)
    return c


def _range_pair(pair: list[float], name: str, low: float, high: float) -> None:
    if len(pair) != 2 or not (low <= pair[0] <= pair[1] <= high) or pair[1] <= 0:
        raise ConfigError(
            f"{name} must be [low, high] with {low:g} <= low <= high <= {high:g} and "
            f"high > 0, got {pair}"
        )


def from_data(data: Any, where: str = "config") -> SearchDayConfig:
    """A checked config from plain data (a parsed YAML mapping)."""
    return validate(from_dict(SearchDayConfig, data, where), where)


def load(path: str | Path) -> SearchDayConfig:
    """Read and check a scenario YAML file (with the project's YAML limits)."""
    return from_data(read_config_yaml(path), str(path))

"""A recommendation feed: the ``feed`` scenario.

Creators (sellers of content) and advertisers compete for the ``K`` positions
of a feed; a user's attention decays down the feed and stops when a session's
attention budget is spent. Everything about content is read from the shipped
attention bank (``BankSettings()``, no transformer runs):

- **Catalogues.** Each corpus document is owned by an advertiser (share
  ``ad_catalogue_share``, uniformly) or by a creator, creator ``i`` with
  probability proportional to ``(i + 1)^-creator_zipf`` (a few large
  catalogues, a long tail). ``catalogues`` such ownerships are drawn; the
  populations use them in turn.
- **A session** is one query of the bank (the user's interest) and a budget
  ``B ~ U[budget_low, budget_high]``. An owner takes part with its most
  relevant document among the query's candidates, of relevance ``r`` in
  [0, 1] (the bank's logistic map; ``search_pages.read_pages``): its
  **merit**. Owners with no document there sit the session out.
- **Attention.** ``attention``: position ``k`` gets the bank's position factor
  ``pos_k = alpha_k / alpha_1`` of the query (``read_pages``), whatever is
  shown; ``cascade`` (for comparison): position 1 is seen and the user goes on
  past an item of relevance ``r`` with probability ``1 - cascade_stop r``.
  Either is cut by the budget (``feed_rules.budget_cut``). The platform ranks
  with the weights ``w`` = position factors cut by the budget.
- **Values.** Per unit of attention, advertiser ``a`` values its ad at
  ``theta_a r_a`` (``theta_a ~ U[0, ad_value]``), creator ``c`` its post at
  ``theta_c r_c`` (``theta_c ~ U[0, creator_value]``); both drawn once per
  population. Advertisers bid per unit of attention, creators bid to promote.

Mechanisms (``feed_rules``; batched over populations, sessions in sequence):

- ``assignment``: the max-weight assignment of items to positions, an item's
  value at position ``k`` being ``(b r + mu r) w_k`` (bid plus the
  platform's quality weight ``mu`` on the user's relevance), with the affine
  maximiser's VCG payments (truthful bidding is dominant);
- ``gsp``: sponsored positions ``ad_slots`` sold by GSP (score ``b r``) to ads
  and promoting creators, the other positions by merit ``r``;
- ``fair_ranking``: ``gsp``'s sponsored positions, the organic ones ranked by
  ``r + gamma d`` (merit plus the creator's cumulative exposure deficit ``d``
  against exposure proportional to cumulative merit: amortised fairness,
  Singh & Joachims 2018, Biega et al. 2018);
- ``fair_assignment``: ``assignment`` with the creators' bonus ``mu r +
  gamma d``.

``gamma`` runs over ``fairness_weights`` (the platform's fairness constraint;
0 is the unconstrained rule). Bidders are truthful, or learners: each agent
epsilon-greedy over a few bid factors (``ad_levels`` for advertisers,
``promo_levels`` for creators' promotion bids), fed either every factor's
utility in the session, the others' bids fixed (``feedback: counterfactual``,
:func:`deviations`), or only its realised utility (``bandit``, which cannot
tell the factors apart in 400 sessions: docs/feed.md).

Per population (standard errors over populations, which share nothing but the
catalogue draw): user welfare ``sum_k x_k r_k`` (attention-weighted relevance
consumed), advertiser value, revenue, creator exposure, attention spent, and
amortised exposure fairness over the creators (``integrity.fairness``):
the total-variation gap between cumulative exposure shares and cumulative merit
shares, and the head/tail creators' disparate-treatment ratio. Fair rows also
report their cost: welfare and revenue minus the unconstrained rule's, paired
on the same sessions.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from attn_env.checks import check_int, check_one_of, check_real
from attn_env.errors import ConfigError
from attn_env.integrity.fairness import disparity, exposure_merit_gap, group_means
from attn_env.scenarios.feed_rules import (
    USER_MODELS,
    affine_payments,
    budget_cut,
    exposure,
    fair_bonus,
    interleave,
    item_exposure,
    rank_by_score,
)
from attn_env.scenarios.train_config import ScenarioTrainConfig, check_train_config

__all__ = ["CONFIG", "MECHANISMS", "FeedConfig", "Feeds", "simulate"]

MECHANISMS = ("assignment", "gsp", "fair_ranking", "fair_assignment")
"Allocation rules of the feed."
BASE = {"fair_ranking": "gsp", "fair_assignment": "assignment"}
"Each fair rule's unconstrained counterpart (its gamma = 0)."
BIDDERS = ("truthful", "learner")
FEEDBACK = ("counterfactual", "bandit")
"What a learner sees after a session (``FeedConfig.feedback``)."
_EPS = 1e-6  # least organic key, relative to merit: a creator in deficit-debt
# still ranks above an empty position


@dataclass
class FeedConfig:
    """The ``feed`` scenario (``configs/scenarios/feed.yaml``)."""

    scenario: str = "feed"
    "Scenario name (the registry key)."
    seed: int = 0
    "Seed of every draw."
    populations: int = 256
    "Independent feeds (users' sessions in sequence, own agents); errors over them."
    sessions: int = 400
    "Sessions per population: the horizon over which fairness is amortised."
    n_creators: int = 12
    "Creators per population."
    n_advertisers: int = 6
    "Advertisers per population."
    catalogues: int = 4
    "Ownership draws of the corpus, used by the populations in turn."
    ad_catalogue_share: float = 0.25
    "Share of the corpus's documents owned by advertisers."
    creator_zipf: float = 1.0
    "Creator i's catalogue share is proportional to (i + 1)^-creator_zipf."
    positions: int = 5
    "Feed positions K (at most the bank's max_slots)."
    ad_slots: list[int] = field(default_factory=lambda: [2, 5])
    "Sponsored positions (1-based) of gsp and fair_ranking."
    user_models: list[str] = field(default_factory=lambda: list(USER_MODELS))
    "How attention decays: attention (bank position factors) and/or cascade."
    cascade_stop: float = 0.5
    "Cascade: probability per unit of relevance that the user stops after an item."
    budget_low: float = 1.5
    "Least attention budget of a session (position 1 is worth 1)."
    budget_high: float = 4.0
    "Greatest attention budget of a session."
    quality_weight: float = 1.0
    "mu: the platform's weight on the user's relevance in assignment."
    ad_value: float = 2.0
    "Advertisers' theta ~ U[0, ad_value]."
    creator_value: float = 0.5
    "Creators' theta ~ U[0, creator_value]."
    reserve: float = 0.0
    "Least bid per unit of attention for a sponsored position (gsp rules)."
    mechanisms: list[str] = field(default_factory=lambda: list(MECHANISMS))
    "Rules to compare, of assignment, gsp, fair_ranking, fair_assignment."
    fairness_weights: list[float] = field(
        default_factory=lambda: [0.03, 0.1, 0.3, 1.0, 3.0]
    )
    "gamma of the fair rules (the strength of the fairness constraint)."
    bidders: str = "truthful"
    "truthful (bid = value), or learner (epsilon-greedy bandit per agent)."
    ad_levels: list[float] = field(default_factory=lambda: [0.4, 0.55, 0.7, 0.85, 1.0])
    "Advertisers' bid factors (bid = factor x value)."
    promo_levels: list[float] = field(
        default_factory=lambda: [0.0, 0.25, 0.5, 0.75, 1.0]
    )
    "Creators' promotion bid factors (0: no promotion)."
    explore: float = 0.1
    "Learners' exploration probability."
    feedback: str = "counterfactual"
    "counterfactual (each factor's utility, others fixed) or bandit (realised only)."
    checkpoints: int = 8
    "Points of the amortised fairness gap curve over the sessions."
    env_markets: int = 64
    "Feeds cleared together in one step of the PettingZoo env (feed_env)."
    env_sessions: int = 16
    "Steps (sessions) of one env episode; fairness is amortised over them."
    train: ScenarioTrainConfig = field(default_factory=ScenarioTrainConfig)
    "PPO of the env's shared policy (attn-market train)."


CONFIG = FeedConfig


def _levels(x: list[float], name: str, high: float) -> None:
    if not x:
        raise ConfigError(
            f"{name} must be a non-empty list of numbers in [0, {high:g}]"
        )
    for v in x:
        check_real(v, f"{name} entry", 0.0, high)


def validate(c: FeedConfig) -> FeedConfig:
    """``c`` with every number range-checked (one-line ``ConfigError``)."""
    if c.scenario != "feed":
        raise ConfigError(f"scenario must be feed, got {c.scenario!r}")
    check_int(c.seed, "seed", 0)
    check_int(c.populations, "populations", 2, 1_000_000)
    check_int(c.sessions, "sessions", 1, 1_000_000)
    check_int(c.n_creators, "n_creators", 1, 1_000)
    check_int(c.n_advertisers, "n_advertisers", 1, 1_000)
    check_int(c.catalogues, "catalogues", 1, 1_000)
    check_real(c.ad_catalogue_share, "ad_catalogue_share", 0.0, 1.0, above=True)
    if c.ad_catalogue_share >= 1.0:
        raise ConfigError(
            f"ad_catalogue_share must be < 1 (creators need documents), "
            f"got {c.ad_catalogue_share!r}"
        )
    check_real(c.creator_zipf, "creator_zipf", 0.0, 10.0)
    check_int(c.positions, "positions", 1, 64)
    if not isinstance(c.ad_slots, list) or len(set(c.ad_slots)) != len(c.ad_slots):
        raise ConfigError(
            f"ad_slots must be a list of distinct positions, got {c.ad_slots!r}"
        )
    for s in c.ad_slots:
        check_int(s, "ad_slots entry (1-based position)", 1, c.positions)
    bad = [m for m in c.user_models if m not in USER_MODELS]
    if bad or not c.user_models:
        raise ConfigError(
            f"user_models must be a non-empty list of {', '.join(USER_MODELS)}, "
            f"got {c.user_models!r}"
        )
    check_real(c.cascade_stop, "cascade_stop", 0.0, 1.0)
    check_real(c.budget_low, "budget_low", 0.0, 1e6, above=True)
    check_real(c.budget_high, "budget_high", c.budget_low, 1e6)
    check_real(c.quality_weight, "quality_weight", 0.0, 1e6)
    check_real(c.ad_value, "ad_value", 0.0, 1e6, above=True)
    check_real(c.creator_value, "creator_value", 0.0, 1e6)
    check_real(c.reserve, "reserve", 0.0, 1e6)
    bad = [m for m in c.mechanisms if m not in MECHANISMS]
    if bad or not c.mechanisms:
        raise ConfigError(
            f"mechanisms must be a non-empty list of {', '.join(MECHANISMS)}, "
            f"got {c.mechanisms!r}"
        )
    if not c.fairness_weights:
        raise ConfigError("fairness_weights must be a non-empty list of numbers >= 0")
    for g in c.fairness_weights:
        check_real(g, "fairness_weights entry", 0.0, 1e6)
    check_one_of(c.bidders, BIDDERS, "bidders")
    _levels(c.ad_levels, "ad_levels", 10.0)
    _levels(c.promo_levels, "promo_levels", 10.0)
    check_real(c.explore, "explore", 0.0, 1.0)
    check_int(c.checkpoints, "checkpoints", 1, 1_000)
    check_one_of(c.feedback, FEEDBACK, "feedback")
    check_int(c.env_markets, "env_markets", 1, 100_000)
    check_int(c.env_sessions, "env_sessions", 1, 100_000)
    check_train_config(c.train, "feed")
    return c


# --- data ----------------------------------------------------------------------


@dataclass
class Feeds:
    """Everything a run reads: merit per query and owner, position factors.

    ``rel [G, Q, N]`` merit of owner ``n`` (creators ``0..nc-1``, then
    advertisers) for query ``q`` under catalogue ``g`` (0: sits out);
    ``pos [Q, K]`` the query's position factors.
    """

    rel: NDArray[np.float64]
    pos: NDArray[np.float64]
    n_creators: int

    @property
    def n_queries(self) -> int:
        """Queries Q."""
        return int(self.pos.shape[0])


def load(c: FeedConfig) -> Feeds:
    """Open the shipped bank and draw the catalogues of config ``c``."""
    from attn_env.scenarios.search_pages import read_pages
    from attn_env.valuations.attention import AttentionSource

    bank = AttentionSource(build="never").bank
    if c.positions > bank.max_slots:
        raise ConfigError(
            f"positions must be at most {bank.max_slots} (the attention bank's "
            f"largest page), got {c.positions}"
        )
    n_docs = int(np.asarray(bank.candidates).max()) + 1
    n_own = c.n_creators + c.n_advertisers
    rng = np.random.default_rng([c.seed, 7])
    share = (np.arange(c.n_creators) + 1.0) ** -c.creator_zipf
    share = share / share.sum()
    rel, pos = [], None
    for _ in range(c.catalogues):
        to_ad = rng.random(n_docs) < c.ad_catalogue_share
        owner = np.where(
            to_ad,
            c.n_creators + rng.integers(c.n_advertisers, size=n_docs),
            rng.choice(c.n_creators, size=n_docs, p=share),
        ).astype(np.int64)
        pages = read_pages(bank, owner, c.positions)
        dense = np.zeros((pages.n_queries, n_own))
        q, m = np.nonzero(pages.eligible >= 0)
        dense[q, pages.eligible[q, m]] = pages.relevance[q, m]
        rel.append(dense)
        pos = pages.pos
    assert pos is not None
    return Feeds(rel=np.stack(rel), pos=np.asarray(pos), n_creators=c.n_creators)


# --- learners ------------------------------------------------------------------


class Bandit:
    """Epsilon-greedy over bid factors, one per agent and population.

    Untried factors go first; the greedy choice breaks ties at random. Only
    sessions where the agent takes part update its estimates.
    """

    def __init__(self, levels: list[float], p: int, n: int, explore: float) -> None:
        self.levels = np.asarray(levels, dtype=np.float64)
        self.sums = np.zeros((p, n, self.levels.size))
        self.counts = np.zeros((p, n, self.levels.size))
        self.explore = explore
        self.arm = np.zeros((p, n), dtype=np.int64)
        self.full = False

    def greedy(self, rng: np.random.Generator | None = None) -> NDArray[np.int64]:
        """Each agent's best factor so far (untried first; random ties).

        With full-information feedback (:meth:`update_all`) levels whose means
        agree to ``1e-9`` relative are tied, so float rounding never decides."""
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.where(self.counts > 0, self.sums / self.counts, np.inf)
        if self.full:
            top = mean.max(axis=2, keepdims=True)
            with np.errstate(invalid="ignore"):
                tied = (mean == top) | (mean >= top - 1e-9 * (1.0 + np.abs(top)))
            jitter = rng.random(mean.shape) if rng is not None else 0.0
            return np.where(tied, 1.0 + jitter, 0.0).argmax(axis=2)
        if rng is not None:
            mean = mean + 1e-9 * rng.random(mean.shape)
        return mean.argmax(axis=2)

    def choose(self, rng: np.random.Generator) -> NDArray[np.float64]:
        """This session's factor of every agent ``[p, n]``."""
        arm = self.greedy(rng)
        wild = rng.random(arm.shape) < self.explore
        arm = np.where(wild, rng.integers(self.levels.size, size=arm.shape), arm)
        self.arm = arm
        return self.levels[arm]

    def update(self, active: NDArray[np.bool_], utility: NDArray[np.float64]) -> None:
        """Add this session's utility to the chosen factor of active agents."""
        i, j = np.nonzero(active)
        self.sums[i, j, self.arm[i, j]] += utility[i, j]
        self.counts[i, j, self.arm[i, j]] += 1.0

    def update_all(self, active: NDArray[np.bool_], utility: NDArray) -> None:
        """Full-information update: ``utility [p, n, L]`` of every factor this
        session (:func:`deviations`), added for the active agents."""
        self.full = True
        i, j = np.nonzero(active)
        self.sums[i, j] += utility[i, j]
        self.counts[i, j] += 1.0

    def final(self, rng: np.random.Generator | None = None) -> NDArray[np.float64]:
        """The factor each agent ends on (its greedy choice), ``[p, n]``."""
        return self.levels[self.greedy(rng)]


# --- one run -------------------------------------------------------------------


@dataclass
class Draws:
    """The sessions of a run, shared by every rule (common random numbers)."""

    cat: NDArray[np.int64]  # [P] catalogue of each population
    query: NDArray[np.int64]  # [T, P]
    budget: NDArray[np.float64]  # [T, P]
    theta: NDArray[np.float64]  # [P, N]


def draw(feeds: Feeds, c: FeedConfig) -> Draws:
    """The sessions and agents of config ``c`` (seeded by ``c.seed``)."""
    rng = np.random.default_rng(c.seed)
    p, t = c.populations, c.sessions
    theta = np.concatenate(
        [
            rng.random((p, c.n_creators)) * c.creator_value,
            rng.random((p, c.n_advertisers)) * c.ad_value,
        ],
        axis=1,
    )
    return Draws(
        cat=np.arange(p) % feeds.rel.shape[0],
        query=rng.integers(feeds.n_queries, size=(t, p)),
        budget=rng.uniform(c.budget_low, c.budget_high, size=(t, p)),
        theta=theta,
    )


def allocate(
    rule: str,
    r: NDArray[np.float64],
    bids: NDArray[np.float64],
    w: NDArray[np.float64],
    deficit_bonus: NDArray[np.float64],
    c: FeedConfig,
) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
    """The feed ``order [P, K]`` and per-unit ``price [P, K]`` of rule ``rule``.

    Args:
        rule: one of :data:`MECHANISMS`.
        r: ``[P, N]`` merit (0: the owner sits the session out).
        bids: ``[P, N]`` bids per unit of attention (creators': promotion).
        w: ``[P, K]`` the platform's position weights.
        deficit_bonus: ``[P, nc]`` the fair rules' ``gamma d`` of each creator.
        c: the config (``positions``, ``ad_slots``, ``quality_weight``, ``reserve``).
    """
    nc = c.n_creators
    on = r > 0
    is_ad = np.zeros(r.shape[1], dtype=bool)
    is_ad[nc:] = True
    if rule in ("assignment", "fair_assignment"):
        bonus = c.quality_weight * r
        if rule == "fair_assignment":
            bonus[:, :nc] = np.maximum(bonus[:, :nc] + deficit_bonus, _EPS * r[:, :nc])
        else:
            bonus[:, :nc] = np.maximum(bonus[:, :nc], _EPS * r[:, :nc])
        # an ad is shown only with a bid (at least the reserve)
        ad_in = (bids > 0) & (bids >= c.reserve)
        ok = on & (~is_ad | ad_in)
        score = np.where(ok, bids * r + bonus, 0.0)
        order, srt = rank_by_score(score, c.positions)
        price = affine_payments(order, srt, w, r, np.where(ok, bonus, 0.0))
        if c.reserve > 0:
            ad_at = np.where(order >= 0, is_ad[np.maximum(order, 0)], False)
            price = np.where(ad_at & (w > 0), np.maximum(price, c.reserve), price)
        return order, price
    key = r[:, :nc]
    if rule == "fair_ranking":
        key = np.maximum(key + deficit_bonus, _EPS * key)
    organic = np.concatenate(
        [np.where(on[:, :nc], key, 0.0), np.zeros_like(r[:, nc:])], 1
    )
    sponsor = np.where(on & (bids > 0), bids * r, 0.0)
    ad_pos = np.asarray(sorted(s - 1 for s in c.ad_slots), dtype=np.int64)
    return interleave(sponsor, r, organic, ad_pos, c.positions, c.reserve, bids)


def clear(
    rule: str,
    model: str,
    r: NDArray[np.float64],
    bids: NDArray[np.float64],
    pos: NDArray[np.float64],
    budget: NDArray[np.float64],
    bonus: NDArray[np.float64],
    c: FeedConfig,
) -> tuple[NDArray, NDArray, NDArray, NDArray]:
    """One session of ``P`` feeds under ``rule`` and user ``model``.

    Args:
        r: ``[P, N]`` merit; ``bids``: ``[P, N]`` bids per unit of attention;
        pos: ``[P, K]`` position factors; ``budget``: ``[P]`` attention budgets;
        bonus: ``[P, nc]`` the fair rules' deficit bonus (zeros otherwise).

    Returns:
        ``x [P, K]`` attention per position, ``shown_r [P, K]`` the merit shown
        there, ``got [P, N]`` attention per item and ``paid [P, N]`` its payment
        (> 0: the owner pays).
    """
    w = budget_cut(pos, budget)
    order, price = allocate(rule, r, bids, w, bonus, c)
    x = exposure(model, pos, order, r, budget, c.cascade_stop)
    rows = np.arange(r.shape[0])
    shown_r = np.where(order >= 0, r[rows[:, None], np.maximum(order, 0)], 0.0)
    n = r.shape[1]
    return x, shown_r, item_exposure(order, x, n), item_exposure(order, price * x, n)


def _agent_levels(c: FeedConfig) -> NDArray[np.float64]:
    """``[N, L]`` each agent's bid factors (creators' promotion levels, then the
    advertisers'), right-padded with the agent's last level to a common ``L``."""
    size = max(len(c.promo_levels), len(c.ad_levels))

    def pad(x: list[float]) -> list[float]:
        return list(x) + [x[-1]] * (size - len(x))

    return np.array(
        [pad(c.promo_levels)] * c.n_creators + [pad(c.ad_levels)] * c.n_advertisers,
        dtype=np.float64,
    )


def deviations(
    rule: str,
    model: str,
    r: NDArray[np.float64],
    value: NDArray[np.float64],
    bids: NDArray[np.float64],
    pos: NDArray[np.float64],
    budget: NDArray[np.float64],
    bonus: NDArray[np.float64],
    c: FeedConfig,
    levels: NDArray[np.float64],
) -> NDArray[np.float64]:
    """``[P, N, L]`` each agent's utility had it alone bid ``levels[n, l] x value``.

    The others keep ``bids``; the session (query, budget, fairness state) is
    the same, so the differences between an agent's levels are exact, not
    estimates: the counterfactual feedback of a bid simulator. All ``N x L``
    deviations are cleared as one batch of ``P N L`` feeds.
    """
    p, n = r.shape
    m = levels.size
    agent = np.repeat(np.arange(n), levels.shape[1])  # [M]
    dev = np.broadcast_to(bids[:, None, :], (p, m, n)).copy()
    dev[:, np.arange(m), agent] = levels.reshape(-1)[None, :] * value[:, agent]

    def tile(a: NDArray) -> NDArray:
        return np.repeat(a, m, axis=0)

    _, _, got, paid = clear(
        rule,
        model,
        tile(r),
        dev.reshape(p * m, n),
        tile(pos),
        tile(budget),
        tile(bonus),
        c,
    )
    own = np.arange(p * m) % m
    got_i = got[np.arange(p * m), agent[own]].reshape(p, m)
    paid_i = paid[np.arange(p * m), agent[own]].reshape(p, m)
    return (value[:, agent] * got_i - paid_i).reshape(p, n, levels.shape[1])


def _mean_se(x: NDArray[np.float64]) -> dict[str, float]:
    return {"mean": float(x.mean()), "se": float(x.std(ddof=1) / np.sqrt(x.size))}


METRICS = (
    "user_welfare",
    "advertiser_value",
    "revenue",
    "creator_exposure",
    "creator_value",
    "ad_exposure",
    "attention",
)
"Per-session measures (means per population)."


def run(
    feeds: Feeds,
    d: Draws,
    c: FeedConfig,
    rule: str,
    gamma: float,
    model: str,
    rng: np.random.Generator,
) -> dict[str, Any]:
    """One rule over every population's sessions; per-population arrays.

    Returns:
        ``metrics`` (name -> ``[P]`` mean per session), ``cum_exposure`` and
        ``cum_merit`` ``[P, nc]``, ``gap_curve`` ``[checkpoints, P]`` (amortised
        TV gap after each checkpoint's sessions), ``sessions_at``, and the
        learners' final factors (``ad_factor``, ``promo_factor`` ``[P, n]``)
        with bidders ``learner``.
    """
    p, t = c.populations, c.sessions
    nc = feeds.n_creators
    n = feeds.rel.shape[2]
    learn = c.bidders == "learner"
    ads_b = Bandit(c.ad_levels, p, n - nc, c.explore) if learn else None
    promo_b = Bandit(c.promo_levels, p, nc, c.explore) if learn else None
    cum_e = np.zeros((p, nc))
    cum_u = np.zeros((p, nc))
    sums = {k: np.zeros(p) for k in METRICS}
    marks = np.unique(np.linspace(t / c.checkpoints, t, c.checkpoints).astype(int))
    curve = []
    levels = _agent_levels(c)
    for s in range(t):
        q = d.query[s]
        r = feeds.rel[d.cat, q]  # [P, N]
        value = d.theta * r
        if learn:
            assert ads_b is not None and promo_b is not None
            factor = np.concatenate([promo_b.choose(rng), ads_b.choose(rng)], axis=1)
            bids = factor * value
        else:
            bids = value
        pos = feeds.pos[q]
        bonus = fair_bonus(cum_e, cum_u, gamma) if rule in BASE else np.zeros((p, nc))
        x, shown_r, got, paid = clear(rule, model, r, bids, pos, d.budget[s], bonus, c)
        sums["user_welfare"] += (x * shown_r).sum(axis=1)
        sums["advertiser_value"] += (value[:, nc:] * got[:, nc:]).sum(axis=1)
        sums["revenue"] += paid.sum(axis=1)
        sums["creator_exposure"] += got[:, :nc].sum(axis=1)
        sums["creator_value"] += (value[:, :nc] * got[:, :nc]).sum(axis=1)
        sums["ad_exposure"] += got[:, nc:].sum(axis=1)
        sums["attention"] += x.sum(axis=1)
        cum_e += got[:, :nc]
        cum_u += r[:, :nc]
        if learn:
            assert ads_b is not None and promo_b is not None
            if c.feedback == "bandit":
                util = value * got - paid
                promo_b.update(r[:, :nc] > 0, util[:, :nc])
                ads_b.update(r[:, nc:] > 0, util[:, nc:])
            else:
                dev = deviations(
                    rule, model, r, value, bids, pos, d.budget[s], bonus, c, levels
                )
                promo_b.update_all(r[:, :nc] > 0, dev[:, :nc, : promo_b.levels.size])
                ads_b.update_all(r[:, nc:] > 0, dev[:, nc:, : ads_b.levels.size])
        if s + 1 in marks:
            curve.append(tv_gap(cum_e, cum_u))
    out: dict[str, Any] = {
        "metrics": {k: v / t for k, v in sums.items()},
        "cum_exposure": cum_e,
        "cum_merit": cum_u,
        "gap_curve": np.array(curve),
        "sessions_at": [int(m) for m in marks],
    }
    if learn:
        assert ads_b is not None and promo_b is not None
        tie = rng if c.feedback != "bandit" else None
        out["ad_factor"] = ads_b.final(tie)
        out["promo_factor"] = promo_b.final(tie)
    return out


def tv_gap(cum_e: NDArray[np.float64], cum_u: NDArray[np.float64]) -> NDArray:
    """``[P]`` amortised gap of each population: the total-variation distance of
    its creators' cumulative exposure shares and cumulative merit shares
    (``integrity.fairness.exposure_merit_gap`` of one row; nan: no exposure or
    no merit yet). Vectorised here: the scenario takes it at every checkpoint."""
    se = cum_e.sum(axis=1, keepdims=True)
    su = cum_u.sum(axis=1, keepdims=True)
    ok = (se[:, 0] > 1e-12) & (su[:, 0] > 1e-12)
    with np.errstate(invalid="ignore", divide="ignore"):
        tv = 0.5 * np.abs(cum_e / se - cum_u / su).sum(axis=1)
    return np.where(ok, tv, np.nan)


def head_tail(cum_e: NDArray[np.float64], cum_u: NDArray[np.float64]) -> NDArray:
    """``[P]`` disparate treatment of the head (larger half of catalogues) vs the
    tail creators: ``min/max`` of the groups' exposure per unit of merit."""
    nc = cum_e.shape[1]
    group = (np.arange(nc) >= (nc + 1) // 2).astype(np.int64)[None, :]
    out = []
    for i in range(len(cum_e)):
        means = group_means(cum_e[i : i + 1], cum_u[i : i + 1], group, 2)
        out.append(disparity(means)["disparate_treatment"])
    return np.array(out)


def simulate(config: FeedConfig, progress: bool = False) -> dict[str, Any]:
    """Run the scenario: one row per user model, rule and fairness weight.

    Returns:
        ``{"config", "rows", "seconds", "sessions"}``; each row has
        ``user_model``, ``mechanism``, ``fairness_weight`` and ``{mean, se}``
        over populations of every :data:`METRICS` entry (per session),
        ``fairness_gap`` (amortised TV gap of creators' exposure and merit
        shares), ``head_tail_treatment`` (1: head and tail creators get equal
        exposure per unit of merit), ``gap_curve`` (mean gap after
        ``sessions_at`` sessions), for the fair rules ``cost`` (``welfare`` and
        ``revenue``: the unconstrained rule's minus this one's, paired per
        population), and with learners ``ad_factor`` / ``promo_factor``
        (mean final bid factor).
    """
    c = validate(config)
    start = time.perf_counter()
    feeds = load(c)
    d = draw(feeds, c)
    rows: list[dict[str, Any]] = []
    base: dict[tuple[str, str], dict[str, Any]] = {}
    plan = [
        (model, rule, g)
        for model in c.user_models
        for rule in c.mechanisms
        for g in ([0.0] if rule not in BASE else c.fairness_weights)
    ]
    for i, (model, rule, gamma) in enumerate(plan):
        res = run(
            feeds, d, c, rule, float(gamma), model, np.random.default_rng([c.seed, i])
        )
        row: dict[str, Any] = {
            "user_model": model,
            "mechanism": rule,
            "fairness_weight": float(gamma),
        }
        for k, v in res["metrics"].items():
            row[k] = _mean_se(v)
        gap = res["gap_curve"][-1]
        row["fairness_gap"] = {
            # the library's measure (mean over populations) with its error
            "mean": exposure_merit_gap(res["cum_exposure"], res["cum_merit"]),
            "se": _mean_se(gap[np.isfinite(gap)])["se"],
        }
        ht = head_tail(res["cum_exposure"], res["cum_merit"])
        row["head_tail_treatment"] = _mean_se(ht[np.isfinite(ht)])
        row["gap_curve"] = [float(np.nanmean(g)) for g in res["gap_curve"]]
        row["sessions_at"] = res["sessions_at"]
        if rule not in BASE:
            base[(model, rule)] = res
        else:
            ref = base.get((model, BASE[rule]))
            if ref is None:  # the unconstrained rule was not asked for: run it
                ref = run(
                    feeds,
                    d,
                    c,
                    BASE[rule],
                    0.0,
                    model,
                    np.random.default_rng([c.seed, i, 1]),
                )
                base[(model, BASE[rule])] = ref
            row["cost"] = {
                "welfare": _mean_se(
                    ref["metrics"]["user_welfare"] - res["metrics"]["user_welfare"]
                ),
                "revenue": _mean_se(
                    ref["metrics"]["revenue"] - res["metrics"]["revenue"]
                ),
            }
        if "ad_factor" in res:
            row["ad_factor"] = float(res["ad_factor"].mean())
            row["promo_factor"] = float(res["promo_factor"].mean())
        rows.append(row)
        if progress:
            print(
                f"{model:>9} {rule:>15} gamma={gamma:<5g} "
                f"welfare={row['user_welfare']['mean']:.4f} "
                f"revenue={row['revenue']['mean']:.4f} "
                f"gap={row['fairness_gap']['mean']:.4f}"
            )
    return {
        "config": dataclasses.asdict(c),
        "rows": rows,
        "sessions": c.populations * c.sessions * len(plan),
        "seconds": time.perf_counter() - start,
    }

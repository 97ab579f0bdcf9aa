"""Correlated values: one-slot payoffs against a joint law of the buyers' values.

With independent values a bidder's opponents bid from one marginal law
whatever its own value; with correlated values (``solve.prior``) the law of
the opponents' values, hence of their bids, depends on the own value. The
solver integrates over the joint law by sampling: ``draws`` value profiles
are drawn once (common random numbers: the same profiles every iteration, so
the game is one fixed approximation), and each profile gives ``n``
observations, one per buyer as the focal bidder with the others as its
opponents (the role is symmetric). An observation falls in the value bin of
its focal value (``V`` bins of equal mass, whose quantile midpoints are the
solve's value grid), and the focal bidder's expected quantity and money at
a value are the mean over the observations of its bin, each exact over the
opponents' bids:

- during SODA (:func:`strategy_payoffs`) an opponent with value ``y`` bids from
  the distributional strategy of ``y``'s bin; a bid ``c`` wins with probability
  ``int_0^1 prod_j (lo_j + eq_j t) dt`` (``lo_j``, ``eq_j`` the probabilities
  that opponent ``j`` bids under ``c`` and exactly ``c``: ties shared
  uniformly, as :mod:`.formats` computes them; Gauss–Legendre, exact);
- for the reported utility loss (:func:`pure_payoffs`) opponents bid their
  pure bid function of their own sampled value, on a fresh and larger sample
  of profiles (the loss is measured out of the sample the solve used).

Rules (one slot, the price per unit of attention, ``Y`` the highest opponent
bid, ``r`` the reserve; a bid under ``r`` wins and pays nothing):
``first_price`` pays ``c``, ``all_pay`` pays ``c`` win or lose,
``second_price`` (and ``gsp``, ``vcg`` with one slot) pays ``max(Y, r)``.

Joint laws (:func:`draw_profiles`): ``common_noise``, the affiliated family
``v_i = low + (high - low) (w c + (1 - w) e_i)`` with ``c, e_i ~ U[0, 1]``
independent (scrambled Sobol points: stratified jointly), and ``source``, whole
markets drawn from the market's valuation source with each market's values
kept together (the attention source: ``theta * r`` of the candidates of one
query).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from attn_env.checks import ConfigError
from attn_env.config import EnvConfig, SolvePrior
from attn_env.valuations.base import affiliated_units, stratified_uniforms

__all__ = [
    "JOINT_RULES",
    "JointValues",
    "draw_profiles",
    "pure_payoffs",
    "strategy_payoffs",
]

JOINT_RULES = ("first_price", "second_price", "gsp", "vcg", "all_pay")
"One-slot rules the solver takes with correlated values."
EVAL_FACTOR = 4
"The utility loss is measured on this many times ``draws`` fresh profiles."
DRAWS_PAIR = 65_536
"Default profiles with two buyers (their pair law is built once: cheap)."
DRAWS_MANY = 8_192
"Default profiles with more buyers (every iteration is linear in them)."


def draw_profiles(
    env: EnvConfig,
    prior: SolvePrior,
    n_slots: int,
    draws: int,
    rng: np.random.Generator,
) -> NDArray[np.float64]:
    """``[draws, n_buyers]`` value profiles from the joint law ``prior``.

    Raises:
        ConfigError: ``common_noise`` on a market whose values are not uniform.
    """
    n = env.n_buyers
    if prior.kind == "common_noise":
        if env.valuation != "uniform" or env.value_dist != "uniform":
            raise ConfigError(
                "solve.prior common_noise draws its own uniform values: it needs "
                "valuation: uniform and value_dist: uniform, got valuation "
                f"{env.valuation!r}, value_dist {env.value_dist!r}"
            )
        u = stratified_uniforms(n + 1, draws, rng)
        unit = affiliated_units(u, float(prior.common))
        return env.value_low + (env.value_high - env.value_low) * unit
    if prior.kind == "source":
        from attn_env.valuations import make_source

        source = make_source(
            env.valuation,
            dist=env.value_dist,
            low=env.value_low,
            high=env.value_high,
            **env.valuation_params,
        )
        draw = source.draw(rng, draws, n, n_slots)
        return np.asarray(draw.unit_value, dtype=np.float64).reshape(draws, n)
    raise ConfigError(f"solve.prior.kind {prior.kind!r} has no joint draws")


@dataclass(frozen=True)
class _Binned:
    """Observations sorted by the focal bidder's value bin."""

    focal: NDArray[np.float64]
    "``[O]`` the focal bidder's value."
    others: NDArray[np.float64]
    "``[O, n - 1]`` the other buyers' values in the same profile."
    starts: NDArray[np.int64]
    "``[V]`` first observation of each bin (every bin non-empty)."
    edges: NDArray[np.float64]
    "``[V - 1]`` inner edges of the bins (a value's bin: ``searchsorted``, side right)."
    opp: NDArray[np.int64]
    "``[O, n - 1]`` the bins of the other buyers' values."
    pair: NDArray[np.float64] | None
    "Two buyers: ``[V, V]`` the law of the other's bin given the focal bin."

    def mean(self, x: NDArray[np.float64]) -> NDArray[np.float64]:
        """``[V, ...]`` per-bin mean of ``x [O, ...]``."""
        counts = np.diff(np.append(self.starts, len(self.focal)))
        shape = (-1,) + (1,) * (x.ndim - 1)
        return np.add.reduceat(x, self.starts, axis=0) / counts.reshape(shape)


def _observations(profiles: NDArray[np.float64], edges: NDArray[np.float64]) -> _Binned:
    """Each profile once per buyer as the focal one, sorted by focal bin."""
    n = profiles.shape[1]
    focal = profiles.T.ravel()
    others = np.concatenate([np.delete(profiles, i, axis=1) for i in range(n)])
    bins = np.searchsorted(edges, focal, side="right")
    order = np.argsort(bins, kind="stable")
    counts = np.bincount(bins, minlength=len(edges) + 1)
    if np.any(counts == 0):
        raise ConfigError(
            f"solve.prior: a value bin has no draws ({int(np.sum(counts == 0))} of "
            f"{len(counts)} empty; the values have atoms or too few draws); raise "
            "solve.prior.draws or lower solve.values"
        )
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    opp = np.searchsorted(edges, others[order], side="right")
    pair = None
    if n == 2:  # the one opponent's bin given the focal's: all the game needs
        v = len(counts)
        pair = np.bincount(bins[order] * v + opp[:, 0], minlength=v * v)
        pair = pair.reshape(v, v) / counts[:, None]
    return _Binned(focal[order], others[order], starts, edges, opp, pair)


@dataclass(frozen=True)
class JointValues:
    """The sampled joint law of the values, binned on the solve's value grid."""

    solve: _Binned
    "The profiles the solve integrates over (binned on the ``V`` solve bins)."
    check: NDArray[np.float64]
    "``[M', n]`` fresh profiles for the reported utility loss."

    @classmethod
    def build(
        cls,
        profiles: NDArray[np.float64],
        check: NDArray[np.float64],
        n_values: int,
    ) -> JointValues:
        return cls(_observations(profiles, _edges(profiles, n_values)), check)

    @property
    def pooled(self) -> NDArray[np.float64]:
        """Every observation's own value: the marginal law (for the value grid)."""
        return self.solve.focal

    def bins_of(self, n_values: int) -> tuple[_Binned, NDArray[np.float64]]:
        """The check profiles binned on ``n_values`` bins of the marginal, and the
        bins' quantile midpoints (the focal values of the loss measure)."""
        edges = _edges(self.check, n_values)
        grid = np.quantile(self.check, (np.arange(n_values) + 0.5) / n_values)
        return _observations(self.check, edges), grid


def _edges(profiles: NDArray[np.float64], n_values: int) -> NDArray[np.float64]:
    """``[V - 1]`` inner edges of ``V`` equal-mass bins of the pooled values."""
    return np.quantile(profiles.ravel(), np.arange(1, n_values) / n_values)


def _win_share(lo: list, eq: list) -> NDArray[np.float64]:
    """``int_0^1 prod_j (lo_j + eq_j t) dt`` by Gauss–Legendre (exact: degree J)."""
    nodes, wts = np.polynomial.legendre.leggauss(len(lo) // 2 + 1)
    out = 0.0
    for t, w in zip((nodes + 1.0) / 2.0, wts / 2.0, strict=True):
        p = lo[0] + eq[0] * t
        for a, b in zip(lo[1:], eq[1:], strict=True):
            p *= a + b * t
        out = out + w * p
    return out


def strategy_payoffs(
    rule: str,
    obs: _Binned,
    strat: NDArray[np.float64],
    bids: NDArray[np.float64],
    alpha: float,
    reserve: float,
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """``[V, G]`` expected attention and payment of each grid bid at each value bin.

    Args:
        rule: one of :data:`JOINT_RULES`.
        obs: the binned observations.
        strat: ``[V, G]`` the role's distributional strategy (bin x grid bid).
        bids: ``[G]`` the bid grid (ascending), also the candidate bids.
        alpha: the slot's attention (``alpha^rho`` under CRRA).
        reserve: least bid that wins.
    """
    cdf = np.cumsum(strat, axis=1)
    below = np.clip(cdf - strat, 0.0, 1.0)
    can = (bids >= reserve).astype(np.float64)
    if obs.pair is not None:  # one opponent: linear in its law, [V, V] @ [V, G]
        win = can * (below + strat / 2.0)
        if rule == "first_price":
            pay = win * bids
        elif rule == "all_pay":
            pay = np.broadcast_to(can * bids, win.shape)
        else:
            price = np.maximum(bids, reserve)
            mass = strat * price
            pay = can * (np.cumsum(mass, axis=1) - mass + price * strat / 2.0)
        return alpha * (obs.pair @ win), alpha * (obs.pair @ pay)
    opp = obs.opp
    lo = [below[opp[:, j]] for j in range(opp.shape[1])]
    eq = [strat[opp[:, j]] for j in range(opp.shape[1])]
    win = _win_share(lo, eq) * can  # [O, G]
    if rule == "first_price":
        pay = win * bids
    elif rule == "all_pay":
        pay = np.broadcast_to(can * bids, win.shape)
    else:  # second price: max(Y, r) for Y under the bid, the bid on a shared tie
        y_lo = np.prod(np.stack(lo), axis=0) if lo else np.ones_like(win)
        y_le = np.prod(np.stack([a + b for a, b in zip(lo, eq, strict=True)]), axis=0)
        price = np.maximum(bids, reserve)
        mass = (y_le - y_lo) * price  # [O, G]: max(Y, r) at Y = bids[g]
        under = np.cumsum(mass, axis=1) - mass  # Y strictly under the bid
        pay = can * (under + price * np.clip(win - y_lo, 0.0, None))
    return alpha * obs.mean(win), alpha * obs.mean(pay)


def pure_payoffs(
    rule: str,
    obs: _Binned,
    bid_fn,
    cand: NDArray[np.float64],
    alpha: float,
    reserve: float,
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """``[V, C]`` expected attention and payment of candidate bids ``cand`` when
    every opponent bids ``bid_fn`` of its own sampled value.

    Per bin, the observations' highest opponent bids ``Y`` are sorted once;
    a candidate ``c`` wins those under it and ``1 / (T + 1)`` of each tie at
    ``c`` (``T`` opponents tied at ``Y``): cumulative sums and a binary search,
    not an ``[O, C]`` table.
    """
    theirs = np.asarray(bid_fn(obs.others), dtype=np.float64).reshape(obs.others.shape)
    top = theirs.max(axis=1)
    share = 1.0 / ((theirs == top[:, None]).sum(axis=1) + 1.0)
    cand = np.asarray(cand, dtype=np.float64)
    can = (cand >= reserve).astype(np.float64)
    ends = np.append(obs.starts[1:], len(top))
    qty = np.empty((len(obs.starts), len(cand)))
    money = np.empty_like(qty)
    for k, (a, b) in enumerate(zip(obs.starts, ends, strict=True)):
        order = np.argsort(top[a:b], kind="stable")
        y, sh = top[a:b][order], share[a:b][order]
        c_share = np.concatenate([[0.0], np.cumsum(sh)])
        c_price = np.concatenate([[0.0], np.cumsum(np.maximum(y, reserve))])
        lo = np.searchsorted(y, cand, side="left")
        hi = np.searchsorted(y, cand, side="right")
        tied = c_share[hi] - c_share[lo]
        win = can * (lo + tied) / (b - a)
        qty[k] = win
        if rule == "first_price":
            money[k] = cand * win
        elif rule == "all_pay":
            money[k] = can * cand
        else:
            money[k] = can * (c_price[lo] + np.maximum(cand, reserve) * tied) / (b - a)
    return alpha * qty, alpha * money

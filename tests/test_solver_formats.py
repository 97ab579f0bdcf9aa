"""More formats, utilities and asymmetric bidders: references and the solver.

The analytic references of ``attn_env.equilibria`` (all-pay, CRRA first
price, asymmetric first price, war of attrition) are each checked by a
brute-force best response on a fine grid: the bid is a best reply to itself
within the grid's resolution, and a wrong bid (the neighbouring formula) is
not. The solver's all-pay rule, CRRA utility and asymmetric classes are then
checked against them (the slow, full-grid validations are ``slow`` and in
``benchmarks/solver_formats.py``).
"""

from __future__ import annotations

import numpy as np
import pytest

from attn_env.equilibria import (
    all_pay_bne,
    asymmetric_first_price_bne,
    crra_first_price_bne,
    first_price_bne,
    war_of_attrition_bne,
)
from attn_env.errors import UserError

VALUES = (np.arange(200) + 0.5) / 200
"Values at which a best response is searched (quantile midpoints of U[0, 1])."


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    """Keep solutions out of the user's cache."""
    monkeypatch.setenv("ATTN_MARKET_CACHE", str(tmp_path / "cache"))


def _l2(a, b):
    return float(np.sqrt(np.mean((np.asarray(a) - np.asarray(b)) ** 2)))


def _bid_law(strategy, high: float = 1.0, points: int = 200_001):
    """``b -> P(opponent's bid < b)`` and ``b -> E[bid; bid < b]`` for an
    increasing strategy of a ``U[0, high]`` opponent (exact up to the fine grid)."""
    v = np.linspace(0.0, high, points)
    b = strategy(v)
    assert np.all(np.diff(b) >= 0.0)
    cum = np.concatenate([[0.0], np.cumsum((b[1:] + b[:-1]) / 2 * np.diff(v))]) / high

    def cdf(x):
        return np.interp(x, b, v / high, left=0.0, right=1.0)

    def partial_mean(x):
        return np.interp(x, b, cum, left=0.0, right=cum[-1])

    return cdf, partial_mean


def _br_gain(utility, values, own_bids, top: float, points: int = 4001) -> float:
    """Largest gain over the own bid of a best response on ``points`` bids."""
    cand = np.linspace(0.0, top, points)
    u = utility(values[:, None], cand[None, :])
    u_own = utility(values, own_bids)
    return float((np.maximum(u.max(axis=1), u_own) - u_own).max())


@pytest.mark.parametrize("n", [2, 3, 5])
def test_all_pay_reference_is_a_best_reply_to_itself(n):
    def gain(strategy):
        cdf, _ = _bid_law(strategy)
        return _br_gain(
            lambda v, b: v * cdf(b) ** (n - 1) - b, VALUES, strategy(VALUES), 1.0
        )

    assert gain(all_pay_bne(n)) < 1e-6
    # the first-price bid is far from a best reply when everyone pays
    assert gain(first_price_bne(n)) > 0.05


@pytest.mark.parametrize(("n", "rho"), [(2, 0.5), (3, 0.3), (4, 1.0)])
def test_crra_first_price_reference_is_a_best_reply_to_itself(n, rho):
    def gain(strategy):
        cdf, _ = _bid_law(strategy)
        return _br_gain(
            lambda v, b: cdf(b) ** (n - 1) * np.maximum(v - b, 0.0) ** rho,
            VALUES,
            strategy(VALUES),
            1.0,
        )

    assert gain(crra_first_price_bne(n, rho)) < 1e-6
    if rho < 1.0:  # the risk-neutral bid is not a best reply under risk aversion
        assert gain(first_price_bne(n)) > 5 * gain(crra_first_price_bne(n, rho))
    np.testing.assert_allclose(
        crra_first_price_bne(n, 1.0)(VALUES), first_price_bne(n)(VALUES)
    )


@pytest.mark.parametrize(("a", "b"), [(0.5, 1.0), (1.0, 0.7), (1.0, 1.0)])
def test_asymmetric_first_price_reference_is_a_best_reply(a, b):
    bid_a, bid_b = asymmetric_first_price_bne(a, b)
    # both reach the same highest bid a b / (a + b)
    np.testing.assert_allclose(bid_a(a), a * b / (a + b))
    np.testing.assert_allclose(bid_b(b), a * b / (a + b))
    for own, other, high, high_other in ((bid_a, bid_b, a, b), (bid_b, bid_a, b, a)):
        cdf, _ = _bid_law(other, high_other)
        vals = VALUES * high
        gain = _br_gain(
            lambda v, x, cdf=cdf: cdf(x) * (v - x), vals, own(vals), max(a, b)
        )
        assert gain < 1e-6
    if a != b:  # the symmetric v / 2 is no equilibrium: the strong bidder shades more
        cdf, _ = _bid_law(lambda v: v / 2, min(a, b))
        vals = VALUES * max(a, b)
        wrong = _br_gain(lambda v, x: cdf(x) * (v - x), vals, vals / 2, 1.0)
        assert wrong > 0.01


def test_war_of_attrition_reference_is_a_best_reply_to_itself():
    # the higher bid wins and pays the lower; the loser pays its own bid
    def utility_against(strategy):
        cdf, partial = _bid_law(lambda v: strategy(np.minimum(v, 0.9999)))
        return lambda v, b: v * cdf(b) - partial(b) - b * (1.0 - cdf(b))

    vals = VALUES[VALUES < 0.95]
    top = float(war_of_attrition_bne(0.99))
    u = utility_against(war_of_attrition_bne)
    assert _br_gain(u, vals, war_of_attrition_bne(vals), top, 8001) < 1e-6
    wrong = utility_against(lambda v: v**2 / 2)  # the second-price-like guess
    assert _br_gain(wrong, vals, vals**2 / 2, top, 8001) > 0.01


def test_references_refuse_bad_parameters():
    with pytest.raises(UserError, match="n >= 2"):
        all_pay_bne(1)
    with pytest.raises(UserError, match=r"rho must be a number in \(0, 1\]"):
        crra_first_price_bne(2, 1.5)
    with pytest.raises(UserError, match="high_2 > 0"):
        asymmetric_first_price_bne(1.0, 0.0)

"""Segment and prominence auctions (``attn_env/mechanisms/answer.py``): monotone
allocation, Myerson payments against an independent quadrature, truthfulness
by an exact best-response search, individual rationality, zero bids, bad input."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy.integrate import quad

from attn_env import mechanisms
from attn_env.errors import ConfigError, UserError
from attn_env.mechanisms.answer import phi

NAMES = ("segment_auction", "prominence_auction")
BETAS = (0.5, 1.0, 2.0, 4.0)
PROPS = settings(max_examples=60, deadline=None)


def make(name, beta=2.0, **kw):
    if name == "prominence_auction":
        kw["beta"] = beta
    return mechanisms.make(name, **kw)


def share_rule(b, q, beta, reserve):
    """The allocation rule written again, independently: ``pi_i`` per market."""
    elig = (b > 0) & (b >= reserve)
    w = np.where(elig, (b * q) ** beta, 0.0)
    tot = w.sum(axis=-1, keepdims=True)
    return np.where(tot > 0, w / np.where(tot > 0, tot, 1.0), 0.0)


def myerson_quad(b, q, total, beta, reserve, i):
    """``b_i x_i(b) - int_0^{b_i} x_i(z) dz`` by adaptive quadrature (one market)."""

    def x(z):
        bb = b.copy()
        bb[i] = z
        return total * share_rule(bb, q, beta, reserve)[i]

    pts = [reserve] if 0 < reserve < b[i] else None
    area, _ = quad(x, 0.0, b[i], points=pts, limit=200, epsabs=1e-13, epsrel=1e-11)
    return b[i] * x(b[i]) - area


@st.composite
def market(draw):
    n = draw(st.integers(1, 5))
    k = draw(st.integers(1, 4))
    b = draw(arrays(np.float64, (2, n), elements=st.floats(0.0, 1.0)))
    b = np.where(b < 1e-6, 0.0, b)
    q = draw(arrays(np.float64, (2, n), elements=st.floats(0.1, 3.0)))
    alpha = draw(arrays(np.float64, (2, k), elements=st.floats(0, 1)))
    alpha = -np.sort(-np.where(alpha < 1e-6, 0.0, alpha), axis=1)
    reserve = draw(st.sampled_from([0.0, 0.1, 0.4]))
    beta = draw(st.sampled_from(BETAS))
    return b, q, alpha, reserve, beta


# --- allocation --------------------------------------------------------------


@PROPS
@given(market(), st.sampled_from(NAMES), st.floats(1e-3, 1.0))
def test_allocation_is_monotone_and_matches_the_rule(mk, name, raise_by):
    b, q, alpha, reserve, beta = mk
    m = make(name, beta, reserve=reserve)
    beta = m.exponent
    x, _, share = m.expected(b, alpha, q)
    np.testing.assert_allclose(share, share_rule(b, q, beta, reserve), atol=1e-12)
    np.testing.assert_allclose(x, alpha.sum(1, keepdims=True) * share, atol=1e-12)
    # raising one bid never lowers its own expected attention, never raises others'
    i = 0
    up = b.copy()
    up[:, i] += raise_by
    x2, _, _ = m.expected(up, alpha, q)
    assert (x2[:, i] >= x[:, i] - 1e-12).all()
    assert (x2[:, 1:] <= x[:, 1:] + 1e-12).all()


@PROPS
@given(market(), st.sampled_from(NAMES))
def test_outcome_fields_are_consistent(mk, name):
    b, q, alpha, reserve, beta = mk
    out = make(name, beta, reserve=reserve, seed=3).clear(b, alpha, q)
    x, p = out.extra["expected_alloc"], out.extra["expected_pay"]
    total = alpha.sum(axis=1)
    # feasibility: no more attention than the answer has
    assert (out.alloc.sum(axis=1) <= total + 1e-12).all()
    np.testing.assert_allclose(out.pay, out.price * out.alloc, atol=1e-12)
    # ex-post IR: never more than the bid per unit won; payments >= 0
    assert (out.pay >= 0).all()
    assert (out.pay <= b * out.alloc * (1 + 1e-12) + 1e-15).all()
    assert (out.price[out.alloc > 0] >= reserve * (1 - 1e-12)).all()
    # expected: 0 <= P <= b x (IR in expectation)
    assert (p >= 0).all() and (p <= b * x + 1e-15).all()
    if name == "prominence_auction":
        np.testing.assert_allclose(out.alloc, x)
        np.testing.assert_allclose(out.pay, p)
    else:
        # every segment goes to someone eligible, or no one is eligible
        won = out.extra["segment_winner"]
        anyone = (out.extra["share"] > 0).any(axis=1)
        assert ((won >= 0).all(axis=1) == anyone).all()
        got = np.zeros_like(out.alloc)
        for r in range(b.shape[0]):
            for k, w in enumerate(won[r]):
                if w >= 0:
                    got[r, w] += alpha[r, k]
        np.testing.assert_allclose(out.alloc, got, atol=1e-12)


@pytest.mark.parametrize("name", NAMES)
def test_zero_bids_win_nothing_and_pay_nothing(name):
    b = np.array([[0.0, 0.7, 0.0], [0.0, 0.0, 0.0], [0.05, 0.3, 0.6]])
    out = make(name, reserve=0.1, seed=0).clear(b, weights=[0.5, 0.3, 0.2])
    # market 0: only buyer 1; market 1: no one; market 2: buyer 0 under the reserve
    zero = (b == 0) | (b < 0.1)
    assert (out.alloc[zero] == 0).all() and (out.pay[zero] == 0).all()
    assert (out.slot[zero] == -1).all()
    assert np.isnan(out.clearing_price[1])
    # a sole eligible advertiser takes the whole answer and pays the reserve per unit
    np.testing.assert_allclose(out.alloc[0], [0.0, 1.0, 0.0])
    np.testing.assert_allclose(out.pay[0], [0.0, 0.1, 0.0])


# --- payments ------------------------------------------------------------------


def test_phi_closed_form_matches_quadrature():
    for beta in (0.3, 0.5, 1.0, 1.5, 2.0, 3.0, 8.0):
        ys = np.array([1e-4, 0.01, 0.3, 1.0, 1.7, 10.0, 1e3])
        got = phi(ys, beta)
        for y, g in zip(ys, got, strict=True):
            want, _ = quad(
                lambda t, beta=beta: beta * t**beta / (1 + t**beta) ** 2,
                0,
                y,
                points=[1.0] if y > 1 else None,
                limit=200,
                epsabs=0,
                epsrel=1e-12,
            )
            assert g == pytest.approx(want, rel=1e-8), (beta, y)


def test_payments_match_myerson_identity_by_quadrature():
    rng = np.random.default_rng(7)
    for beta in BETAS:
        for reserve in (0.0, 0.2):
            m = mechanisms.make("prominence_auction", beta=beta, reserve=reserve)
            for _ in range(8):
                n = int(rng.integers(1, 5))
                b, q = rng.random(n), rng.uniform(0.1, 3.0, n)
                alpha = -np.sort(-rng.random(3))
                _, p, _ = m.expected(b[None], alpha, q[None])
                for i in range(n):
                    want = myerson_quad(b, q, alpha.sum(), beta, reserve, i)
                    assert p[0, i] == pytest.approx(want, rel=1e-7, abs=1e-12)


def test_segment_auction_is_prominence_with_beta_one():
    rng = np.random.default_rng(8)
    b, q = rng.random((200, 4)), rng.uniform(0.2, 2, (200, 4))
    alpha = -np.sort(-rng.random((200, 3)), axis=1)
    seg = mechanisms.make("segment_auction", reserve=0.1).expected(b, alpha, q)
    pro = mechanisms.make("prominence_auction", beta=1.0, reserve=0.1)
    for a, c in zip(seg, pro.expected(b, alpha, q), strict=True):
        np.testing.assert_allclose(a, c, rtol=1e-12, atol=1e-15)


def test_segment_auction_realised_mean_equals_expected():
    # the draws follow pi: mean attention and mean payment converge to x and P
    b = np.array([[0.9, 0.5, 0.2, 0.0]])
    q = np.array([[1.0, 2.0, 0.5, 1.0]])
    alpha = np.array([0.5, 0.3, 0.2])
    reps = 40_000
    m = mechanisms.make("segment_auction", reserve=0.1)
    out = m.clear(
        np.repeat(b, reps, 0),
        alpha,
        np.repeat(q, reps, 0),
        rng=np.random.default_rng(1),
    )
    x, p, _ = m.expected(b, alpha, q)
    se_x = out.alloc.std(axis=0) / np.sqrt(reps)
    se_p = out.pay.std(axis=0) / np.sqrt(reps)
    assert (np.abs(out.alloc.mean(axis=0) - x[0]) <= 4 * se_x + 1e-12).all()
    assert (np.abs(out.pay.mean(axis=0) - p[0]) <= 4 * se_p + 1e-12).all()


# --- truthfulness -----------------------------------------------------------------


def best_gain(m, values, q, alpha, grid):
    """Largest gain in exact expected utility over truthful bidding that any
    single deviation on ``grid`` (multiples of the value) finds, ``[B]``."""
    x, p, _ = m.expected(values, alpha, q)
    truthful = values * x - p
    big_b, n = values.shape
    gain = np.full(big_b, -np.inf)
    for i in range(n):
        for f in grid:
            dev = values.copy()
            dev[:, i] = values[:, i] * f
            xd, pd, _ = m.expected(dev, alpha, q)
            gain = np.maximum(gain, values[:, i] * xd[:, i] - pd[:, i] - truthful[:, i])
    return gain, truthful


@pytest.mark.parametrize("name", NAMES)
def test_truthful_bidding_is_a_best_response_on_1000_instances(name):
    rng = np.random.default_rng(11)
    grid = np.concatenate([np.linspace(0.0, 2.0, 41), [0.999, 1.001, 3.0, 10.0]])
    worst = 0.0
    for beta in (0.5, 1.0, 2.0, 4.0) if name == "prominence_auction" else (1.0,):
        m = make(name, beta, reserve=0.05)
        values = rng.random((1000, 4))
        q = rng.uniform(0.2, 2.0, (1000, 4))
        alpha = -np.sort(-rng.random((1000, 3)), axis=1)
        gain, truthful = best_gain(m, values, q, alpha, grid)
        assert (truthful >= -1e-12).all()  # IR in expectation
        worst = max(worst, float(gain.max()))
    assert worst <= 1e-9  # Myerson payments: no deviation gains at all


def test_pay_your_bid_share_rule_is_not_truthful():
    # the search above can fail: charging the bid (P = b x) invites shading
    class PayBid(type(mechanisms.make("prominence_auction"))):
        def _expected(self, b, total, q):
            x, _, share = super()._expected(b, total, q)
            return x, b * x, share

    rng = np.random.default_rng(12)
    values = rng.random((200, 3))
    q = np.ones_like(values)
    gain, _ = best_gain(PayBid(beta=1.0), values, q, np.ones(2), np.linspace(0, 1, 21))
    assert gain.max() > 0.01


# --- bad input ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"beta": 0.0}, r"beta must be a finite number > 0 and <= 64, got 0"),
        ({"beta": -1.0}, r"beta must be .*got -1"),
        ({"beta": float("nan")}, r"beta must be .*got nan"),
        ({"beta": True}, r"beta must be .*got true"),
        ({"beta": 100}, r"beta must be .*<= 64, got 100"),
        ({"n_slots": 0}, r"n_slots must be an integer >= 1, got 0"),
        ({"reserve": -0.1}, "reserve must be"),
        ({"gamma": 1}, r"unknown parameter\(s\) gamma"),
    ],
)
def test_bad_parameters_are_one_line_config_errors(params, match):
    with pytest.raises(ConfigError, match=match) as err:
        mechanisms.make("prominence_auction", **params)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize(
    ("args", "match"),
    [
        (([[0.5, -0.1]],), r"bids must be >= 0, got -0.1 at index \(0, 1\)"),
        (([[0.5, np.nan]],), r"bids must be finite, got nan"),
        (([0.5, 0.2],), r"bids must have shape \[B, n\].*batch axis"),
        (([[0.5, 0.2]], [0.1, 0.3]), r"weights must be sorted descending"),
        (([[0.5, 0.2]], [1.0], [[1.0, 0.0]]), r"quality must be > 0, got 0.0"),
        (([[0.5, 0.2]], [1.0], [[1.0]]), r"quality must have the shape of bids"),
    ],
)
def test_bad_inputs_are_one_line_user_errors(name, args, match):
    with pytest.raises(UserError, match=match) as err:
        mechanisms.make(name).clear(*args)
    assert "\n" not in str(err.value)


def test_rng_must_be_a_generator():
    with pytest.raises(UserError, match=r"rng must be a numpy\.random\.Generator"):
        mechanisms.make("segment_auction").clear([[0.5]], rng=3)


def test_registered_as_one_sided():
    for name in NAMES:
        assert mechanisms.family(name) == "one_sided"
        assert name in mechanisms.names_of_family("one_sided")
    assert mechanisms.parameters("prominence_auction")["beta"] == 2.0


# --- the answer_slots scenario ---------------------------------------------------


def test_answer_slots_scenario_runs_and_is_consistent():
    import yaml

    from attn_env.config import from_dict
    from attn_env.scenarios import scenario_module

    mod = scenario_module("answer_slots")
    path = "configs/scenarios/answer_slots.yaml"
    with open(path, encoding="utf-8") as fh:
        data = yaml.safe_load(fh)
    cfg = from_dict(mod.CONFIG, {**data, "markets": 3000, "quality_weights": [0.0, 50]})
    res = mod.simulate(cfg)
    q0 = res["organic_quality"]["mean"]
    for row in res["rows"]:
        assert row["revenue"]["mean"] >= 0
        # truthful bidders are individually rational in every mechanism
        assert row["advertiser_utility"]["mean"] >= -1e-12
        assert 0.0 <= row["sponsored_share"]["mean"] <= 1.0 + 1e-12
        if row["quality_weight"] == 50:
            # organic content outbids every ad: the organic answer, no revenue
            assert row["sponsored_share"]["mean"] < 0.02
            assert row["quality"]["mean"] == pytest.approx(q0, abs=0.01)
        else:
            # organic content bids 0: share rules give every unit to an ad
            if row["mechanism"] != "gsp":
                assert row["sponsored_share"]["mean"] == pytest.approx(1.0)
            # ads are drawn from the less relevant candidates: quality falls
            assert row["quality"]["mean"] < q0
    with pytest.raises(ConfigError, match="unknown key 'bogus'"):
        from_dict(mod.CONFIG, {"bogus": 1}, "answer_slots")
    with pytest.raises(ConfigError, match="mechanisms must be"):
        mod.simulate(from_dict(mod.CONFIG, {"mechanisms": ["vcg"]}))

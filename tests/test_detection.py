"""Detectors of manipulation: hand-made tables, planted attacks, precision/recall."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from attn_env.config import ExperimentConfig, from_dict
from attn_env.integrity.detect import (
    collusion_index,
    exposure_pvalues,
    precision_recall,
    price_benchmarks,
    relevance_ks,
    shill_scores,
)
from runner.attacks import record
from runner.audit_report import collusion_reading


def test_collusion_index_by_hand():
    competitive = np.array([0.6, 0.4, 0.5, 0.7])
    assert collusion_index(competitive, competitive) == pytest.approx(0.0)
    assert collusion_index(np.full(4, 0.1), competitive, 0.1) == pytest.approx(1.0)
    # half way between competitive (mean 0.55) and collusive (0.05): 0.5
    half = np.array([0.3, 0.3, 0.3, np.nan])  # the unsold round is left out
    assert collusion_index(half, competitive, 0.0) == pytest.approx((0.5 - 0.3) / 0.5)
    assert math.isnan(collusion_index(np.full(4, np.nan), competitive))


_unit = st.floats(0.0, 1.0)


@given(
    rows=st.lists(st.tuples(_unit, _unit, st.booleans()), min_size=1, max_size=30),
    reserve=st.floats(0.0, 0.5),
)
@settings(max_examples=100, deadline=None)
def test_index_is_negative_exactly_when_prices_exceed_competitive(rows, reserve):
    # prices never under the reserve (it is enforced); competitive above it
    price = np.array(
        [reserve + p * (1 - reserve) if sold else np.nan for p, _, sold in rows]
    )
    comp = np.array([reserve + c * (1 - reserve) for _, c, _ in rows])
    b = price_benchmarks(price, comp, reserve)
    sold = np.isfinite(price)
    if not sold.any():
        assert all(math.isnan(v) for v in b.values())
        return
    p, c = price[sold].mean(), comp[sold].mean()
    assert b["price"] == pytest.approx(p) and b["competitive"] == pytest.approx(c)
    assert b["collusive"] == pytest.approx(reserve)
    if c - reserve <= 1e-12:
        assert math.isnan(b["index"])
        return
    assert b["index"] == pytest.approx((c - p) / (c - reserve))
    assert b["index"] == collusion_index(price, comp, reserve)
    assert b["index"] <= 1.0 + 1e-12  # an enforced reserve bounds it above
    if abs(p - c) > 1e-9:
        assert (b["index"] < 0) == (p > c)
    if b["index"] < 0:
        assert "lies above C" in collusion_reading(_section(b))
    else:
        assert "of the way from C" in collusion_reading(_section(b))


def _section(b: dict) -> dict:
    """A detection section as the audit report holds it."""
    return {
        "collusion_index": b["index"],
        "mean_price": b["price"],
        "competitive_price": b["competitive"],
        "collusive_price": b["collusive"],
    }


def test_collusion_reading_by_hand():
    # truthful GSP's prices over the competitive benchmark: index -0.4
    text = collusion_reading(_section(price_benchmarks([0.7], [0.5], 0.0)))
    assert "negative above C (no lower bound)" in text
    assert "P = 0.7000 lies above C = 0.5000 by 0.2000, 0.40 x (C - K)" in text
    assert "not collusion" in text
    text = collusion_reading(_section(price_benchmarks([0.3], [0.5], 0.1)))
    assert "P = 0.3000 lies 0.50 of the way from C = 0.5000 down to K = 0.1000" in text
    assert "nothing sold" in collusion_reading(
        {"collusion_index": None, "mean_price": None}
    )
    flat = _section(price_benchmarks([0.2], [0.2], 0.2))
    flat["collusion_index"] = None  # as the JSON report holds nan
    assert "C = K = 0.2000" in collusion_reading(flat)


def test_shill_scores_by_hand():
    # one market, two rounds, three bidders; second price
    bids = np.array([[0.8, 0.76, 0.3], [0.6, 0.57, 0.5]])
    alloc = np.array([[1.0, 0.0, 0.0], [1.0, 0.0, 0.0]])
    pay = np.array([[0.76, 0.0, 0.0], [0.57, 0.0, 0.0]])
    s = shill_scores(bids, pay, alloc)
    # bidder 1 set the winner's price within 10% of its bid in both rounds
    np.testing.assert_allclose(s, [0.0, 1.0, 0.0])
    # a looser shadow only counts at a lower closeness
    pay2 = np.array([[0.3, 0.0, 0.0], [0.5, 0.0, 0.0]])
    b2 = bids.copy()
    b2[:, 1] = 0.0
    np.testing.assert_allclose(shill_scores(b2, pay2, alloc), [0.0, 0.0, 0.0])
    np.testing.assert_allclose(
        shill_scores(b2, pay2, alloc, closeness=0.3), [0.0, 0.0, 1.0]
    )


def test_detectors_flag_a_planted_shill_and_not_truthful_bidders():
    cfg = from_dict(
        ExperimentConfig,
        {
            "seed": 3,
            "env": {
                "mechanism": "second_price",
                "n_buyers": 4,
                "rounds": 5,
                "redraw": "episode",
            },
            "agents": {"buyer_3": {"kind": "shill"}},
        },
    )
    rec = record(cfg, markets=8, episodes=10)
    s = shill_scores(rec["bid"], rec["payment"], rec["alloc"])  # [8, 4]
    assert (s[:, 3] > 0.6).all()  # shadows from the second round of each episode
    assert (s[:, :3] < 0.3).all()
    flags = s > 0.5
    pr = precision_recall(np.arange(4) == 3, flags[0])
    assert pr["precision"] == 1.0 and pr["recall"] == 1.0


def test_fake_traffic_tests_flag_the_boosted_ad():
    rng = np.random.default_rng(0)
    reference = rng.beta(2, 5, size=5000)
    r = rng.beta(2, 5, size=(300, 4))
    r[:, 2] *= 1.5
    p = relevance_ks(r, reference)
    assert p[2] < 1e-6 and (np.delete(p, 2) > 1e-3).all()
    alloc = (rng.random((400, 4)) < 0.25).astype(float)
    alloc[:, 1] = rng.random(400) < 0.5
    q = exposure_pvalues(alloc)
    assert q[1] < 1e-6 and (np.delete(q, 1) > 1e-3).all()


def test_precision_recall_on_a_hand_labelled_toy_set():
    labels = [True, True, False, False, True, False]
    flags = [True, False, True, False, True, False]
    pr = precision_recall(labels, flags)
    assert (pr["tp"], pr["fp"], pr["fn"], pr["tn"]) == (2, 1, 1, 2)
    assert pr["precision"] == pytest.approx(2 / 3)
    assert pr["recall"] == pytest.approx(2 / 3)
    assert pr["f1"] == pytest.approx(2 / 3)
    none = precision_recall([True, False], [False, False])
    assert math.isnan(none["precision"]) and none["recall"] == 0.0
    with pytest.raises(ValueError, match="labels and flags must have one size"):
        precision_recall([True], [True, False])


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.booleans()), min_size=1, max_size=40))
def test_precision_recall_counts_every_unit_once(pairs):
    y, f = map(list, zip(*pairs, strict=True))
    pr = precision_recall(y, f)
    assert pr["tp"] + pr["fp"] + pr["fn"] + pr["tn"] == len(pairs)
    if pr["tp"] + pr["fp"]:
        assert pr["precision"] == pytest.approx(pr["tp"] / (pr["tp"] + pr["fp"]))
    if any(y):
        assert pr["recall"] == pytest.approx(pr["tp"] / sum(y))


def test_detector_errors_name_the_bad_input():
    with pytest.raises(ValueError, match="closeness must be in"):
        shill_scores(np.zeros((2, 2)), np.zeros((2, 2)), np.zeros((2, 2)), 0.0)
    with pytest.raises(ValueError, match="share one"):
        shill_scores(np.zeros((2, 2)), np.zeros((2, 3)), np.zeros((2, 2)))
    with pytest.raises(ValueError, match="alloc must be"):
        exposure_pvalues(np.zeros(3))

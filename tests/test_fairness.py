"""Exposure fairness: Gini closed forms, Singh–Joachims ratios, the exposure floor."""

from __future__ import annotations

import numpy as np
import pytest

import attn_env
from attn_env.integrity.fairness import (
    disparity,
    exposure_merit_gap,
    fairness_report,
    group_means,
)
from attn_env.mechanisms.exposure_floor import check_floor, promote
from attn_env.metrics import gini


@pytest.mark.parametrize("n", [1, 2, 5, 17])
def test_gini_closed_forms(n):
    assert gini(np.full(n, 3.0)) == pytest.approx(0.0)
    one = np.zeros(n)
    one[-1] = 2.0
    assert gini(one) == pytest.approx((n - 1) / n)


def test_singh_joachims_ratios_on_a_hand_made_ranking():
    # Two groups of two ads each; a 3-slot page with position bias 1/2, 1/3, 1/6
    # ranks G0's ads first. Merit (relevance): G0 = 0.8, 0.6; G1 = 0.4, 0.2.
    alloc = np.array([[1 / 2, 1 / 3, 1 / 6, 0.0]])
    merit = np.array([[0.8, 0.6, 0.4, 0.2]])
    group = np.array([[0, 0, 1, 1]])
    m = group_means(alloc, merit, group, 2)
    # E(G0) = (1/2 + 1/3) / 2 = 5/12, E(G1) = 1/12; U(G0) = 0.7, U(G1) = 0.3
    assert m["exposure"] == pytest.approx([5 / 12, 1 / 12])
    assert m["merit"] == pytest.approx([0.7, 0.3])
    # C(G0) = (0.4 + 0.2) / 2 = 0.3, C(G1) = (1/15) / 2 = 1/30
    assert m["impact"] == pytest.approx([0.3, 1 / 30])
    d = disparity(m)
    assert d["demographic_parity"] == pytest.approx(1 / 5)
    # E/U: G0 = (5/12)/0.7 = 25/42, G1 = (1/12)/0.3 = 5/18; ratio = 7/15
    assert d["disparate_treatment"] == pytest.approx((5 / 18) / (25 / 42))
    # C/U: G0 = 3/7, G1 = 1/9
    assert d["disparate_impact"] == pytest.approx((1 / 9) / (3 / 7))


def test_parity_when_attention_follows_merit():
    merit = np.array([[0.6, 0.3, 0.1]])
    alloc = merit.copy()
    seat = np.array([[0, 1, 2]])
    d = disparity(group_means(alloc, merit, seat, 3))
    assert d["disparate_treatment"] == pytest.approx(1.0)
    assert exposure_merit_gap(alloc, merit) == pytest.approx(0.0)
    # all attention to the least deserving: TV distance 1 - 0.1 = 0.9
    assert exposure_merit_gap([[0, 0, 1.0]], merit) == pytest.approx(0.9)


def test_fairness_report_by_bidder_and_group():
    alloc = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    merit = np.ones((3, 2))
    util = np.array([[0.5, 0.0], [0.0, 0.1], [0.4, 0.0]])
    group = np.array([[0, 1], [0, 1], [1, 0]])
    r = fairness_report(alloc, merit, util, ["a", "b"], group, ["shoes", "travel"])
    assert r["by_bidder"]["a"]["exposure_share"] == pytest.approx(2 / 3)
    assert r["gini_attention"] == pytest.approx(gini([2.0, 1.0]))
    assert r["gini_surplus"] == pytest.approx(gini([0.9, 0.1]))
    shoes = r["by_group"]["shoes"]
    assert shoes["ads"] == 3 and shoes["exposure"] == pytest.approx(1 / 3)
    assert r["group_disparity"]["demographic_parity"] == pytest.approx(0.5)


def test_fairness_bad_input():
    with pytest.raises(ValueError, match="merit must have shape"):
        fairness_report(np.ones((2, 2)), np.ones((2, 3)), np.ones((2, 2)), "ab")
    with pytest.raises(ValueError, match="names must name the 2 buyers"):
        fairness_report(np.ones((2, 2)), np.ones((2, 2)), np.ones((2, 2)), ["a"])
    with pytest.raises(ValueError, match=r"group labels must be in \[-1, 1\]"):
        group_means(np.ones((1, 2)), np.ones((1, 2)), np.array([[0, 2]]), 2)


# -- the exposure floor --------------------------------------------------------
def _shares(floor, episodes=20_000, mechanism="gsp", n=4, k=2, seed=0):
    """Each buyer's mean share of the page's attention; buyer_3 always bids 0."""
    env = attn_env.vector_env(
        episodes, mechanism=mechanism, n_buyers=n, n_slots=k, exposure_floor=floor
    )
    obs, _ = env.reset(seed=seed)
    bids = obs[:, :, :1].copy()
    bids[:, n - 1] = 0.0
    _, _, _, _, info = env.step(bids)
    page = info["alpha"][:, : min(n, k)].sum(axis=1, keepdims=True)
    return info["alloc"] / page, info


@pytest.mark.parametrize("mechanism", ["gsp", "vcg", "first_price", "assignment"])
@pytest.mark.parametrize("floor", [0.05, 0.2])
def test_exposure_floor_met_in_expectation(mechanism, floor):
    share, _ = _shares(floor, mechanism=mechanism)
    mean = share.mean(axis=0)
    se = share.std(axis=0, ddof=1) / np.sqrt(share.shape[0])
    # the zero bidder wins only through the lottery: its share is the floor
    assert abs(mean[-1] - floor) < 4 * se[-1]
    assert np.all(mean > floor - 4 * se)


def test_floor_zero_is_the_market_without_the_option():
    _, info0 = _shares(0.0, episodes=500)
    env = attn_env.vector_env(500, mechanism="gsp", n_buyers=4, n_slots=2)
    obs, _ = env.reset(seed=0)
    bids = obs[:, :, :1].copy()
    bids[:, 3] = 0.0
    _, _, _, _, info = env.step(bids)
    for key in ("alloc", "payment", "slot", "clearing_price"):
        np.testing.assert_array_equal(info[key], info0[key])
    assert "lottery" not in info0


def test_floor_one_over_n_is_a_pure_free_lottery():
    share, info = _shares(0.25, episodes=2000)
    assert info["lottery"].all() and info["payment"].sum() == 0.0
    assert share.mean(axis=0) == pytest.approx(np.full(4, 0.25), abs=0.03)


def test_promote_keeps_the_outcome_of_auction_markets():
    out = attn_env.mechanisms.make("gsp").clear(
        np.array([[0.9, 0.5, 0.1]] * 64), weights=np.array([0.7, 0.3])
    )
    new = promote(out, np.tile([0.7, 0.3], (64, 1)), 0.1, np.random.default_rng(1))
    keep = ~new.extra["lottery"]
    assert 0 < keep.sum() < 64
    np.testing.assert_array_equal(new.pay[keep], out.pay[keep])
    assert (new.pay[~keep] == 0).all()
    np.testing.assert_allclose(new.alloc[~keep].sum(axis=1), 1.0)


@pytest.mark.parametrize(
    ("option", "match"),
    [
        (
            {"exposure_floor": 0.3},
            r"exposure_floor must be a number in \[0, 1/n_buyers\]",
        ),
        ({"exposure_floor": -0.1}, r"exposure_floor must be a .*number.*got -0\.1"),
        (
            {"exposure_floor": float("nan")},
            r"exposure_floor must be a .*number.*got nan",
        ),
        (
            {"exposure_floor": 0.1, "mechanism": "cda", "n_sellers": 4},
            "exposure_floor must be 0 in a two-sided market",
        ),
        ({"exposure_flor": 0.1}, "unknown environment option"),
    ],
)
def test_bad_floor_is_one_line(option, match):
    with pytest.raises(ValueError, match=match) as err:
        attn_env.vector_env(2, **{"mechanism": "gsp", "n_buyers": 4, **option})
    assert "\n" not in str(err.value)


def test_check_floor_accepts_the_bounds():
    assert check_floor(0, 4) == 0.0
    assert check_floor(0.25, 4) == 0.25


# -- verticals: the attention source labels each buyer's ad ------------------------
def _fake_bank(folder, corpus_hash: str, q: int = 5, c: int = 8, k: int = 3):
    """A bank folder of random arrays whose candidates index the shipped corpus."""
    import json

    from attn_env.valuations.bank_settings import FORMAT_VERSION

    rng = np.random.default_rng(0)
    alpha = np.zeros((q, 2, k, k), np.float32)
    for j in range(k):
        alpha[:, :, j, : j + 1] = np.sort(rng.dirichlet(np.ones(j + 1)))[::-1]
    arrays = {
        "queries": np.arange(q, dtype=np.int32),
        "candidates": rng.integers(0, 3000, (q, c)).astype(np.int32),
        "own": rng.random((q, c)) < 0.25,
        "relevance_raw": rng.random((q, c)).astype(np.float32),
        "page_candidates": np.zeros((q, 2, k), np.int32),
        "alpha": alpha,
    }
    for name, a in arrays.items():
        np.save(folder / f"{name}.npy", a)
    manifest = {"format": FORMAT_VERSION, "corpus_hash": corpus_hash}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return arrays["candidates"]


def test_attention_draws_carry_the_ads_verticals(tmp_path):
    from attn_env.valuations import make_source
    from attn_env.valuations.bank import load_corpus

    corpus = load_corpus(None)
    cands = _fake_bank(tmp_path, corpus.content_hash)
    src = make_source("attention", bank_path=str(tmp_path))
    assert src.group_names == tuple(sorted(set(corpus.cand_verticals)))
    env = attn_env.vector_env(
        64,
        mechanism="gsp",
        n_buyers=4,
        n_slots=3,
        valuation="attention",
        valuation_params={"bank_path": str(tmp_path)},
    )
    env.reset(seed=0)
    _, _, _, _, info = env.step(np.ones((64, 4)))
    group = info["group"]
    assert group.shape == (64, 4) and group.min() >= 0
    # every label is the vertical of some candidate the bank holds
    held = {src.group_names.index(corpus.cand_verticals[i]) for i in cands.ravel()}
    assert set(np.unique(group)) <= held
    # a bank of another corpus: no labels, and no group in the infos
    _fake_bank(tmp_path, "another corpus")
    assert make_source("attention", bank_path=str(tmp_path)).group_names == ()


def test_attention_draws_label_on_topic_ads(tmp_path):
    from attn_env.valuations import make_source
    from attn_env.valuations.bank import load_corpus

    _fake_bank(tmp_path, load_corpus(None).content_hash)
    src = make_source("attention", bank_path=str(tmp_path), groups="on_topic")
    assert src.group_names == ("off_topic", "on_topic")
    d = src.draw(np.random.default_rng(0), 500, 4, 2)
    own = np.load(tmp_path / "own.npy")
    # each label is the bank's own-vertical flag of some (query, candidate)
    assert set(np.unique(d.group)) == {0, 1}
    assert abs(d.group.mean() - own.mean()) < 0.1
    with pytest.raises(ValueError, match="groups must be one of vertical, on_topic"):
        make_source("attention", bank_path=str(tmp_path), groups="topic")

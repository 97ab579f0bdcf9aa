"""Attacks (shill, ring, fake traffic, wash) and their damage, on common random
numbers."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import agents
from attn_env import mechanisms
from attn_env.config import ExperimentConfig, from_dict, make_config
from attn_env.integrity.defences import LEVELS, hardened
from attn_env.valuations import make_source
from attn_env.valuations.fake_traffic import FakeTrafficSource, true_draw
from runner.attacks import attack_damage, defend, scenario


def _config(env, agents_=None, seed=0) -> ExperimentConfig:
    return from_dict(
        ExperimentConfig, {"seed": seed, "env": env, "agents": agents_ or {}}
    )


SHILL = _config(
    {"mechanism": "second_price", "n_buyers": 3, "rounds": 5, "redraw": "episode"}
)


def test_shill_hand_made_case_raises_the_winners_price():
    # bids 0.8, 0.5 last round; the shill bids 0.95 * 0.8 = 0.76 next round
    shill = agents.make("shill", margin=0.95, redraw="round")
    shill.reset(1, np.random.default_rng(0))
    shill.observe(
        {
            "bids": np.array([[0.8, 0.5, 0.0]]),
            "own_action": np.array([0.0]),
            "clearing_price": np.array([0.5]),
        }
    )
    obs = np.zeros((1, 8), dtype=np.float32)
    bid = float(shill.act(obs, np.random.default_rng(0))[0, 0])
    assert bid == pytest.approx(0.76, rel=1e-6)
    m = mechanisms.make("second_price")
    clean = m.clear(np.array([[0.8, 0.5, 0.0]]))
    shilled = m.clear(np.array([[0.8, 0.5, bid]]))
    assert clean.pay[0, 0] == pytest.approx(0.5)
    assert shilled.pay[0, 0] == pytest.approx(0.76, rel=1e-6)  # winner pays more
    assert shilled.alloc[0, 0] == 1.0  # and still wins: no welfare lost


def test_shill_damage_on_common_random_numbers():
    r = attack_damage(SHILL, "shill", episodes=400)
    assert r["crn"] == 1.0  # both markets drew the same honest values
    d = r["damage"]
    assert d["revenue"]["ci_low"] > 0  # revenue up
    assert d["honest_utility"]["ci_high"] < 0  # buyers' utility down
    assert d["efficiency"]["diff"] == pytest.approx(0.0, abs=1e-12)
    # the shill never wins: revenue gained is exactly utility lost
    assert d["revenue"]["diff"] == pytest.approx(-d["honest_utility"]["diff"])
    assert r["clean"]["revenue"] > 0


def test_ring_lowers_revenue():
    r = attack_damage(
        _config({"mechanism": "second_price", "n_buyers": 4}),
        {"name": "ring", "members": [0, 1, 2]},
        episodes=2000,
    )
    assert r["crn"] == 1.0
    assert r["damage"]["revenue"]["ci_high"] < 0
    assert r["attacked"]["ring_utility"] > r["clean"]["ring_utility"]


@pytest.mark.parametrize("mech", ["k_double", "mcafee"])
def test_wash_trades_keep_budget_balance_accounting(mech):
    r = attack_damage(_config({"mechanism": mech, "n_buyers": 4}), "wash", episodes=300)
    att = r["attacked"]
    # honest buyers' payments - honest sellers' receipts = the mechanism's surplus
    # + what the wash pair put in (its sellers' receipts - its buyers' payments)
    surplus = att["budget_surplus"] - att["attacker_net"]
    if mech == "k_double":  # budget balanced: the pair's money is all there is
        assert surplus == pytest.approx(0.0, abs=1e-9)
    else:  # McAfee never runs a deficit
        assert surplus >= -1e-12
    assert r["clean"]["attacker_net"] == 0.0  # empty seats never trade
    assert att["attacker_net"] < 0  # the pair pays to print its price
    assert r["damage"]["mean_clearing_price"]["diff"] > 0


@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(2, 6),
    data=st.data(),
    boost=st.floats(0.5, 3.0),
    seed=st.integers(0, 2**16),
)
def test_fake_traffic_changes_only_the_targeted_ads(n, data, boost, seed):
    ads = data.draw(st.lists(st.integers(0, n - 1), min_size=1, unique=True))
    inner = make_source("uniform")
    fake = FakeTrafficSource(inner, ads=ads, boost=boost)
    d0 = inner.draw(np.random.default_rng(seed), 5, n, 2)
    d1 = fake.draw(np.random.default_rng(seed), 5, n, 2)
    hit = np.isin(np.arange(n), ads)
    np.testing.assert_array_equal(d1.theta, d0.theta)
    np.testing.assert_array_equal(d1.alpha, d0.alpha)
    np.testing.assert_allclose(d1.relevance[:, hit], boost * d0.relevance[:, hit])
    np.testing.assert_array_equal(d1.relevance[:, ~hit], d0.relevance[:, ~hit])
    r, _ = true_draw(fake.spec, d1.relevance, d1.alpha)
    np.testing.assert_allclose(r, d0.relevance)
    # on alpha: every slot inflated, r untouched
    fa = FakeTrafficSource(inner, target="alpha", boost=boost)
    d2 = fa.draw(np.random.default_rng(seed), 5, n, 2)
    np.testing.assert_allclose(d2.alpha, boost * d0.alpha)
    np.testing.assert_array_equal(d2.relevance, d0.relevance)


def test_fake_traffic_keeps_the_inner_groups():
    """Fairness by vertical still works under bots: labels and names pass through."""

    class Labelled:
        name = "labelled"
        group_names = ("shoes", "travel")

        def draw(self, rng, batch, n_buyers, n_slots):
            d = make_source("uniform").draw(rng, batch, n_buyers, n_slots)
            group = np.tile(np.arange(n_buyers) % 2, (batch, 1))
            return dataclasses.replace(d, group=group)

    fake = FakeTrafficSource(Labelled(), ads=[0], boost=2.0)
    assert fake.group_names == ("shoes", "travel")
    d = fake.draw(np.random.default_rng(0), 3, 4, 2)
    np.testing.assert_array_equal(d.group, [[0, 1, 0, 1]] * 3)
    assert FakeTrafficSource(make_source("uniform"), ads=[0]).group_names == ()


def test_fake_traffic_through_the_env_config():
    cfg = make_config(
        mechanism="gsp",
        n_buyers=4,
        n_slots=2,
        valuation_params={"fake_traffic": {"share": 0.5, "boost": 2.0}},
    )
    assert cfg.valuation_params["fake_traffic"]["share"] == 0.5
    r = attack_damage(
        _config({"mechanism": "gsp", "n_buyers": 4, "n_slots": 2}),
        {"name": "fake_traffic", "ads": [0], "boost": 2.0},
        episodes=500,
    )
    assert r["crn"] == 1.0
    assert r["damage"]["honest_utility"]["ci_high"] < 0  # bidders overpay
    assert r["damage"]["efficiency"]["ci_high"] < 0  # the wrong ad wins


def test_random_reserve_draws_a_level_per_market():
    m = hardened("second_price", {}, seed=0, random_reserve=(0.0, 0.4))
    bids = np.tile([1.0, 0.0], (400, 1))  # the price is the reserve
    out = m.clear(bids, rng=np.random.default_rng(1))
    levels = 0.4 * (np.arange(LEVELS) + 0.5) / LEVELS
    assert set(np.round(out.pay[:, 0], 12)) == set(np.round(levels, 12))
    # the env's generator is never used: ties are broken by the mechanism's own
    rng = np.random.default_rng(5)
    state = rng.bit_generator.state
    hardened("gsp", {}, seed=0).clear(np.zeros((3, 3)), rng=rng)
    assert rng.bit_generator.state == state


def test_defences_apply_to_both_markets():
    cfg, rr = defend(SHILL, {"name": "reserve", "reserve": 0.3})
    assert cfg.env.mechanism_params["reserve"] == 0.3 and rr is None
    _, rr = defend(SHILL, "random_reserve")
    assert rr == (0.0, 0.5)
    cfg, _ = defend(
        _config({"mechanism": "k_double", "n_buyers": 3}), "trade_reduction"
    )
    assert cfg.env.mechanism == "mcafee"
    r = attack_damage(SHILL, "shill", episodes=200, defence="reserve")
    assert r["defence"] == "reserve" and r["crn"] == 1.0


@pytest.mark.parametrize(
    ("config", "attack", "defence", "message"),
    [
        (SHILL, "bribe", None, "unknown attack 'bribe'; known: shill, ring"),
        (
            _config({"mechanism": "first_price"}),
            "shill",
            None,
            "attack 'shill' does not support mechanism 'first_price'; "
            "supported: second_price, gsp, vcg",
        ),
        (
            _config({"mechanism": "second_price"}),
            "wash",
            None,
            "attack 'wash' does not support mechanism 'second_price'; "
            "supported: k_double",
        ),
        (
            SHILL,
            {"name": "shill", "gain": 1},
            None,
            "no parameter 'gain'; known: margin",
        ),
        (SHILL, {"name": "ring", "members": [0]}, None, "ring members must be"),
        (SHILL, {"name": "fake_traffic", "boost": -1}, None, "boost must be"),
        (SHILL, "shill", "moat", "unknown defence 'moat'; known: none, reserve"),
        (SHILL, "shill", "trade_reduction", "defence 'trade_reduction' replaces"),
        (SHILL, ["shill"], None, "attack must be a name or a mapping"),
    ],
)
def test_errors_name_the_attack_and_the_supported_ones(
    config, attack, defence, message
):
    with pytest.raises(ValueError, match=None) as err:
        attack_damage(config, attack, episodes=10, defence=defence)
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_scenario_adds_empty_seats_to_the_clean_market():
    s = scenario(_config({"mechanism": "cda", "n_buyers": 3}), {"name": "wash"})
    assert s.clean.env.n_buyers == s.attacked.env.n_buyers == 4
    assert s.clean.env.n_sellers == 4
    assert s.clean.agent_spec("seller_3").kind == "absent"
    assert s.attacked.agent_spec("buyer_3").kind == "wash"
    assert s.fake == (3, 7)

"""Economics and dynamics of the attention market through the environment."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from attn_env import mechanisms, parallel_env, vector_env
from attn_env.config import make_config
from attn_env.core import MarketCore
from attn_env.metrics import optimal_welfare


def truthful(obs: np.ndarray) -> np.ndarray:
    return obs[..., :1].copy()


def mc_mean(x: np.ndarray) -> tuple[float, float]:
    return float(x.mean()), float(x.std(ddof=1) / np.sqrt(x.size))


def test_first_price_bne_rewards_through_the_env():
    # First price, n = 3, BNE b(v) = 2v/3 (revenue: test_simulate): the winner's
    # utility is v - 2v/3 = v/3, everybody else's 0.
    v = vector_env(2_000, mechanism="first_price", n_buyers=3)
    obs, _ = v.reset(seed=1)
    _, rew, _, _, info = v.step(truthful(obs) * 2 / 3)
    np.testing.assert_allclose(
        rew.sum(axis=1), info["value"].max(axis=1) / 3, atol=1e-6
    )


@pytest.mark.parametrize(
    ("name", "kw"),
    [
        ("first_price", {"n_slots": 3}),
        ("gsp", {"n_slots": 3}),
        ("vcg", {"n_slots": 3}),
        ("assignment", {"n_slots": 3}),
        ("k_double", {"n_sellers": 4}),
        ("call_market", {"n_sellers": 4}),
    ],
)
def test_truthful_efficient_mechanisms_reach_first_best(name, kw):
    v = vector_env(500, mechanism=name, n_buyers=5, **kw)
    obs, _ = v.reset(seed=2)
    _, _, _, _, info = v.step(truthful(obs))
    eff = info["metrics"]["efficiency"]
    ok = ~np.isnan(eff)
    assert ok.sum() > 400
    np.testing.assert_allclose(eff[ok], 1.0, atol=1e-9)


def test_mcafee_runs_no_deficit_and_loses_at_most_one_trade():
    v = vector_env(2000, mechanism="mcafee", n_buyers=5, n_sellers=5)
    obs, _ = v.reset(seed=3)
    _, _, _, _, info = v.step(truthful(obs))
    ep = info["metrics"]
    assert (ep["budget_surplus"] >= -1e-12).all()
    assert (ep["welfare"] <= ep["optimal_welfare"] + 1e-12).all()
    # rewards are utilities: sum of utilities + surplus = welfare
    np.testing.assert_allclose(
        info["utility"].sum(axis=1) + ep["budget_surplus"], ep["welfare"], atol=1e-9
    )


def test_optimum_matches_brute_force():
    rng = np.random.default_rng(0)
    v = rng.uniform(size=(20, 4))
    alpha = -np.sort(-rng.uniform(size=(20, 3)), axis=1)
    brute = [
        max(
            sum(v[b, p[j]] * alpha[b, j] for j in range(3))
            for p in itertools.permutations(range(4), 3)
        )
        for b in range(20)
    ]
    np.testing.assert_allclose(optimal_welfare(v, alpha=alpha), brute)
    np.testing.assert_allclose(
        optimal_welfare(v, alpha=alpha[:, :1]), v.max(1) * alpha[:, 0]
    )
    c = rng.uniform(size=(20, 3))
    brute2 = []
    for b in range(20):
        best = 0.0
        for k in range(4):
            for buyers in itertools.combinations(range(4), k):
                for sellers in itertools.combinations(range(3), k):
                    best = max(
                        best, v[b, list(buyers)].sum() - c[b, list(sellers)].sum()
                    )
        brute2.append(best)
    np.testing.assert_allclose(optimal_welfare(v, costs=c), brute2)


def test_rewards_are_utilities_and_infos_consistent():
    e = parallel_env(mechanism="gsp", n_buyers=4, n_slots=2, rounds=2)
    obs, _ = e.reset(seed=4)
    acts = {a: o[:1] * 0.9 for a, o in obs.items()}
    _, rew, _, _, infos = e.step(acts)
    for a, r in rew.items():
        i = infos[a]
        assert r == pytest.approx(i["value"] * i["alloc"] - i["payment"])
        assert i["utility"] == pytest.approx(r)
        assert i["payment"] <= i["bid"] * i["alloc"] + 1e-9  # GSP: pay at most the bid
    assert sum(i["alloc"] for i in infos.values()) == pytest.approx(2.0)


@pytest.mark.parametrize(
    ("name", "kw"),
    [
        ("first_price", {"n_slots": 2}),
        ("gsp", {"n_slots": 2}),
        ("vcg", {"n_slots": 2}),
        ("assignment", {"n_slots": 2}),
        ("stable_matching", {"n_slots": 2}),
        ("k_double", {}),
        ("cda", {"redraw": "episode"}),
    ],
)
def test_budgets_are_never_exceeded(name, kw):
    budget, rounds = 0.6, 6
    v = vector_env(200, mechanism=name, n_buyers=3, rounds=rounds, budget=budget, **kw)
    obs, _ = v.reset(seed=5)
    rng = np.random.default_rng(5)
    n = 3
    spent = np.zeros((200, n))
    most = 0.0
    for _ in range(3 * rounds):
        acts = rng.uniform(0, 1.5, size=(200, v.n_agents, 1))  # includes overbids
        before = obs[:, :n, 1].astype(np.float64)
        obs, _, term, _, info = v.step(acts)
        pay = info["payment"][:, :n]
        spent += pay
        assert (spent <= budget + 1e-9).all()
        assert (pay <= np.maximum(before, 0) + 1e-6).all()  # observed budget bounds pay
        # buyers without budget do not trade
        broke = before < 1e-12
        assert (info["alloc"][:, :n][broke] == 0).all()
        most = max(most, spent.max())
        spent[term[:, 0]] = 0.0
    assert most > budget / 2  # budgets did bind somewhere


def test_zero_budget_buyers_are_inactive():
    e = parallel_env(mechanism="first_price", n_buyers=3, budget=0.0)
    obs, _ = e.reset(seed=6)
    assert all(o[7] == 0.0 for o in obs.values())
    _, rew, _, _, infos = e.step({a: np.ones(1) for a in obs})
    assert all(i["alloc"] == 0 and i["payment"] == 0 for i in infos.values())
    assert all(r == 0 for r in rew.values())


def _core_with_broke_buyers(name: str, B: int, n: int, m: int, broke):
    """A core of ``B`` sealed double auctions whose ``broke`` buyers have no budget."""
    core = MarketCore(
        make_config(mechanism=name, n_buyers=n, n_sellers=m, budget=5.0, rounds=2), B
    )
    core.reset(np.random.default_rng(0))
    core.state.budget_left[broke] = 0.0
    return core


def test_inactive_buyer_sets_no_price_in_the_double_auction():
    # k-double (k = 1/2): buyer_0 bids 0.8, buyer_1 is out of budget (its 1.0 is
    # capped to 0), both sellers ask 0. In the book, buyer_1's 0 would meet the
    # second ask: q = 2 at price (0 + 0) / 2 = 0, and its seller would go unsold.
    # Out of the book: q = 1 at (0.8 + 0) / 2 = 0.4.
    core = _core_with_broke_buyers("k_double", 1, 2, 2, np.array([[False, True]]))
    _, _, info = core.step(np.array([[0.8, 1.0, 0.0, 0.0]]), np.random.default_rng(1))
    assert info["clearing_price"][0] == pytest.approx(0.4)
    np.testing.assert_allclose(info["alloc"][0, :2], [1.0, 0.0])
    np.testing.assert_allclose(info["payment"][0, :2], [0.4, 0.0])
    assert info["alloc"][0, 2:].sum() == 1.0
    assert info["payment"][0, 2:].sum() == pytest.approx(0.4)
    assert not info["active"][0, 1] and info["slot"][0, 1] == -1


@pytest.mark.parametrize("name", ["k_double", "mcafee", "call_market"])
def test_sealed_double_auction_with_inactive_buyers_is_the_market_without_them(name):
    # Each market must clear as if its inactive buyers were not there at all.
    B, n, m = 300, 4, 3
    rng = np.random.default_rng(7)
    broke = rng.random((B, n)) < 0.4
    broke[:, 0] = False
    core = _core_with_broke_buyers(name, B, n, m, broke)
    bids = rng.uniform(0.05, 1.0, (B, n))
    asks = np.where(rng.random((B, m)) < 0.5, 0.0, rng.uniform(0.0, 1.0, (B, m)))
    _, _, info = core.step(np.concatenate([bids, asks], 1), np.random.default_rng(1))
    mech = mechanisms.make(name)
    for b in range(B):
        act = ~broke[b]
        out = mech.clear(bids[b, act][None], asks[b][None], rng=rng)
        np.testing.assert_equal(info["clearing_price"][b], out.clearing_price[0])
        np.testing.assert_allclose(info["alloc"][b, :n][act], out.alloc[0])
        np.testing.assert_allclose(info["payment"][b, :n][act], out.pay[0])
        assert (info["alloc"][b, :n][~act] == 0).all()
        assert info["alloc"][b, n:].sum() == out.seller_alloc.sum()
        assert info["payment"][b, n:].sum() == pytest.approx(out.seller_receipt.sum())


def test_actions_are_clipped_and_nan_rejected():
    e = parallel_env(mechanism="first_price", n_buyers=2)
    e.reset(seed=7)
    _, _, _, _, infos = e.step(
        {"buyer_0": np.array([5.0]), "buyer_1": np.array([-3.0])}
    )
    assert infos["buyer_0"]["bid"] == 1.0 and infos["buyer_1"]["bid"] == 0.0
    assert infos["buyer_0"]["payment"] == 1.0
    e.reset(seed=7)
    with pytest.raises(ValueError, match="buyer_1"):
        e.step({"buyer_0": np.array([0.5]), "buyer_1": np.array([np.nan])})


def test_cda_trading_period():
    # redraw=episode: one period; a trader leaves once its unit has traded.
    n, rounds = 6, 5
    v = vector_env(
        300, mechanism="cda", n_buyers=n, n_sellers=n, rounds=rounds, redraw="episode"
    )
    obs, _ = v.reset(seed=8)
    values0 = obs[:, :, 0].copy()
    traded = np.zeros((300, 2 * n), dtype=bool)
    rng = np.random.default_rng(8)
    for r in range(rounds):
        np.testing.assert_array_equal(obs[:, :, 0], values0)  # values held
        np.testing.assert_array_equal(obs[:, :, 7] == 0, traded)  # active flag
        acts = truthful(obs) + rng.normal(0, 0.1, size=obs[..., :1].shape)
        obs, _, term, _, info = v.step(acts)
        assert not (info["traded"] & traded).any()  # nobody trades twice
        assert (info["traded"] <= info["active"]).all()
        traded |= info["traded"]
        # every trade pairs one buyer with one seller
        np.testing.assert_array_equal(
            info["traded"][:, :n].sum(1), info["traded"][:, n:].sum(1)
        )
        assert term.all() == (r == rounds - 1)
    ep = info["metrics"]
    assert (ep["volume"] <= n).all()
    eff = ep["efficiency"][~np.isnan(ep["efficiency"])]
    assert 0.5 < eff.mean() <= 1.0


def test_redraw_round_vs_episode():
    for redraw, same in (("round", False), ("episode", True)):
        e = parallel_env(mechanism="first_price", n_buyers=2, rounds=3, redraw=redraw)
        obs, _ = e.reset(seed=9)
        obs2, *_ = e.step({a: o[:1] for a, o in obs.items()})
        assert (obs["buyer_0"][0] == obs2["buyer_0"][0]) == same
        assert obs2["buyer_0"][2] == pytest.approx(1 / 3)  # round index / rounds


def test_history_holds_last_prices_most_recent_first():
    e = parallel_env(mechanism="first_price", n_buyers=2, rounds=4, history=3)
    obs, _ = e.reset(seed=10)
    prices = []
    for _ in range(3):
        obs, _, _, _, infos = e.step({a: o[:1] for a, o in obs.items()})
        prices.append(infos["buyer_0"]["clearing_price"])
    np.testing.assert_allclose(obs["buyer_1"][8:], prices[::-1], rtol=1e-6)
    assert obs["buyer_1"][4] == pytest.approx(prices[-1])


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"n_buyer": 2}, "unknown environment option.*known: mechanism"),
        ({"mechanism": "dutch"}, "unknown mechanism 'dutch'"),
        ({"n_buyers": 0}, "n_buyers must be an integer >= 1"),
        ({"rounds": 0}, "rounds must be an integer >= 1"),
        ({"budget": -1.0}, "budget must be"),
        ({"redraw": "never"}, "redraw must be one of round, episode"),
        ({"valuation": "magic"}, "valuation must be one of"),
        ({"n_sellers": 2}, "n_sellers must be 0"),
        ({"value_low": 1.0, "value_high": 0.5}, "value_low, value_high"),
        ({"history": -1}, "history must be an integer >= 0"),
        ({"max_bid": 0.0}, "max_bid must be"),
        ({"render_mode": "rgb"}, "render_mode must be"),
        ({"action": "bid"}, "action must be one of auto, absolute, shade"),
        ({"value_dist": "cauchy"}, "unknown value distribution 'cauchy'"),
        ({"mechanism_params": {"reservee": 0.1}}, "unknown parameter.*reservee"),
        ({"mechanism_params": {"reserve": -1}}, "reserve must be"),
        ({"budget": float("nan")}, "budget must be"),
    ],
)
def test_bad_options_raise_clear_errors(kw, match):
    with pytest.raises(ValueError, match=match):
        parallel_env(**kw)


def test_config_object_and_overrides():
    from attn_env.config import EnvConfig

    cfg = EnvConfig(mechanism="gsp", n_buyers=5, n_slots=2)
    e = parallel_env(config=cfg, n_buyers=3)
    assert e.possible_agents == ["buyer_0", "buyer_1", "buyer_2"]
    assert e.config.mechanism == "gsp" and e.config.n_slots == 2


def test_mechanism_params_reach_the_mechanism():
    v = vector_env(
        2000, mechanism="second_price", n_buyers=2, mechanism_params={"reserve": 0.5}
    )
    obs, _ = v.reset(seed=11)
    _, _, _, _, info = v.step(truthful(obs))
    # Myerson: revenue with reserve 1/2, n = 2, U[0,1] is 5/12.
    mean, se = mc_mean(info["metrics"]["revenue"])
    assert abs(mean - 5 / 12) < 4 * se
    assert (info["payment"][info["payment"] > 0] >= 0.5 - 1e-12).all()


@pytest.mark.parametrize("name", mechanisms.names())
def test_every_mechanism_plays_an_episode(name):
    kw = {"n_slots": 1 if name == "second_price" else 2}
    if mechanisms.family(name) == "two_sided":
        kw = {"redraw": "episode"}
    v = vector_env(64, mechanism=name, n_buyers=3, rounds=2, **kw)
    obs, _ = v.reset(seed=12)
    for _ in range(2):
        obs, rew, term, _, info = v.step(truthful(obs))
        assert np.isfinite(rew).all()
        assert v.single_observation_space.contains(obs[0, 0])
    assert term.all()
    ep = info["metrics"]
    assert (ep["welfare"] <= ep["optimal_welfare"] + 1e-9).all()


@pytest.mark.slow
@pytest.mark.real_model
def test_attention_valuation_through_the_env(tmp_path):
    # A tiny attention bank built from the shipped MiniLM (about 10 s on a CPU).
    from pettingzoo.test import parallel_api_test

    vp = {
        "bank_dir": str(tmp_path),
        "n_queries": 4,
        "candidates_per_query": 6,
        "pages": 1,
        "max_slots": 3,
        "device": "cpu",
    }
    kw = {"mechanism": "gsp", "n_buyers": 4, "n_slots": 3, "valuation": "attention"}
    v = vector_env(256, valuation_params=vp, **kw)
    obs, _ = v.reset(seed=0)
    assert v.observation_space.contains(obs)
    _, rew, _, _, info = v.step(truthful(obs))
    alloc = info["alloc"]
    # slots hold attention fractions, sorted: the winners' allocations sum to <= 1
    assert (alloc.sum(axis=1) <= 1 + 1e-6).all() and (alloc > 0).sum(axis=1).max() == 3
    np.testing.assert_allclose(info["metrics"]["efficiency"], 1.0, atol=1e-9)
    assert (rew >= -1e-6).all()  # truthful GSP winners never pay above their value
    parallel_api_test(parallel_env(valuation_params=vp, **kw), num_cycles=10)


@st.composite
def markets(draw):
    name = draw(st.sampled_from(mechanisms.names()))
    kw = {
        "mechanism": name,
        "n_buyers": draw(st.integers(1, 4)),
        "rounds": draw(st.integers(1, 3)),
        "redraw": draw(st.sampled_from(["round", "episode"])),
        "history": draw(st.integers(0, 2)),
        "budget": draw(st.one_of(st.none(), st.floats(0.0, 2.0))),
    }
    if mechanisms.family(name) == "two_sided":
        kw["n_sellers"] = draw(st.integers(1, 3))
    else:
        kw["n_slots"] = 1 if name == "second_price" else draw(st.integers(1, 3))
    return kw


@settings(max_examples=40, deadline=None)
@given(kw=markets(), seed=st.integers(0, 2**16))
def test_market_invariants(kw, seed):
    v = vector_env(4, **kw)
    n = kw["n_buyers"]
    obs, _ = v.reset(seed=seed)
    rng = np.random.default_rng(seed)
    spent = np.zeros((4, n))
    welfare = np.zeros(4)
    for _ in range(2 * kw["rounds"]):
        acts = np.where(
            rng.random((4, v.n_agents, 1)) < 0.5,
            truthful(obs),
            rng.uniform(-0.2, 1.2, (4, v.n_agents, 1)),
        )
        obs, rew, term, _, info = v.step(acts)
        assert v.observation_space.contains(obs)
        np.testing.assert_array_equal(rew, info["utility"])
        alloc, pay, bid, val = (
            info["alloc"],
            info["payment"],
            info["bid"],
            info["value"],
        )
        # buyers: utility = value x alloc - payment, payment <= bid x alloc
        np.testing.assert_allclose(rew[:, :n], val[:, :n] * alloc[:, :n] - pay[:, :n])
        assert (pay[:, :n] <= bid[:, :n] * alloc[:, :n] + 1e-9).all()
        assert (
            (pay >= -1e-12).all() and (bid >= 0).all() and (bid <= v.spec.max_bid).all()
        )
        if v.spec.n_sellers:
            np.testing.assert_allclose(alloc[:, :n].sum(1), alloc[:, n:].sum(1))
            sold = alloc[:, n:] > 0
            assert (pay[:, n:][sold] >= bid[:, n:][sold] - 1e-9).all()  # ask met
        spent += pay[:, :n]
        welfare += (val[:, :n] * alloc[:, :n]).sum(1) - (val[:, n:] * alloc[:, n:]).sum(
            1
        )
        if kw["budget"] is not None:
            assert (spent <= kw["budget"] + 1e-9).all()
        done = term[:, 0]
        if done.any():
            ep = info["metrics"]
            np.testing.assert_allclose(ep["welfare"][done], welfare[done], atol=1e-9)
            assert (ep["welfare"][done] <= ep["optimal_welfare"][done] + 1e-9).all()
            assert not np.isnan(ep["revenue"][done]).any()
        spent[done] = 0.0
        welfare[done] = 0.0

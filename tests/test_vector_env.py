"""The vectorised market: shapes, autoreset, agreement with parallel_env."""

from __future__ import annotations

import numpy as np
import pytest

from attn_env import mechanisms, parallel_env, vector_env
from attn_env.metrics import METRIC_KEYS


def options(name: str) -> dict:
    kw = {"mechanism": name, "n_buyers": 3, "rounds": 3, "history": 1, "budget": 1.2}
    if mechanisms.family(name) == "two_sided":
        kw |= {"n_sellers": 2, "redraw": "episode" if name == "cda" else "round"}
    else:
        kw["n_slots"] = 1 if name == "second_price" else 2
    return kw


@pytest.mark.parametrize("name", mechanisms.names())
def test_vector_of_one_agrees_with_parallel_env(name):
    v = vector_env(1, **options(name))
    p = parallel_env(**options(name))
    ov, _ = v.reset(seed=42)
    op, _ = p.reset(seed=42)
    rng = np.random.default_rng(0)
    ends = 0
    for _ in range(10):  # crosses several episode boundaries (rounds = 3)
        np.testing.assert_array_equal(
            ov[0], np.stack([op[a] for a in p.possible_agents])
        )
        act = rng.uniform(0, 1.1, size=(1, v.n_agents, 1)).astype(np.float32)
        ov, rv, tv, _, iv = v.step(act)
        op, rp, tp, _, ip = p.step(
            {a: act[0, i] for i, a in enumerate(p.possible_agents)}
        )
        np.testing.assert_allclose(rv[0], [rp[a] for a in p.possible_agents])
        np.testing.assert_array_equal(tv[0], [tp[a] for a in p.possible_agents])
        np.testing.assert_allclose(iv["payment"][0], [ip[a]["payment"] for a in ip])
        if tv[0, 0]:
            ends += 1
            final = np.stack([op[a] for a in p.possible_agents])
            np.testing.assert_array_equal(iv["final_obs"][0], final)
            for k in ("revenue", "welfare"):
                want = ip["buyer_0"][f"episode_{k}"]
                assert iv["metrics"][k][0] == pytest.approx(want)
            op, _ = p.reset()  # continues the same generator, like autoreset
    assert ends == 3


def test_shapes_and_dtypes():
    v = vector_env(16, mechanism="k_double", n_buyers=3, n_sellers=2, history=2)
    assert v.agents == ["buyer_0", "buyer_1", "buyer_2", "seller_0", "seller_1"]
    assert v.n_agents == 5 and v.num_envs == 16
    assert v.single_observation_space.shape == (10,)
    assert v.single_action_space.shape == (1,)
    assert v.options["mechanism"] == "k_double"
    obs, info = v.reset(seed=0)
    assert obs.shape == (16, 5, 10) and obs.dtype == np.float32
    assert info["value"].shape == (16, 5)
    assert v.observation_space.contains(obs)
    obs, rew, term, trunc, info = v.step(v.action_space.sample())
    assert rew.shape == term.shape == trunc.shape == (16, 5)
    assert term.dtype == bool and not trunc.any()
    for k in ("value", "bid", "alloc", "payment", "utility", "traded", "active"):
        assert info[k].shape == (16, 5), k
    assert info["clearing_price"].shape == (16,)
    for k in ("slot", "theta", "relevance"):
        assert info[k].shape == (16, 3), k  # buyers only
    assert info["alpha"].shape == (16, 1)  # n_slots
    assert set(info["metrics"]) == set(METRIC_KEYS)
    # 2-D actions are accepted too
    v.step(np.zeros((16, 5)))


def test_same_step_autoreset():
    v = vector_env(8, mechanism="first_price", n_buyers=2, rounds=3, redraw="episode")
    obs, _ = v.reset(seed=1)
    for t in range(7):
        prev = obs
        obs, _, term, _, info = v.step(obs[..., :1] * 0.5)
        end = (t + 1) % 3 == 0
        assert term.all() == end and info["_metrics"].all() == end
        if end:
            np.testing.assert_array_equal(info["final_obs"][..., 0], prev[..., 0])
            np.testing.assert_allclose(info["final_obs"][..., 2], 1.0)  # round 3/3
            assert (obs[..., 2] == 0).all()  # the new episode's first round
            assert np.isfinite(info["metrics"]["revenue"]).all()
        else:
            assert "final_obs" not in info
            assert np.isnan(info["metrics"]["revenue"]).all()
            np.testing.assert_array_equal(obs[..., 0], prev[..., 0])  # values held


def test_partial_autoreset_with_mask():
    # Markets started at different times finish at different steps.
    v = vector_env(4, mechanism="first_price", n_buyers=2, rounds=2, budget=1.0)
    obs, _ = v.reset(seed=2)
    v.core.state.round[:2] = 1  # desynchronise: markets 0, 1 are in their last round
    obs, _, term, _, info = v.step(obs[..., :1])
    np.testing.assert_array_equal(term[:, 0], [True, True, False, False])
    np.testing.assert_array_equal(info["_final_obs"], [True, True, False, False])
    assert (obs[:2, :, 2] == 0).all() and (obs[2:, :, 2] == 0.5).all()
    assert (obs[:2, :, 1] == 1.0).all()  # budgets refilled only where reset
    assert np.isnan(info["metrics"]["revenue"][2:]).all()


def test_nan_action_names_agent_and_market():
    v = vector_env(3, mechanism="gsp", n_buyers=3, n_slots=2)
    v.reset(seed=0)
    acts = np.full((3, 3, 1), 0.5)
    acts[2, 1, 0] = np.nan
    with pytest.raises(ValueError, match="buyer_1 in market 2 is nan"):
        v.step(acts)
    with pytest.raises(ValueError, match="shape"):
        v.step(np.zeros((3, 2, 1)))


def test_reset_is_reproducible_and_seed_matters():
    a = vector_env(8, mechanism="cda", n_buyers=4, redraw="episode", rounds=2)
    b = vector_env(8, mechanism="cda", n_buyers=4, redraw="episode", rounds=2)
    oa, _ = a.reset(seed=3)
    ob, _ = b.reset(seed=3)
    np.testing.assert_array_equal(oa, ob)
    act = np.random.default_rng(0).uniform(size=(8, 8, 1))
    ra = a.step(act)[1]
    rb = b.step(act)[1]
    np.testing.assert_array_equal(ra, rb)
    oc, _ = b.reset(seed=4)
    assert not np.array_equal(oa, oc)


def test_bad_num_envs():
    with pytest.raises(ValueError, match="num_envs"):
        vector_env(0, mechanism="gsp")


def test_final_obs_can_be_skipped():
    v = vector_env(4, mechanism="first_price", n_buyers=2, final_obs=False)
    obs, _ = v.reset(seed=0)
    _, _, term, _, info = v.step(obs[..., :1])
    assert term.all() and info["_metrics"].all() and "final_obs" not in info


class _SlotSource:
    """theta U[0, 1], relevance U[0.5, 1], alpha random descending: a cheap source
    whose every round differs in all three."""

    name = "slots"

    def draw(self, rng, batch, n_buyers, n_slots):
        from attn_env.valuations import Draw

        alpha = -np.sort(-rng.uniform(0.1, 1.0, (batch, n_slots)), axis=1)
        return Draw(
            theta=rng.random((batch, n_buyers)),
            relevance=rng.uniform(0.5, 1.0, (batch, n_buyers)),
            alpha=alpha,
        )


@pytest.mark.parametrize("name", ["gsp", "vcg", "assignment", "stable_matching"])
def test_infos_hold_the_rounds_draw_and_slots(name):
    # alpha, theta and relevance in the infos are those the round was played with,
    # although the redraw (and the autoreset) replace them within step().
    v = vector_env(64, mechanism=name, n_buyers=4, n_slots=3, rounds=2)
    v.core.source = _SlotSource()
    obs, _ = v.reset(seed=3)
    rng = np.random.default_rng(3)
    for _ in range(4):
        alpha = v.core.state.alpha.copy()
        theta, rel = v.core.state.theta.copy(), v.core.state.relevance.copy()
        acts = obs[..., :1] * rng.uniform(0.5, 1.0, (64, 4, 1))
        obs, _, _, _, info = v.step(acts)
        assert not np.array_equal(v.core.state.alpha, alpha)  # redrawn in the step
        np.testing.assert_array_equal(info["alpha"], alpha)
        np.testing.assert_array_equal(info["theta"], theta)
        np.testing.assert_array_equal(info["relevance"], rel)
        np.testing.assert_allclose(info["value"], theta * rel)
        slot = info["slot"]
        assert slot.shape == (64, 4) and slot.dtype.kind == "i"
        won = np.take_along_axis(alpha, np.maximum(slot, 0), 1)
        np.testing.assert_allclose(info["alloc"], np.where(slot >= 0, won, 0.0))
        matched = slot[slot >= 0]
        assert matched.size and (matched < 3).all()


@pytest.mark.parametrize("name", ["k_double", "mcafee", "call_market", "cda"])
def test_two_sided_slot_is_the_partner_seller(name):
    v = vector_env(64, mechanism=name, n_buyers=4, n_sellers=3, rounds=1)
    obs, _ = v.reset(seed=4)
    _, _, _, _, info = v.step(obs[..., :1])
    slot, n = info["slot"], 4
    assert slot.shape == (64, n)
    b, i = np.nonzero(slot >= 0)
    assert b.size
    assert (info["alloc"][b, i] == 1).all()
    assert (info["alloc"][b, n + slot[b, i]] == 1).all()  # the partner sold
    assert (slot >= 0).sum() == info["alloc"][:, n:].sum()


def test_fixed_agents_bid_while_the_others_shade():
    # k-double, 2 + 2 traders: buyer_1 and seller_0 are fixed (their actions are
    # bids and asks), buyer_0 and seller_1 act in the env's units (s)
    env = vector_env(
        5,
        mechanism="k_double",
        n_buyers=2,
        n_sellers=2,
        action="shade",
        fixed_agents=["buyer_1", "seller_0"],
        seed=3,
    )
    assert env.fixed_columns == (1, 2)
    _, info = env.reset()
    v = info["value"]
    actions = np.column_stack([np.full(5, 0.5), np.full(5, 0.7), v[:, 2], np.zeros(5)])
    _, _, _, _, info = env.step(actions)
    np.testing.assert_allclose(info["bid"][:, 0], 0.5 * v[:, 0])  # s x value
    np.testing.assert_allclose(info["bid"][:, 1], 0.7)  # a bid as given
    np.testing.assert_allclose(info["bid"][:, 2], v[:, 2])  # an ask as given
    np.testing.assert_allclose(info["bid"][:, 3], 1.0)  # s = 0 asks cost_high
    # the batched box: s in [0, 1] for shading columns, up to max_bid for fixed
    assert env.action_space.high[0, :, 0].tolist() == [1.0, 1.0, 1.0, 1.0]
    with pytest.raises(ValueError, match=r"fixed_agents: unknown agent 'buyer_9'"):
        vector_env(1, n_buyers=2, fixed_agents=["buyer_9"])


def test_fixed_common_value_shades_from_zero():
    # value_low == value_high: the range [value, value] would make every s bid
    # the value; buyers shade on [0, value] instead (as the trainer's maps do)
    env = vector_env(
        2, n_buyers=2, value_low=2.0, value_high=2.0, action="shade", seed=0
    )
    env.reset()
    _, _, _, _, info = env.step(np.array([[0.25, 1.0], [0.5, 0.0]]))
    np.testing.assert_allclose(info["bid"], [[0.5, 2.0], [1.0, 0.0]])

"""Bidder classes and CRRA utility beyond the solver: the env's draws and
rewards, ``kind: equilibrium`` per class, ``evaluate`` per class, ``compare``.

Closed forms: the asymmetric uniform first price (two bidders, ``U[0, 0.5]``
and ``U[0, 1]``) and CRRA first price ``b(v) = (n-1)/(n-1+rho) v``
(``attn_env.equilibria``).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import attn_env
from attn_env.config import (
    ConfigError,
    ExperimentConfig,
    SolveUtility,
    from_dict,
    make_config,
    validate_experiment,
)
from attn_env.equilibria import asymmetric_first_price_bne, crra_first_price_bne
from attn_env.errors import UserError
from attn_env.strategy_metrics import utility_loss
from runner.evaluate import _reference
from runner.seats import build_agents
from runner.simulate import play_log
from tests.helpers import tiny_first_price_run

CLASSES = [
    {"name": "small", "agents": ["buyer_0"], "value_high": 0.5},
    {"name": "large", "agents": ["buyer_1"]},
]


pytestmark = pytest.mark.usefixtures("module_solver_cache")


def config(**solve) -> ExperimentConfig:
    """Two first-price buyers at ``kind: equilibrium`` with ``solve`` options."""
    c = from_dict(
        ExperimentConfig,
        {
            "env": {"mechanism": "first_price", "n_buyers": 2},
            "agents": {"buyer": {"kind": "equilibrium"}},
            "episodes": 4000,
            "solve": solve,
        },
    )
    validate_experiment(c)
    return c


def bid_fns(c: ExperimentConfig) -> list:
    """Each seat's ``values -> bids`` as ``simulate`` builds its agent."""
    names = ["buyer_0", "buyer_1"]
    players = build_agents(c, names)
    return [players[n]._buyer for n in names]


# ----------------------------------------------------------------- the config
def test_classes_give_the_env_its_ranges_and_ranges_give_classes():
    c = config(classes=CLASSES, utility={"kind": "crra", "rho": 0.5})
    assert c.env.value_ranges == {"buyer_0": [0.0, 0.5], "buyer_1": [0.0, 1.0]}
    assert c.env.utility == SolveUtility("crra", 0.5)
    back = from_dict(
        ExperimentConfig,
        {"env": {"value_ranges": {"buyer_1": [0, 0.5]}, "utility": {"kind": "crra"}}},
    )
    assert [(k.agents, k.value_high) for k in back.solve.classes] == [
        (["buyer_0"], 1.0),
        (["buyer_1"], 0.5),
    ]
    assert back.solve.utility.kind == "crra"
    # a replace keeps them in step (the runner replaces agents and seeds)
    again = dataclasses.replace(c, seed=3, agents={})
    assert again.env.value_ranges == c.env.value_ranges


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (
            {
                "env": {"utility": {"kind": "crra", "rho": 0.5}},
                "solve": {"utility": {"kind": "crra", "rho": 0.7}},
            },
            "differ; set one",
        ),
        (
            {
                "env": {"value_ranges": {"buyer_0": [0, 0.4]}},
                "solve": {"classes": CLASSES},
            },
            "differ from the ranges",
        ),
        ({"env": {"value_ranges": {"buyer_5": [0, 0.5]}}}, "not a buyer"),
        ({"env": {"value_ranges": {"buyer_0": [0.5, 0.5]}}}, "low < high"),
        ({"env": {"value_ranges": {"buyer_0": [0.5]}}}, r"\[low, high\]"),
        ({"env": {"utility": {"kind": "cara"}}}, "utility.kind"),
        ({"env": {"utility": {"kind": "crra", "rho": 1.5}}}, "utility.rho"),
        (
            {"env": {"valuation": "attention", "value_ranges": {"buyer_0": [0, 1]}}},
            "valuation: uniform",
        ),
    ],
)
def test_bad_game_options_are_one_line(data, match):
    with pytest.raises(ConfigError, match=match):
        validate_experiment(from_dict(ExperimentConfig, data))


# ----------------------------------------------------------------- the env
def test_each_buyer_draws_from_its_own_range():
    base = make_config(n_buyers=2)
    ranged = make_config(n_buyers=2, value_ranges={"buyer_0": [0.2, 0.6]})
    obs_a, _ = attn_env.vector_env(4096, config=base).reset(seed=5)
    obs_b, _ = attn_env.vector_env(4096, config=ranged).reset(seed=5)
    # the market's draw mapped onto each range: same stream, affine per buyer
    np.testing.assert_array_equal(obs_b[:, 1, 0], obs_a[:, 1, 0])
    np.testing.assert_allclose(obs_b[:, 0, 0], 0.2 + 0.4 * obs_a[:, 0, 0], atol=1e-6)
    assert 0.2 <= obs_b[:, 0, 0].min() and obs_b[:, 0, 0].max() <= 0.6


def test_a_range_above_the_market_widens_the_observation_box():
    env = attn_env.vector_env(8, config=make_config(value_ranges={"buyer_0": [0, 2]}))
    obs, _ = env.reset(seed=0)
    assert env.single_observation_space.high[0] == 2.0
    assert obs[:, 0, 0].max() > 1.0  # never clipped to the market's value_high


def test_crra_rewards_are_u_of_the_surplus():
    rho = 0.5
    env = attn_env.vector_env(
        256, config=make_config(n_buyers=2, utility=SolveUtility("crra", rho))
    )
    obs, _ = env.reset(seed=1)
    bids = np.stack([obs[:, 0, 0] * 0.5, obs[:, 1, 0] * 0.5], axis=1)[..., None]
    _, rew, *_, info = env.step(bids.astype(np.float32))
    surplus = info["value"] * info["alloc"] - info["payment"]
    np.testing.assert_allclose(rew, np.sign(surplus) * np.abs(surplus) ** rho)
    np.testing.assert_allclose(info["utility"], rew)
    assert (rew > surplus + 1e-12).any()  # sqrt(x) > x on (0, 1): not linear


# ----------------------------------------------------------------- kind: equilibrium
def test_equilibrium_agents_play_their_class_in_simulate():
    c = config(classes=CLASSES)
    exact = asymmetric_first_price_bne(0.5, 1.0)

    class Bids:
        def start(self, env):
            self.v, self.b = [], []

        def add_round(self, info):
            self.v.append(info["value"])
            self.b.append(info["bid"])

        def end_batch(self, keep):
            pass

    rec = Bids()
    play_log(c, episodes=4000, progress=False, recorders=[rec])
    v, b = np.concatenate(rec.v), np.concatenate(rec.b)
    assert v[:, 0].max() <= 0.5 < v[:, 1].max()
    for j in range(2):
        rms = np.sqrt(np.mean((b[:, j] - exact[j](v[:, j])) ** 2))
        assert rms < 0.01, (j, rms)
    # the weak bidder bids more at the same value (the closed form's shape)
    fns = bid_fns(c)
    assert fns[0](np.array([0.4]))[0] > fns[1](np.array([0.4]))[0] + 0.01
    rng = np.random.default_rng(0)
    for j in range(2):
        loss = utility_loss(c.env, fns, j, rng, samples=4000)
        assert 0.0 <= loss["utility_loss"] < 0.01, (j, loss)
    # the other class's strategy is not an equilibrium here
    swapped = [fns[1], fns[1]]
    worse = utility_loss(c.env, swapped, 0, rng, samples=4000)
    assert worse["utility_loss"] > 0.03


def test_an_equilibrium_agent_without_its_seat_is_refused():
    import agents

    c = config(classes=CLASSES)
    with pytest.raises(UserError, match="one bid function per bidder class"):
        agents.for_market("equilibrium", {"solve": c.solve}, c.env)
    one = agents.for_market(
        "equilibrium", {"solve": c.solve, "agent": "buyer_0"}, c.env
    )
    assert one.role == "small"


def test_crra_equilibrium_has_no_loss_under_crra_and_risk_neutral_bids_do():
    rho = 0.5
    c = config(utility={"kind": "crra", "rho": rho})
    fns = bid_fns(c)
    v = np.linspace(0.05, 0.95, 19)
    np.testing.assert_allclose(fns[0](v), crra_first_price_bne(2, rho)(v), atol=0.02)
    rng = np.random.default_rng(0)
    eq = utility_loss(c.env, fns, 0, rng, samples=4000)["utility_loss"]
    half = [lambda x: 0.5 * np.asarray(x)] * 2
    neutral = utility_loss(c.env, half, 0, rng, samples=4000)["utility_loss"]
    assert 0.0 <= eq < 0.01
    assert neutral > 0.03  # b = v/2 is the risk-neutral answer, not this game's
    # and under linear utility b = v/2 is the equilibrium
    lin = utility_loss(config().env, half, 0, rng, samples=4000)["utility_loss"]
    assert lin < 0.01


def test_value_ranges_equal_to_the_market_leave_the_utility_loss_as_it_was():
    """Per-buyer ranges equal to the market's map every draw to itself: the
    class path gives the symmetric market's loss exactly."""
    env = config().env
    ranged = dataclasses.replace(
        env, value_ranges={"buyer_0": [0.0, 1.0], "buyer_1": [0.0, 1.0]}
    )
    fns = [lambda x: 0.4 * np.asarray(x), lambda x: 0.6 * np.asarray(x)]
    a = utility_loss(ranged, fns, 0, np.random.default_rng(3), samples=2000)
    b = utility_loss(env, fns, 0, np.random.default_rng(3), samples=2000)
    assert a == pytest.approx(b, rel=1e-12, abs=1e-15)


# ----------------------------------------------------------------- evaluate
def test_evaluate_references_are_each_class_closed_form():
    c = config(classes=CLASSES)
    exact = asymmetric_first_price_bne(0.5, 1.0)
    v = np.linspace(0.0, 0.5, 11)
    for j in range(2):
        star, kind = _reference(c, "buyer", f"buyer_{j}")
        assert kind == "analytic"
        np.testing.assert_allclose(star(v), exact[j](v))
    star, kind = _reference(
        config(utility={"kind": "crra", "rho": 0.3}), "buyer", "buyer_1"
    )
    assert kind == "analytic"
    np.testing.assert_allclose(star(v), v / 1.3)
    # three classes have no closed form: the solver's class is the reference
    three = from_dict(
        ExperimentConfig,
        {
            "env": {"n_buyers": 3},
            "solve": {
                "classes": [
                    {"name": "a", "agents": ["buyer_0"], "value_high": 0.5},
                    {"name": "b", "agents": ["buyer_1", "buyer_2"]},
                ]
            },
        },
    )
    star, kind = _reference(three, "buyer", "buyer_2")
    assert kind == "numerical"
    assert star(np.array([0.9]))[0] < 0.9


@pytest.mark.usefixtures("restore_torch_threads")
def test_evaluate_reports_each_class(tmp_path):
    pytest.importorskip("stable_baselines3")
    from runner.evaluate import evaluate
    from training import train

    c = tiny_first_price_run({"classes": CLASSES})
    train(c, tmp_path / "run", progress=False)
    res = evaluate(c, tmp_path / "run", samples=500)
    assert set(res["bne_l2_by_class"]) == {"small", "large"}
    assert set(res["utility_loss_by_class"]) == {"small", "large"}
    assert res["reference"] == "analytic"
    assert res["utility"] == {"kind": "linear", "rho": 1.0}
    # one shared learner: its figure is its worse class
    (learner,) = res["bne_l2_by_learner"]
    assert res["bne_l2_by_learner"][learner] == max(res["bne_l2_by_class"].values())
    assert all(0.0 <= x for x in res["utility_loss_by_class"].values())


# ----------------------------------------------------------------- compare
def test_compare_reports_each_class_mean_utility():
    from runner.compare import compare

    sym, asym = config(), config(classes=CLASSES)
    res = compare([("sym", sym), ("asym", asym)], episodes=4000, progress=False)
    assert "classes" not in res["designs"][0]
    rows = res["designs"][1]["classes"]
    assert list(rows) == ["small", "large"]
    assert rows["small"]["value_range"] == [0.0, 0.5]
    # the strong bidder earns more; each class's figure is its agent's mean
    assert rows["large"]["mean_utility"] > rows["small"]["mean_utility"] + 0.1
    assert 0.0 < rows["small"]["mean_utility_se"] < 0.01
    assert res["differences"][0]["pairing"].startswith("unpaired: value_ranges")


def test_the_bne_agent_plays_the_crra_closed_form_and_refuses_classes():
    """``kind: bne`` knows the CRRA first price; with classes it refuses in one
    line (its one strategy for every buyer would be the symmetric one), and the
    symmetric risk-neutral ``v/2`` is never played where it is wrong."""
    from agents.baselines import BNEAgent

    crra = config(utility={"kind": "crra", "rho": 0.5}).env
    agent = BNEAgent(crra)
    v = np.linspace(0.0, 1.0, 11)
    obs = np.zeros((11, crra_obs_size(crra)), dtype=np.float32)
    obs[:, 0] = v
    bids = agent.act(obs, np.random.default_rng(0))
    np.testing.assert_allclose(bids[:, 0], crra_first_price_bne(2, 0.5)(v), atol=1e-6)
    with pytest.raises(UserError, match="value_ranges"):
        BNEAgent(config(classes=CLASSES).env)


def crra_obs_size(env) -> int:
    obs, _ = attn_env.vector_env(num_envs=1, config=env).reset(seed=0)
    return obs.shape[-1]

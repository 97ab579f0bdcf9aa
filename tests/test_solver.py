"""The equilibrium solver: exact payoffs, known equilibria, errors, I/O, CLI.

Fast checks only; the long validations (FPSB n = 2..5, K units, reserve,
truthful formats, Chatterjee–Samuelson) are ``slow`` and in
``benchmarks/solver.py``.
"""

from __future__ import annotations

import json
from itertools import product

import numpy as np
import pytest

import agents
from attn_env import mechanisms
from attn_env.checks import ConfigError
from attn_env.config import AgentSpec, EnvConfig, ExperimentConfig, SolveConfig
from attn_env.equilibria import first_price_bne
from attn_env.observation import ROLE, VALUE
from attn_env.solver import game_from_config, load_solution, solve, utility_losses
from attn_env.solver.position import position_payoffs
from attn_env.solver.sampled import opponent_profiles, sampled_payoffs
from attn_env.solver.soda import monotone, unstep
from attn_market.cli import main
from runner.simulate import play

FAST = SolveConfig(values=32, bids=51, iterations=600, refine=2)


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    """Keep solutions out of the user's cache."""
    monkeypatch.setenv("ATTN_MARKET_CACHE", str(tmp_path / "cache"))


def _l2(a, b):
    return float(np.sqrt(np.mean((np.asarray(a) - np.asarray(b)) ** 2)))


@pytest.mark.parametrize(
    ("rule", "n_opp", "alpha", "reserve"),
    [
        ("first_price", 2, [1.0], 0.0),
        ("second_price", 3, [1.0], 0.25),
        ("gsp", 3, [1.0, 0.6, 0.3], 0.0),
        ("gsp", 2, [1.0, 0.5, 0.2, 0.1], 0.15),
        ("vcg", 3, [1.0, 0.7, 0.2], 0.1),
        ("first_price", 3, [1.0, 1.0], 0.2),
    ],
)
def test_position_payoffs_match_brute_force(rule, n_opp, alpha, reserve):
    # every opponent profile enumerated with its probability; ties broken by
    # the mechanism itself, averaged over many tie-break draws
    support = np.array([0.1, 0.3, 0.3001, 0.5])
    support[2] = 0.3  # a tied pair of support points
    mass = np.array([0.2, 0.3, 0.1, 0.4])
    cand = np.array([0.0, 0.1, 0.2, 0.3, 0.5, 0.7])
    a, p = position_payoffs(rule, support, mass, n_opp, np.array(alpha), reserve, cand)
    mech = mechanisms.make(rule, reserve=reserve)
    profiles = np.array(list(product(support, repeat=n_opp)))
    probs = np.array([np.prod(m) for m in product(mass, repeat=n_opp)])
    reps, rng = 400, np.random.default_rng(0)
    for c, a_c, p_c in zip(cand, a, p, strict=True):
        rows = np.column_stack([np.full(len(profiles), c), profiles])
        rows = np.repeat(rows, reps, axis=0)
        out = mech.clear(rows, weights=np.array(alpha), rng=rng)
        w = np.repeat(probs, reps) / reps
        assert a_c == pytest.approx(out.alloc[:, 0] @ w, abs=0.01)
        assert p_c == pytest.approx(out.pay[:, 0] @ w, abs=0.01)


def test_sampled_payoffs_enumerate_the_bilateral_game_exactly():
    # k = 1/2, one seller asking 0.2 or 0.6: a bid of 0.4 trades with the first
    # (price 0.3), a bid of 0.6 with both (ties trade)
    profiles, weights = opponent_profiles(
        [(np.array([0.2, 0.6]), np.array([0.5, 0.5]))], 10, np.random.default_rng(0)
    )
    mech = mechanisms.make("k_double", k=0.5)
    qty, money = sampled_payoffs(
        lambda b, a: mech.clear(b, a), 0, 1, profiles, weights, np.array([0.4, 0.6])
    )
    np.testing.assert_allclose(qty, [0.5, 1.0])
    np.testing.assert_allclose(money, [0.5 * 0.3, 0.5 * 0.4 + 0.5 * 0.6])


def test_monotone_and_unstep():
    np.testing.assert_allclose(
        monotone(np.array([1.0, 3.0, 2.0, 4.0])), [1, 2.5, 2.5, 4]
    )
    x = np.linspace(0.0, 1.0, 9)
    stair = np.floor(x * 4) / 4  # a staircase of y = x, four steps wide
    smooth = unstep(x, stair, 0.25, 0.0)
    assert np.all(np.diff(smooth) > 0)  # no flat piece: no atom of bids
    assert _l2(smooth, x - 0.125) < _l2(stair, x - 0.125) + 1e-12


def test_first_price_two_bidders_reaches_the_bne():
    sol = solve(EnvConfig(mechanism="first_price", n_buyers=2), FAST)
    r = sol.roles["buyer"]
    assert _l2(r.bids, np.asarray(r.values) / 2) <= 0.01
    assert 0.0 <= r.utility_loss <= 0.03
    assert sol.history[0]["iteration"] == 1
    assert sol.history[-1]["grid_loss_buyer"] < sol.history[0]["grid_loss_buyer"]


def test_second_price_is_truthful():
    sol = solve(EnvConfig(mechanism="second_price", n_buyers=3), FAST)
    r = sol.roles["buyer"]
    assert _l2(r.bids, r.values) <= 0.02
    assert r.utility_loss <= 0.005


def test_exact_bne_has_near_zero_loss_on_the_fine_grid():
    # the measure itself: the closed form loses only its discretisation
    env = EnvConfig(mechanism="first_price", n_buyers=3)
    game = game_from_config(env, FAST, np.random.default_rng(0))
    loss = utility_losses(game, [first_price_bne(3)], FAST, np.random.default_rng(0))
    assert 0.0 <= loss[0] < 0.01


@pytest.mark.parametrize(
    ("env", "match"),
    [
        (EnvConfig(mechanism="cda", n_buyers=2), "continuous double auction.*k_double"),
        (EnvConfig(mechanism="assignment", n_buyers=2), "matching.*vcg or gsp"),
        (EnvConfig(budget=1.0, rounds=2), "budget=1.0.*null"),
        (EnvConfig(rounds=3, redraw="episode"), "redraw='episode'"),
    ],
)
def test_uncovered_markets_say_why_and_what_instead(env, match):
    with pytest.raises(ConfigError, match=match):
        solve(env, FAST)


def test_grid_too_large_and_bad_options_are_one_line():
    with pytest.raises(ConfigError, match=r"too large for memory.*lower solve"):
        solve(
            EnvConfig(mechanism="gsp", n_buyers=40, n_slots=10), SolveConfig(bids=4001)
        )
    with pytest.raises(ConfigError, match=r"solve.bids must be an integer >= 2, got 1"):
        solve(EnvConfig(), SolveConfig(bids=1))
    with pytest.raises(ConfigError, match=r"solve.decay must be a number in \[0, 1\)"):
        solve(EnvConfig(), SolveConfig(decay=1.5))


def _obs(values, seller=False):
    obs = np.zeros((len(values), 16), dtype=np.float32)
    obs[:, VALUE] = values
    obs[:, ROLE] = float(seller)
    return obs


def test_equilibrium_agent_solves_caches_and_loads(tmp_path):
    env = EnvConfig(mechanism="first_price", n_buyers=2)
    agent = agents.for_market("equilibrium", {"solve": FAST}, env)
    bids = agent.act(_obs([0.2, 0.8]), np.random.default_rng(0))[:, 0]
    np.testing.assert_allclose(bids, [0.1, 0.4], atol=0.02)
    # the same solve comes from the cache, and a saved solution loads by path
    again = agents.for_market("equilibrium", {"solve": FAST}, env)
    assert again.solution.seconds == agent.solution.seconds
    agent.solution.save(tmp_path / "eq.json")
    loaded = agents.for_market("equilibrium", {"path": str(tmp_path / "eq.json")}, env)
    assert loaded.solution.roles["buyer"].bids == agent.solution.roles["buyer"].bids
    other = EnvConfig(mechanism="first_price", n_buyers=3)
    with pytest.raises(ValueError, match=r"solved for.*n_buyers': 2.*n_buyers': 3"):
        agents.for_market("equilibrium", {"path": str(tmp_path / "eq.json")}, other)


def test_load_refuses_what_is_not_a_solution(tmp_path):
    bad = tmp_path / "x.json"
    bad.write_text(json.dumps({"format": "something else"}))
    with pytest.raises(ValueError, match="not an equilibrium solution"):
        load_solution(bad)


def test_simulate_plays_kind_equilibrium_with_the_config_solve_section():
    config = ExperimentConfig(
        env=EnvConfig(mechanism="first_price", n_buyers=2),
        agents={"buyer": AgentSpec(kind="equilibrium")},
        episodes=2000,
        solve=FAST,
    )
    result = play(config)
    # revenue equivalence: E[max bid] = E[max value] / 2 = 1/3
    assert result["revenue"] == pytest.approx(1.0 / 3.0, abs=0.02)


def test_solve_command_json_out_and_plot(tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        "env: {mechanism: gsp, n_buyers: 3, n_slots: 2}\n"
        "solve: {values: 24, bids: 41, iterations: 300, refine: 2}\n"
    )
    out, png = tmp_path / "sol", tmp_path / "p.png"
    assert (
        main(["solve", str(cfg), "--json", "--out", str(out), "--plot", str(png)]) == 0
    )
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1
    data = json.loads(lines[0])
    assert set(data) == {"roles", "iterations", "seconds", "converged"}
    assert data["converged"] is True
    assert set(data["roles"]["buyer"]) == {"values", "bids", "utility_loss"}
    assert len(data["roles"]["buyer"]["bids"]) == 24
    assert load_solution(out).roles["buyer"].bids == data["roles"]["buyer"]["bids"]
    assert png.stat().st_size > 0


def test_solve_command_error_is_one_line(tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("env: {mechanism: cda, n_buyers: 2}\n")
    assert main(["solve", str(cfg)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert err.startswith("attn-market solve: error: no equilibrium solver")


# --- long validations against theory (benchmarks/solver.py prints the same) ---


@pytest.mark.slow
@pytest.mark.parametrize("n", [2, 3, 4, 5])
def test_first_price_n_bidders_l2_to_bne(n):
    sol = solve(EnvConfig(n_buyers=n), SolveConfig())
    r = sol.roles["buyer"]
    assert _l2(r.bids, (n - 1) / n * np.asarray(r.values)) <= 0.01


@pytest.mark.slow
def test_first_price_two_equal_units():
    env = EnvConfig(n_buyers=4, n_slots=2)
    r = solve(env, SolveConfig()).roles["buyer"]
    assert _l2(r.bids, first_price_bne(4, 2)(np.asarray(r.values))) <= 0.01


@pytest.mark.slow
def test_first_price_with_a_reserve():
    env = EnvConfig(n_buyers=3, mechanism_params={"reserve": 0.3})
    r = solve(env, SolveConfig()).roles["buyer"]
    v = np.asarray(r.values)
    star = first_price_bne(3, 1, reserve=0.3)(v)
    assert _l2(np.asarray(r.bids)[v >= 0.3], star[v >= 0.3]) <= 0.01
    assert np.all(np.asarray(r.bids)[v < 0.3] == 0.0)


@pytest.mark.slow
@pytest.mark.parametrize(
    "env",
    [
        EnvConfig(mechanism="vcg", n_buyers=4, n_slots=3),
        EnvConfig(mechanism="mcafee", n_buyers=3, n_sellers=3),
    ],
)
def test_truthful_formats_reach_truthful_bidding(env):
    s = SolveConfig(values=32, bids=51, iterations=600)
    sol = solve(env, s)
    for role, r in sol.roles.items():
        v, b = np.asarray(r.values), np.asarray(r.bids)
        # where bidding matters (a chance to trade), the bid is the value
        keep = (v > 0.1) & (v < 0.9)
        assert _l2(b[keep], v[keep]) <= 0.03, role
        assert r.utility_loss <= 0.02, role


@pytest.mark.slow
def test_gsp_three_slots_by_the_independent_monte_carlo_measure():
    # strategy_metrics.utility_loss clears the library's mechanism on sampled
    # opponents: a second opinion on the solver's own loss (0.008)
    from attn_env.strategy_metrics import utility_loss

    env = EnvConfig(mechanism="gsp", n_buyers=5, n_slots=3)
    sol = solve(env, SolveConfig())
    fns = [sol.bid_function("buyer")] * 5
    res = utility_loss(env, fns, 0, np.random.default_rng(0), samples=4000, bids=201)
    assert res["utility_loss"] <= 0.015
    truthful = utility_loss(env, [np.asarray] * 5, 0, np.random.default_rng(0))
    assert truthful["utility_loss"] > 0.2  # truthful GSP is far from equilibrium


@pytest.mark.slow
def test_bilateral_k_double_reaches_an_epsilon_equilibrium_near_cs():
    # many equilibria (Chatterjee–Samuelson's linear one, Leininger–Linhart–
    # Radner's step ones): the solver ends near a step equilibrium, an
    # epsilon-equilibrium that trades less efficiently than the linear 27/32
    from attn_env.equilibria import CS_EFFICIENCY, chatterjee_samuelson

    env = EnvConfig(mechanism="k_double", n_buyers=1, n_sellers=1)
    sol = solve(env, SolveConfig())
    for role, r in sol.roles.items():
        v, b = np.asarray(r.values), np.asarray(r.bids)
        trade = v >= 0.25 if role == "buyer" else v <= 0.75
        star = chatterjee_samuelson(0.5, role)(v)
        assert _l2(b[trade], star[trade]) <= 0.05, role
        assert r.utility_loss <= 0.03, role
    x = (np.arange(400) + 0.5) / 400
    v, c = np.meshgrid(x, x, indexing="ij")
    trade = sol.bid_function("buyer")(v) >= sol.bid_function("seller")(c)
    efficiency = ((v - c) * trade).sum() / np.maximum(v - c, 0.0).sum()
    assert 0.75 <= efficiency <= CS_EFFICIENCY + 0.01


def test_evaluate_uses_the_numerical_reference_where_no_closed_form(tmp_path):
    from attn_env.config import TrainConfig
    from runner.evaluate import evaluate
    from training import train

    config = ExperimentConfig(
        env=EnvConfig(mechanism="gsp", n_buyers=3, n_slots=2, action="shade"),
        agents={"buyer": AgentSpec(kind="learn")},
        episodes=100,
        train=TrainConfig(
            total_timesteps=256,
            num_envs=8,
            n_steps=16,
            batch_size=64,
            net_arch=[16],
            device="cpu",
        ),
        solve=FAST,
    )
    train(config, tmp_path / "run", progress=False)
    res = evaluate(config, tmp_path / "run", episodes=100, samples=200)
    assert res["reference"] == "numerical"
    assert 0.0 <= res["bne_l2"] <= 1.0


class _HalfRelevance:
    """theta ~ U[low, high], relevance 1/2, alpha = (1, 1/2, ...): a known
    empirical law (unit values U[0, 1/2]) and known slot weights."""

    name = "half_relevance"

    def __init__(self, dist="uniform", low=0.0, high=1.0):
        self.low, self.high = low, high

    def draw(self, rng, batch, n_buyers, n_slots):
        from attn_env.valuations import Draw

        theta = rng.uniform(self.low, self.high, size=(batch, n_buyers))
        alpha = np.tile(0.5 ** np.arange(n_slots), (batch, 1))
        return Draw(theta=theta, relevance=np.full_like(theta, 0.5), alpha=alpha)


def test_empirical_values_and_slot_weights_of_a_valuation_source():
    from attn_env import valuations

    if "half_relevance" not in valuations.source_names():
        valuations.register_source("half_relevance", _HalfRelevance)
    env = EnvConfig(mechanism="first_price", n_buyers=2, valuation="half_relevance")
    sol = solve(env, FAST)
    r = sol.roles["buyer"]
    assert max(r.values) < 0.5  # quantiles of the empirical theta * r
    assert _l2(r.bids, np.asarray(r.values) / 2) <= 0.01  # BNE on U[0, 1/2]
    gsp = EnvConfig(mechanism="gsp", n_buyers=3, n_slots=2, valuation="half_relevance")
    assert solve(gsp, FAST).market["weights"] == [1.0, 0.5]

"""Affiliated values in the market itself, not only in the solver: the uniform
source's ``valuation_params.common`` draws ``v_i = low + (high - low) (w c +
(1 - w) e_i)``, one setting with ``solve.prior: {kind: common_noise}``, so
``simulate`` plays the market the solver solved and ``evaluate`` measures a
policy in it (the opponents' values drawn given the bidder's own).

References: the correlation of two values is ``w^2 / (w^2 + (1 - w)^2)``;
the brute-force best reply of ``attn_env.equilibria.affiliated_best_reply_gain``
works from the prior alone; truthful bidding stays dominant in second price.
"""

from __future__ import annotations

import numpy as np
import pytest

from attn_env.config import (
    ConfigError,
    ExperimentConfig,
    SolvePrior,
    from_dict,
    validate_experiment,
)
from attn_env.equilibria import affiliated_best_reply_gain, bne_strategy, truthful
from attn_env.strategy_metrics import utility_loss, value_grid
from attn_env.valuations import draw_values
from attn_env.valuations.uniform import UniformSource


def config(
    env: dict | None = None, solve: dict | None = None, **top
) -> ExperimentConfig:
    c = from_dict(
        ExperimentConfig,
        {"env": {"n_buyers": 2, **(env or {})}, "solve": solve or {}, **top},
    )
    validate_experiment(c)
    return c


pytestmark = pytest.mark.usefixtures("module_solver_cache")


@pytest.mark.parametrize("w", [0.25, 0.5, 0.75])
def test_the_source_draws_the_affiliated_law(w):
    theta = (
        UniformSource(low=0.2, high=1.2, common=w)
        .draw(np.random.default_rng(0), 200_000, 3, 1)
        .theta
    )
    assert theta.min() >= 0.2 and theta.max() <= 1.2
    corr = np.corrcoef(theta[:, 0], theta[:, 2])[0, 1]
    assert corr == pytest.approx(w**2 / (w**2 + (1 - w) ** 2), abs=0.01)
    assert theta.mean() == pytest.approx(0.7, abs=0.005)


def test_without_common_the_draws_are_the_independent_ones():
    a = UniformSource(low=0.0, high=2.0, common=0.0).draw(
        np.random.default_rng(5), 100, 4, 1
    )
    b = draw_values(np.random.default_rng(5), (100, 4), "uniform", 0.0, 2.0)
    assert np.array_equal(a.theta, b)


def test_the_env_plays_affiliated_markets():
    from attn_env.observation import VALUE
    from attn_env.vector import vector_env

    c = config({"valuation_params": {"common": 0.5}})
    obs, _ = vector_env(num_envs=20_000, config=c.env).reset(seed=0)
    corr = np.corrcoef(obs[:, 0, VALUE], obs[:, 1, VALUE])[0, 1]
    assert corr == pytest.approx(0.5, abs=0.03)


def test_either_side_sets_both():
    by_prior = config(solve={"prior": {"kind": "common_noise", "common": 0.3}})
    assert by_prior.env.valuation_params == {"common": 0.3}
    by_env = config({"valuation_params": {"common": 0.3}})
    assert by_env.solve.prior == SolvePrior(kind="common_noise", common=0.3)
    assert config().env.valuation_params == {}  # independent stays independent
    with pytest.raises(ConfigError, match=r"common \(0.3\) and solve.prior.common"):
        config(
            {"valuation_params": {"common": 0.3}},
            {"prior": {"kind": "common_noise", "common": 0.5}},
        )


@pytest.mark.parametrize(
    ("env", "match"),
    [
        ({"valuation_params": {"common": 1.0}}, r"number in \[0, 1\), got 1.0"),
        ({"valuation_params": {"common": "high"}}, "got 'high'"),
        (
            {"valuation_params": {"common": 0.5}, "value_dist": "beta"},
            "needs value_dist: uniform, got 'beta'",
        ),
    ],
)
def test_bad_common_is_one_line(env, match):
    with pytest.raises(ConfigError, match=match):
        config(env)


def test_opponent_draws_need_independent_values():
    with pytest.raises(ConfigError, match="opponent_draws 8 needs independent"):
        config(
            {"valuation_params": {"common": 0.5}},
            agents={"buyer": {"kind": "learn"}},
            train={"opponent_draws": 8},
        )


def test_only_dominant_strategies_keep_their_closed_form():
    aff = {"valuation_params": {"common": 0.5}}
    assert bne_strategy(config(aff).env, "buyer") is None
    assert bne_strategy(config({**aff, "mechanism": "second_price"}).env, "buyer") is (
        truthful
    )


def test_the_value_grid_is_the_marginal_of_the_affiliated_law():
    grid = value_grid(config({"valuation_params": {"common": 0.5}}).env, "buyer", 4)
    # v = (c + e) / 2 is triangular on [0, 1]: F(v) = 2 v^2 under 1/2
    exact = np.array([np.sqrt(0.125 / 2), np.sqrt(0.375 / 2)])
    np.testing.assert_allclose(grid[:2], exact, atol=0.003)
    np.testing.assert_allclose(grid[2:], 1.0 - exact[::-1], atol=0.003)


def test_the_utility_loss_conditions_on_the_own_value():
    """``v / 2`` (the independent answer) against itself: the loss equals the
    brute-force best reply's from the prior alone; the independent measure
    (opponents unconditional) would not see it."""
    env = config({"valuation_params": {"common": 0.5}}).env
    half = [lambda v: 0.5 * np.asarray(v)] * 2
    ours = utility_loss(env, half, 0, np.random.default_rng(0), samples=1000)
    brute = affiliated_best_reply_gain(half[0], 0.5)
    assert ours["utility_loss"] == pytest.approx(brute, abs=0.006)
    assert brute > 0.05
    plain = config().env
    assert (
        utility_loss(plain, half, 0, np.random.default_rng(0))["utility_loss"] < 0.005
    )


def test_truthful_second_price_has_no_loss_and_shading_has_some():
    env = config({"mechanism": "second_price", "valuation_params": {"common": 0.5}}).env
    rng = np.random.default_rng(1)
    honest = utility_loss(env, [truthful] * 2, 0, rng, samples=1000)
    assert honest["utility_loss"] < 1e-3
    shaded = [lambda v: 0.7 * np.asarray(v), truthful]
    assert utility_loss(env, shaded, 0, rng, samples=1000)["utility_loss"] > 0.02


def test_the_solvers_equilibrium_plays_in_the_affiliated_market():
    """``kind: equilibrium`` plays the solver's affiliated answer, in the
    market the env now draws it is (nearly) a best reply to itself, and
    ``evaluate`` measures policies against it."""
    from runner.evaluate import _reference
    from runner.seats import build_agents

    c = config(
        {"valuation_params": {"common": 0.5}}, agents={"buyer": {"kind": "equilibrium"}}
    )
    players = build_agents(c, ["buyer_0", "buyer_1"])
    fns = [players[n]._buyer for n in ("buyer_0", "buyer_1")]
    loss = utility_loss(c.env, fns, 0, np.random.default_rng(0), samples=1000)
    assert loss["utility_loss"] < 0.02
    assert affiliated_best_reply_gain(fns[0], 0.5) < 0.01
    star, kind = _reference(c, "buyer", "buyer_0")
    v = np.linspace(0.05, 0.95, 19)
    assert kind == "numerical"
    np.testing.assert_array_equal(star(v), fns[0](v))

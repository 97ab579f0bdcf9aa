"""ROI-constrained bidders (``solve.roi_target``): the closed forms of
``attn_env.equilibria.roi_bne`` checked by a brute-force best reply, and the
solver against them."""

from __future__ import annotations

import numpy as np
import pytest

from attn_env.checks import ConfigError
from attn_env.config import EnvConfig, SolveConfig, SolveUtility
from attn_env.equilibria import roi_bne
from attn_env.errors import UserError
from attn_env.solver import game_from_config, solve
from tests.helpers import tiny_first_price_run

CASES = [
    ("first_price", 2, 1.5),  # binds: 0.4 v, not v / 2
    ("first_price", 3, 0.2),  # does not bind: 2/3 v
    ("second_price", 2, 1.5),  # binds: 0.8 v, not truthful
    ("second_price", 3, 1.0),  # binds: 0.75 v
]


def _best_reply(mech: str, n: int, target: float, slope: float, v: float) -> float:
    """The best feasible bid of value ``v`` against ``n - 1`` opponents bidding
    ``slope * U[0, 1]``, on a grid of 20,001 bids (closed-form A and P)."""
    b = np.linspace(0.0, 1.0, 20_001)
    x = np.minimum(b, slope) / slope  # opponents' value at the bid
    win = x ** (n - 1)
    pay = b * win if mech == "first_price" else slope * (n - 1) / n * x**n
    ok = v * win >= (1.0 + target) * pay - 1e-12
    return float(b[np.argmax(np.where(ok, v * win - pay, -np.inf))])


@pytest.mark.parametrize(("mech", "n", "target"), CASES)
def test_closed_form_is_a_best_reply_to_itself(mech, n, target):
    fn = roi_bne(mech, n, target)
    slope = float(fn(np.array(1.0)))
    for v in (0.2, 0.5, 0.9):
        assert abs(_best_reply(mech, n, target, slope, v) - slope * v) <= 1e-4


@pytest.mark.parametrize(("mech", "n", "target"), CASES[::2])
def test_unconstrained_equilibrium_is_not_one(mech, n, target):
    """The risk-neutral equilibrium breaks the constraint where it binds."""
    plain = (n - 1) / n if mech == "first_price" else 1.0
    reply = _best_reply(mech, n, target, plain, 0.8)
    assert abs(reply - plain * 0.8) > 0.05


@pytest.mark.parametrize(("mech", "n", "target"), CASES)
def test_solver_finds_the_closed_form(mech, n, target):
    env = EnvConfig(mechanism=mech, n_buyers=n)
    sol = solve(env, SolveConfig(cache=False, roi_target=target))
    r = sol.roles["buyer"]
    v, b = np.asarray(r.values), np.asarray(r.bids)
    ref = roi_bne(mech, n, target)(v)
    assert np.sqrt(np.mean((b - ref) ** 2)) <= 0.02
    assert r.utility_loss <= 0.02
    assert sol.market["roi_target"] == target


def test_infeasible_bids_score_under_zero():
    """Game.utility: a bid that breaks the constraint is worse than bidding 0."""
    env = EnvConfig(n_buyers=2)
    game = game_from_config(env, SolveConfig(roi_target=1.0), np.random.default_rng(0))
    v = np.array([0.5])
    qty, money = np.array([0.0, 0.5, 0.5]), np.array([0.0, 0.1, 0.2])
    u = game.utility(0, v, qty, money)[0]
    # bid 0: 0; ROI (0.25 - 0.1) / 0.1 >= 1: feasible; (0.25 - 0.2) / 0.2 < 1: not
    assert u[0] == 0.0 and u[1] == pytest.approx(0.15) and u[2] < 0.0


def test_refusals():
    rng = np.random.default_rng(0)
    with pytest.raises(ConfigError, match="risk-neutral"):
        game_from_config(
            EnvConfig(n_buyers=2),
            SolveConfig(roi_target=0.5, utility=SolveUtility("crra", 0.5)),
            rng,
        )
    with pytest.raises(ConfigError, match="one-sided"):
        game_from_config(
            EnvConfig(mechanism="k_double"), SolveConfig(roi_target=0.5), rng
        )


# ------------------------------------------------ evaluate under an ROI target
def _experiment(mech: str, n: int, target: float, **env):
    from attn_env.config import ExperimentConfig, from_dict, validate_experiment

    c = from_dict(
        ExperimentConfig,
        {
            "env": {"mechanism": mech, "n_buyers": n, **env},
            "solve": {"roi_target": target},
        },
    )
    validate_experiment(c)
    return c


@pytest.mark.parametrize(("mech", "n", "target"), CASES)
def test_evaluate_measures_against_the_roi_closed_form(mech, n, target):
    from runner.evaluate import _reference

    star, kind = _reference(_experiment(mech, n, target), "buyer", "buyer_0")
    v = np.linspace(0.0, 1.0, 11)
    assert kind == "analytic"
    np.testing.assert_allclose(star(v), roi_bne(mech, n, target)(v))


def test_evaluate_solves_where_no_closed_form_applies(tmp_path, monkeypatch):
    """Values from 0.2: no closed form here, the solver's ROI equilibrium,
    which still respects the constraint ``b <= v / (1 + target)``."""
    from runner.evaluate import _reference

    monkeypatch.setenv("ATTN_MARKET_CACHE", str(tmp_path))
    star, kind = _reference(
        _experiment("first_price", 2, 1.5, value_low=0.2), "buyer", "buyer_0"
    )
    v = np.linspace(0.25, 1.0, 16)
    assert kind == "numerical"
    assert np.all(star(v) <= v / 2.5 + 0.02)


def test_the_utility_loss_prices_the_constraint():
    """The ROI equilibrium has no loss under its target; the unconstrained
    ``v / 2`` breaks the constraint (a loss over 1: worse than bidding 0) yet
    has none without the target."""
    from attn_env.strategy_metrics import utility_loss

    env = _experiment("first_price", 2, 1.5).env
    eq = [roi_bne("first_price", 2, 1.5)] * 2
    half = [lambda v: 0.5 * np.asarray(v)] * 2

    def loss(fns, target):
        rng = np.random.default_rng(0)
        return utility_loss(env, fns, 0, rng, samples=4000, roi_target=target)

    assert 0.0 <= loss(eq, 1.5)["utility_loss"] < 0.005
    broken = loss(half, 1.5)
    assert broken["u_learned"] < 0.0 and broken["utility_loss"] > 1.0
    assert loss(half, None)["utility_loss"] < 0.005
    crra = EnvConfig(mechanism="first_price", utility=SolveUtility("crra", 0.5))
    with pytest.raises(UserError, match="needs risk-neutral buyers"):
        utility_loss(crra, half, 0, np.random.default_rng(0), roi_target=1.5)


@pytest.mark.usefixtures("restore_torch_threads")
def test_evaluate_reports_the_roi_target_and_its_reference(tmp_path):
    """A trained run evaluated under ``roi_target: 1.5``: ``bne_l2`` is the
    distance of its bid function to ``0.4 v``, not to ``v / 2``."""
    pytest.importorskip("stable_baselines3")
    from attn_env.strategy_metrics import bne_l2, value_grid
    from runner.evaluate import evaluate, strategies_for
    from training import train
    from training.policy import load_policy

    c = tiny_first_price_run({"roi_target": 1.5})
    train(c, tmp_path / "run", progress=False)
    res = evaluate(c, tmp_path / "run", samples=500)
    assert res["roi_target"] == 1.5 and res["reference"] == "analytic"
    _, fns = strategies_for(
        c, load_policy(tmp_path / "run"), np.random.default_rng(c.seed)
    )
    grid = value_grid(c.env, "buyer", 1000)
    want = bne_l2(fns[0], roi_bne("first_price", 2, 1.5), grid)
    assert res["bne_l2"] == pytest.approx(want, rel=1e-9)
    assert res["bne_l2"] != pytest.approx(
        bne_l2(fns[0], lambda v: 0.5 * np.asarray(v), grid), rel=1e-3
    )


def test_the_bne_agent_plays_the_roi_closed_form():
    """``kind: bne`` under ``solve.roi_target`` plays ``roi_bne``, not the
    unconstrained ``v / 2``, and refuses in one line where none is known."""
    from attn_env.config import ExperimentConfig, from_dict, validate_experiment
    from runner.seats import build_agents

    def bne_config(**env):
        c = from_dict(
            ExperimentConfig,
            {
                "env": {"n_buyers": 2, **env},
                "agents": {"buyer": {"kind": "bne"}},
                "solve": {"roi_target": 1.5},
            },
        )
        validate_experiment(c)
        return c

    agent = build_agents(bne_config(), ["buyer_0"])["buyer_0"]
    v = np.linspace(0.0, 1.0, 11)
    np.testing.assert_allclose(agent._buyer(v), 0.4 * v)
    with pytest.raises(UserError, match="no analytic ROI-constrained BNE"):
        build_agents(bne_config(value_low=0.2), ["buyer_0"])

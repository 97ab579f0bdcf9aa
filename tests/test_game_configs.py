"""The shipped game configs (``configs/games/``) play the equilibrium their
comments name: each loads, ``simulate`` runs it, its ``kind: equilibrium``
seats bid within an L2 of 0.02 of the closed form of ``attn_env.equilibria``,
and ``evaluate`` measures against that closed form (or, with affiliated
values, the solver's answer)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from attn_env import equilibria
from attn_env.config import load_config
from attn_env.strategy_metrics import utility_loss, value_grid
from runner.evaluate import _reference
from runner.seats import build_agents
from runner.simulate import play

GAMES = Path(__file__).resolve().parent.parent / "configs" / "games"

EXACT = {
    "asymmetric_fpsb": lambda seat: equilibria.asymmetric_first_price_bne(0.5, 1.0)[
        int(seat[-1])
    ],
    "crra_fpsb": lambda seat: equilibria.crra_first_price_bne(4, 0.5),
    "roi_fpsb": lambda seat: equilibria.roi_bne("first_price", 2, 1.5),
    "all_pay": lambda seat: equilibria.all_pay_bne(3),
    "affiliated_fpsb": None,  # no closed form: the solver's answer
    "war_of_attrition": lambda seat: equilibria.war_of_attrition_bne,
}
NUMERICAL = {"affiliated_fpsb", "war_of_attrition"}
"Games whose reference in evaluate is the solver's answer."
UP_TO = {"war_of_attrition": 0.9}
"Values up to which the closed form holds (above: types pooled at max_bid)."


pytestmark = pytest.mark.usefixtures("module_solver_cache", "unplug_formats")


def test_every_game_config_is_checked_here():
    assert sorted(p.stem for p in GAMES.glob("*.yaml")) == sorted(EXACT)


@pytest.mark.parametrize("name", sorted(EXACT))
def test_the_config_plays_its_equilibrium(name):
    c = load_config(GAMES / f"{name}.yaml")
    seats = [f"buyer_{i}" for i in range(c.env.n_buyers)]
    players = build_agents(c, seats)
    res = play(c, episodes=2000, progress=False)
    assert res["episodes"] == 2000 and set(res["agent_kinds"].values()) == {
        "equilibrium"
    }
    for seat in seats:
        star, kind = _reference(c, "buyer", seat)
        grid = value_grid(equilibria_env(c, seat), "buyer", 200)
        grid = grid[grid <= UP_TO.get(name, np.inf)]
        played = players[seat]._buyer(grid)
        if name in NUMERICAL:
            assert kind == "numerical"
            np.testing.assert_array_equal(star(grid), played)
        else:
            assert kind == "analytic"
            np.testing.assert_allclose(star(grid), EXACT[name](seat)(grid))
        if EXACT[name] is not None:
            exact = EXACT[name](seat)(grid)
            assert np.sqrt(np.mean((played - exact) ** 2)) <= 0.02, seat


def equilibria_env(c, seat):
    """The seat's own market (its class's value range)."""
    from attn_env.strategy_metrics import seat_env

    return seat_env(c.env, seat)


def test_all_pay_closed_form_is_a_best_reply_and_first_price_shading_is_not():
    c = load_config(GAMES / "all_pay.yaml")
    rng = np.random.default_rng(0)
    eq = [equilibria.all_pay_bne(3)] * 3
    # all-pay's payoff is flat near the best bid, so the best of 101 noisy
    # candidates gains by chance: 0.03 / 0.02 / 0.007 at 1k / 4k / 16k samples
    assert utility_loss(c.env, eq, 0, rng, samples=16_000)["utility_loss"] < 0.012
    fp = [equilibria.first_price_bne(3, 1, 0.0, 1.0)] * 3  # 2/3 v: pays too much
    assert utility_loss(c.env, fp, 0, rng, samples=4000)["utility_loss"] > 0.2


def test_war_of_attrition_pays_the_lesser_of_its_bid_and_the_highest_other():
    from attn_env.solver.formats import WarOfAttrition

    out = WarOfAttrition().clear(
        np.array([[0.2, 0.5, 0.4], [0.7, 0.7, 0.1]]),
        weights=np.ones(1),
        rng=np.random.default_rng(0),
    )
    np.testing.assert_array_equal(out.pay[0], [0.2, 0.4, 0.4])
    np.testing.assert_array_equal(out.alloc[0], [0.0, 1.0, 0.0])
    np.testing.assert_array_equal(out.pay[1], [0.7, 0.7, 0.1])  # a tie: both pay
    assert out.alloc[1, :2].sum() == 1.0 and out.alloc[1, 2] == 0.0
    reserve = WarOfAttrition(reserve=0.3).clear(
        np.array([[0.2, 0.5]]), weights=np.ones(1), rng=np.random.default_rng(0)
    )
    np.testing.assert_array_equal(reserve.pay[0], [0.0, 0.3])  # the least price


def test_war_of_attrition_best_replies_bid_past_the_value():
    """evaluate's candidate bids reach the env's max_bid (3 here): the capped
    closed form, which bids past the value from v = 0.8, is nearly a best
    reply, and bidding half the value is far from one."""
    c = load_config(GAMES / "war_of_attrition.yaml")
    rng = np.random.default_rng(0)
    capped = [lambda v: np.minimum(equilibria.war_of_attrition_bne(v), 3.0)] * 2
    assert utility_loss(c.env, capped, 0, rng, samples=4000)["utility_loss"] < 0.02
    half = [lambda v: 0.5 * np.asarray(v)] * 2
    assert utility_loss(c.env, half, 0, rng, samples=4000)["utility_loss"] > 0.2

"""The compute market's PettingZoo env and its commands (train -> evaluate ->
compare -> audit) on a tiny config: API, seeding, economics, errors."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from pettingzoo.test import parallel_api_test

from attn_env.errors import UserError
from attn_env.scenarios import compute_market as cm
from attn_env.scenarios.compute_env import OBS_FIELDS, ComputeBooks, ComputeMarketEnv
from attn_env.scenarios.compute_play import deviation_gain, play
from attn_market.cli import main

TINY = {
    "scenario": "compute_market",
    "populations": 3,
    "markets": 12,
    "periods": 6,
    "report_last": 3,
    "n_buyers": 3,
    "n_sellers": 2,
    "jobs_per_buyer": 2,
    "cost_steps": 2,
    "pool_size": 512,
    "train": {
        "timesteps": 160,
        "num_envs": 1,
        "n_steps": 16,
        "batch_size": 40,
        "n_epochs": 1,
        "eval_every": 80,
        "eval_episodes": 2,
        "device": "cpu",
    },
}


def tiny(**changes) -> cm.ComputeMarketConfig:
    return cm.load({**TINY, **changes})


def _write(tmp_path: Path, name: str = "compute.yaml", **changes) -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump({**TINY, **changes}))
    return path


# --- the env ------------------------------------------------------------------


def test_parallel_api():
    parallel_api_test(ComputeMarketEnv(tiny()), num_cycles=20)


def test_reset_is_seeded_and_draws_do_not_depend_on_actions():
    env = ComputeMarketEnv(tiny())

    def episode(seed, shade):
        obs, _ = env.reset(seed=seed)
        rewards, supply = [], [env.books.ap.copy()]
        while env.agents:
            _, r, *_ = env.step({a: np.array([shade], np.float32) for a in env.agents})
            rewards.append(list(r.values()))
            supply.append(env.books.ap.copy())
        return obs, np.array(rewards), np.stack(supply)

    a, ra, sa = episode(5, 0.1)
    b, rb, _ = episode(5, 0.1)
    _, rc, sc = episode(5, 0.4)
    d, *_ = episode(6, 0.1)
    assert all(np.array_equal(a[k], b[k]) for k in a) and np.array_equal(ra, rb)
    assert not np.array_equal(a["buyer_0"], d["buyer_0"])
    # common random numbers: one seed draws the same capacities whatever the
    # traders do (which jobs arrive depends on which slots they emptied)
    assert np.array_equal(sa, sc) and not np.array_equal(ra, rc)
    assert ra.shape == (TINY["periods"], 5)


def test_observation_names_role_and_own_book():
    env = ComputeMarketEnv(tiny())
    obs, _ = env.reset(seed=1)
    assert len(OBS_FIELDS) == env.observation_space("buyer_0").shape[0]
    assert obs["buyer_0"][0] == 1 and obs["buyer_0"][1] == 0
    assert obs["seller_1"][0] == 0 and obs["seller_1"][1] == 1
    books = env.books
    # a seller's own price is its capacity-weighted mean cost per GFLOP
    q, cost = books.aq[0, :, 1], books.ap[0, :, 1]
    want = np.log((q * cost).sum() / q.sum() / env.config.cost_median)
    assert obs["seller_1"][2] == pytest.approx(want, rel=1e-5)


def test_rewards_are_utilities_and_budget_balances():
    # uniform price: payments equal receipts, so the traders' utilities in a
    # market sum to its gains from trade at true values
    env = ComputeMarketEnv(tiny())
    env.reset(seed=2)
    bp, ap = env.books.price[0].copy(), env.books.ap[0].copy()
    _, rewards, *_ = env.step({a: np.array([0.2], np.float32) for a in env.agents})
    period = env.last_period
    assert np.allclose(period.outcome.budget_surplus, 0.0, atol=1e-9)
    total = period.market_utility[0].sum(axis=-1)  # [B]
    assert np.allclose(total, period.outcome.welfare(bp, ap))
    eff = period.measures["efficiency"][0]
    assert np.all(eff[np.isfinite(eff)] <= 1 + 1e-9)
    scale = env.books.reward_scale()
    got = np.array([rewards[a] for a in env.possible_agents]) * scale
    assert np.allclose(got, period.market_utility[0].mean(axis=0))


def test_truthful_schedules_are_efficient_at_the_walrasian_price():
    r = play(tiny(), "truthful", seed=3, populations=2)["per_population"]
    assert np.allclose(r["efficiency"], 1.0) and np.allclose(r["abs_price_gap"], 0.0)
    assert np.all(r["utility"] > 0)


def test_deviation_gain_is_one_clear_per_deviation():
    c = tiny()
    books = ComputeBooks(c, populations=2)
    books.reset(np.random.default_rng(0))
    grid = np.array([0.0, 0.3, 0.6])
    shade = np.full((2, 5), 0.1)
    gain = deviation_gain(books, shade, grid)
    assert gain.shape == (2, 5, 3)
    for t in (0, 4):  # a buyer and a seller, one clear per shading
        base = books.utilities(shade[:, None])[:, 0, t]
        for g, x in enumerate(grid):
            s = shade.copy()
            s[:, t] = x
            got = books.utilities(s[:, None])[:, 0, t] - base
            assert np.allclose(gain[:, t, g], got)


def test_env_refuses_bad_actions_by_agent():
    env = ComputeMarketEnv(tiny())
    env.reset(seed=0)
    acts = {a: np.array([0.1], np.float32) for a in env.agents}
    with pytest.raises(UserError, match=r"seller_1 must be in \[-20, 20\]"):
        env.step({**acts, "seller_1": np.array([25.0])})
    with pytest.raises(UserError, match=r"buyer_2 must be in .*nan"):
        env.step({**acts, "buyer_2": np.array([np.nan])})
    with pytest.raises(UserError, match="no action for buyer_0"):
        env.step({a: v for a, v in acts.items() if a != "buyer_0"})
    with pytest.raises(UserError, match="before reset"):
        ComputeMarketEnv(tiny()).step(acts)


def test_config_refuses_a_bad_train_block():
    with pytest.raises(Exception, match=r"train\.n_epochs"):
        tiny(train={"n_epochs": 0})
    with pytest.raises(Exception, match="unknown"):
        tiny(train={"epochs": 2})


def test_hill_climber_in_play_is_the_scenarios_learner():
    # the env's books with the hill climber learn like simulate's: shading
    # moves by shade_step per period from shade_init
    c = tiny(periods=4, report_last=4)
    r = play(c, "hill", seed=0, populations=2)
    sh = np.array(r["curves"]["buyer_shading"])
    assert sh[0] == pytest.approx(c.shade_init)
    assert np.all(np.abs(np.diff(sh)) <= c.shade_step + 1e-12)


# --- the commands -------------------------------------------------------------


def test_train_evaluate_compare_audit(tmp_path, capsys):
    path, run = _write(tmp_path), tmp_path / "run"
    assert main(["train", str(path), "--out", str(run), "--no-progress"]) == 0
    assert "trader-periods" in capsys.readouterr().out
    record = json.loads((run / "compute_market.json").read_text())
    assert record["curve"][0]["timesteps"] == 0
    assert all(p["score"] == -p["br_gain"] <= 0 for p in record["curve"])
    assert main(["evaluate", str(path), "--policy", str(run), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    rows = {r["label"]: r for r in out["by_bidders"]}
    assert set(rows) == {"policy", "hill", "truthful"}
    assert rows["truthful"]["efficiency"]["mean"] == pytest.approx(1.0)
    assert rows["hill"]["buyer_shading"]["mean"] > 0
    diffs = {d["label"]: d for d in out["differences"]}
    assert diffs["policy - truthful"]["efficiency"]["se"] is not None

    other = _write(tmp_path, "trade_reduction.yaml", rule="trade_reduction")
    assert main(["compare", str(path), str(other), "--json"]) == 0
    cmp_ = json.loads(capsys.readouterr().out)
    assert len(cmp_["designs"]) == 4
    tr = {d["label"]: d for d in cmp_["differences"]}
    # trade reduction drops the marginal steps of truthful traders: less volume
    assert tr["trade_reduction - compute (truthful)"]["volume_ratio"]["mean"] < 0


def test_audit_counts_no_violations_and_finds_demand_reduction(tmp_path, capsys):
    out_dir = tmp_path / "audit"
    path = _write(tmp_path)
    assert main(["audit", str(path), "--out", str(out_dir)]) == 0
    report = json.loads((out_dir / "audit.json").read_text())
    inv = report["invariants"]
    assert inv["periods_checked"] == 2 * TINY["periods"]
    for key in (
        "budget_deficit",
        "budget_imbalance",
        "overfilled_step",
        "supply_exceeded",
        "unbalanced_volume",
        "price_outside_margins",
        "individual_rationality",
    ):
        assert inv[key] == 0, key
    inc = report["incentives"]
    # a uniform price is not truthful for multi-unit traders: shading pays
    assert inc["br_gain"]["mean"] > 0 and not inc["truthful_is_equilibrium"]


def test_compare_refuses_different_population_counts(tmp_path, capsys):
    a = _write(tmp_path)
    b = _write(tmp_path, "b.yaml", populations=4)
    assert main(["compare", str(a), str(b)]) != 0
    assert "same populations" in capsys.readouterr().err


def test_simulate_leaves_the_train_block_out():
    result = cm.simulate(dataclasses.replace(tiny(), compare_unit=False, learn=False))
    assert "train" not in result["config"]


def test_unit_demand_books_are_one_unit_call_markets():
    from attn_env import mechanisms

    books = ComputeBooks(tiny(), populations=2, unit=True)
    books.reset(np.random.default_rng(4))
    assert books.left.shape == (2, TINY["markets"], 3, 1) and np.all(books.left == 1)
    bids, asks = books.price[..., 0].reshape(-1, 3), books.ap[..., 0].reshape(-1, 2)
    period = books.step(np.zeros((2, 5)))
    ref = mechanisms.make("call_market", k=0.5).clear(bids, asks)
    np.testing.assert_array_equal(period.outcome.buyer_qty, ref.alloc)
    np.testing.assert_allclose(period.outcome.clearing_price, ref.clearing_price)
    assert books.reward_scale() == tiny().cost_median
    r = play(tiny(), "truthful", seed=3, populations=2, unit=True)["per_population"]
    assert np.allclose(r["efficiency"], 1.0) and "served_value_share" not in r


def test_cli_names_a_bad_config_value(tmp_path, capsys):
    path = _write(tmp_path, shade_max=1.5)
    assert main(["audit", str(path)]) == 2
    assert "shade_max must be in [0, 1), got 1.5" in capsys.readouterr().err


def test_actions_squash_to_shadings_from_truthful_to_shade_max():
    from attn_env.scenarios.compute_env import ACTION_MAX, shading_of

    s = shading_of(np.array([-ACTION_MAX, 0.0, ACTION_MAX]), 0.9)
    assert s[0] < 1e-8 and s[1] == 0.45 and s[2] == pytest.approx(0.9, abs=1e-8)
    assert np.all(np.diff(shading_of(np.linspace(-20, 20, 101), 0.9)) > 0)
    env = ComputeMarketEnv(tiny())
    env.reset(seed=8)
    env.step({a: np.array([-ACTION_MAX], np.float32) for a in env.agents})
    eff = env.last_period.measures["efficiency"]
    assert np.allclose(eff[np.isfinite(eff)], 1.0)
    env.step({a: np.array([0.0], np.float32) for a in env.agents})
    assert np.all(env.books.last_shade == 0.45)

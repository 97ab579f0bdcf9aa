"""``attn-market simulate`` and its episode loop: known answers through the env."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np
import pytest

import agents
import attn_env
from attn_env import mechanisms
from attn_env.config import AgentSpec, EnvConfig, ExperimentConfig, load_config
from attn_env.market_log import summarize
from attn_market.commands import simulate as simulate_cmd
from runner.results import jsonable
from runner.simulate import play

CONFIGS = Path(__file__).resolve().parent.parent / "configs"
OWN_CONFIGS = mechanisms.names()  # configs/<mechanism>.yaml, one each
REQUIRED = ("efficiency", "revenue", "welfare", "mean_price", "mean_utility")


def _config(seed: int = 0, **env) -> ExperimentConfig:
    kinds = env.pop("kinds", {"buyer": "truthful"})
    return ExperimentConfig(
        seed=seed,
        env=EnvConfig(**env),
        agents={role: AgentSpec(kind=k) for role, k in kinds.items()},
    )


@pytest.mark.parametrize("n", [2, 3, 5])
def test_second_price_truthful_revenue(n):
    # docs/design.md#known-answers: revenue = E[2nd highest of n U[0,1]] =
    # (n-1)/(n+1), through the whole stack (config -> agents -> vector env ->
    # mechanism -> metrics).
    episodes = 20_000
    cfg = _config(seed=n, mechanism="second_price", n_buyers=n)
    res = play(cfg, episodes=episodes, progress=False)
    var = 2 * (n - 1) / ((n + 1) ** 2 * (n + 2))  # of the 2nd highest value
    se = np.sqrt(var / episodes)
    assert res["revenue"] == pytest.approx((n - 1) / (n + 1), abs=4 * se)
    assert res["efficiency"] == pytest.approx(1.0)
    assert res["ir_violations"] == 0


@pytest.mark.parametrize("n", [2, 3, 5])
def test_revenue_equivalence_first_price_bne_vs_second_price(n):
    episodes = 20_000
    fp = _config(mechanism="first_price", n_buyers=n, kinds={"buyer": "bne"})
    sp = _config(seed=1, mechanism="second_price", n_buyers=n)
    r_fp = play(fp, episodes=episodes, progress=False)["revenue"]
    r_sp = play(sp, episodes=episodes, progress=False)["revenue"]
    # first price: (n-1)/n * max, variance ((n-1)/n)^2 n/((n+1)^2 (n+2));
    # second price: 2nd highest, variance 2(n-1)/((n+1)^2 (n+2))
    var_fp = ((n - 1) / n) ** 2 * n / ((n + 1) ** 2 * (n + 2))
    var_sp = 2 * (n - 1) / ((n + 1) ** 2 * (n + 2))
    se = np.sqrt((var_fp + var_sp) / episodes)
    assert r_fp == pytest.approx(r_sp, abs=4 * se)
    assert r_fp == pytest.approx((n - 1) / (n + 1), abs=4 * np.sqrt(var_fp / episodes))


def test_zi_c_in_cda_is_allocatively_efficient():
    # Gode & Sunder (1993): ZI-C traders reach ~0.97-0.99 on their schedules; with
    # values and costs U[0,1] a long trading period reaches ~0.955 (docs).
    cfg = _config(
        mechanism="cda",
        n_buyers=10,
        n_sellers=10,
        rounds=200,
        redraw="episode",
        kinds={"buyer": "zi_c", "seller": "zi_c"},
    )
    res = play(cfg, episodes=1500, progress=False)
    assert res["efficiency"] >= 0.95
    assert res["budget_surplus"] == pytest.approx(0.0, abs=1e-9)  # trades at one price
    assert res["ir_violations"] == 0
    # cumulative efficiency only grows through the period
    eff = np.array(res["series"]["efficiency"])
    assert np.all(np.diff(eff) >= -1e-12) and eff[-1] == pytest.approx(
        res["efficiency"]
    )


def test_k_double_chatterjee_samuelson_efficiency():
    cfg = load_config(CONFIGS / "k_double.yaml")
    res = play(cfg, episodes=40_000, progress=False)
    assert res["efficiency"] == pytest.approx(27 / 32, abs=0.01)
    assert res["budget_surplus"] == pytest.approx(0.0, abs=1e-9)


def test_pacing_keeps_spend_within_budget_through_the_env():
    budget, rounds = 1.0, 10
    env = attn_env.vector_env(
        256, mechanism="first_price", n_buyers=2, rounds=rounds, budget=budget
    )
    pacers = [agents.for_market("pacing", {}, env.config) for _ in env.agents]
    rng = np.random.default_rng(0)
    for p in pacers:
        p.reset(env.num_envs, rng)
    obs, _ = env.reset(seed=0)
    spent = np.zeros((env.num_envs, 2))
    for _ in range(rounds):
        acts = np.stack([p.act(obs[:, j], rng) for j, p in enumerate(pacers)], 1)
        obs, _, term, _, info = env.step(acts)
        spent += info["payment"]
    assert term.all()
    assert spent.max() <= budget + 1e-9
    # unpaced, a winner would pay ~0.5 a round; paced, the budget is used up
    assert spent.sum(axis=1).mean() > 1.5 * budget


def test_play_result_keys_and_reproducibility():
    cfg = load_config(CONFIGS / "mcafee.yaml")
    a = play(cfg, episodes=50, num_envs=16, progress=False)
    b = play(cfg, episodes=50, num_envs=16, progress=False)
    assert a == b
    for key in (
        *REQUIRED,
        "budget_surplus",
        "ir_violations",
        "price_std",
        "walrasian_distance",
        "gini_utility",
        "gini_exposure",
        "series",
    ):
        assert key in a
    names = [f"buyer_{i}" for i in range(10)] + [f"seller_{i}" for i in range(10)]
    assert list(a["mean_utility"]) == names
    assert a["episodes"] == 50 and a["budget_surplus"] >= 0  # McAfee: no deficit
    json.dumps(jsonable(a), allow_nan=False)


def test_play_counts_exactly_the_requested_episodes():
    cfg = _config(mechanism="second_price", n_buyers=2)
    res = play(cfg, episodes=10, num_envs=4, progress=False)
    assert res["episodes"] == 10
    assert res["series"]["x_label"] == "episode" and len(res["series"]["x"]) == 10


def test_play_uses_given_agents():
    cfg = _config(mechanism="second_price", n_buyers=2)
    zero = agents.make("shading", shade=0.0)  # buyer_1 bids 0 and never wins
    res = play(cfg, agents={"buyer_1": zero}, episodes=200, progress=False)
    assert res["exposure_share"] == {"buyer_0": 1.0, "buyer_1": 0.0}
    assert res["agent_kinds"]["buyer_1"] == "ShadingAgent"
    # buyer_0 wins every round at the reserve price 0: utility = E[v] = 1/2
    assert res["mean_utility"]["buyer_0"] == pytest.approx(0.5, abs=0.1)
    with pytest.raises(ValueError, match="buyer_7"):
        play(cfg, agents={"buyer_7": zero}, episodes=2, progress=False)


@pytest.mark.parametrize("name", ["stable_matching", "assignment"])
def test_truthful_matchings_have_no_blocking_pairs(name):
    cfg = _config(mechanism=name, n_buyers=5, n_slots=3, rounds=2)
    res = play(cfg, episodes=300, progress=False)
    assert res["blocking_pairs"] == 0.0
    assert res["efficiency"] == pytest.approx(1.0)


def test_shading_in_stable_matching_leaves_blocking_pairs():
    # buyer_0 bids a tenth of its value: it loses slots it values more than their
    # holders do, and (buyer_0, slot) blocks under the true values.
    cfg = _config(mechanism="stable_matching", n_buyers=4, n_slots=2)
    low = agents.make("shading", shade=0.1)
    res = play(cfg, agents={"buyer_0": low}, episodes=400, progress=False)
    assert res["blocking_pairs"] > 0.2
    assert res["efficiency"] < 1.0
    # not a matching: no stability figure
    assert "blocking_pairs" not in play(
        _config(mechanism="gsp", n_buyers=3, n_slots=2), episodes=4, progress=False
    )


def test_summarize_counts_blocking_pairs_by_hand():
    # one slot, values 0.9 and 0.5; buyer_1 holds the slot: (buyer_0, slot 0) blocks
    rec = {
        "value": np.array([[[0.9, 0.5]]]),
        "bid": np.array([[[0.3, 0.5]]]),
        "alloc": np.array([[[0.0, 1.0]]]),
        "payment": np.array([[[0.0, 0.5]]]),
        "utility": np.array([[[0.0, 0.0]]]),
        "active": np.ones((1, 1, 2)),
        "clearing_price": np.array([[0.5]]),
        "alpha": np.ones((1, 1, 1)),
        "slot": np.array([[[-1, 0]]]),
    }
    names = ["buyer_0", "buyer_1"]
    assert summarize(rec, names, 2, "matching")["blocking_pairs"] == 1.0
    # a reserve above buyer_0's value: it no longer wants the slot
    res = summarize(rec, names, 2, "matching", reserve=0.95)
    assert res["blocking_pairs"] == 0.0
    rec["slot"] = np.array([[[0, -1]]])  # the efficient match is stable
    assert summarize(rec, names, 2, "matching")["blocking_pairs"] == 0.0


def test_learn_kind_is_rejected_with_the_agent_named():
    cfg = _config(mechanism="first_price", n_buyers=2, kinds={"buyer": "learn"})
    with pytest.raises(ValueError, match=r"'buyer_0' has kind 'learn'"):
        play(cfg, episodes=2, progress=False)


def test_bad_agent_params_name_the_agent():
    cfg = ExperimentConfig(
        env=EnvConfig(mechanism="gsp", n_buyers=3, n_slots=2),
        agents={"buyer": AgentSpec(kind="bne")},
    )
    with pytest.raises(ValueError, match=r"buyer_0.*gsp"):
        play(cfg, episodes=2, progress=False)


def test_summarize_hand_case():
    # one second-price round: values 0.9 and 0.5, truthful; buyer_0 pays 0.5
    rec = {
        "value": np.array([[[0.9, 0.5]]]),
        "bid": np.array([[[0.9, 0.5]]]),
        "alloc": np.array([[[1.0, 0.0]]]),
        "payment": np.array([[[0.5, 0.0]]]),
        "utility": np.array([[[0.4, 0.0]]]),
        "active": np.ones((1, 1, 2)),
        "clearing_price": np.array([[0.5]]),
        "alpha": np.ones((1, 1, 1)),
    }
    res = summarize(rec, ["buyer_0", "buyer_1"], 2, "one_sided")
    assert res["efficiency"] == pytest.approx(1.0)
    assert res["revenue"] == pytest.approx(0.5)
    assert res["welfare"] == pytest.approx(0.9)
    assert res["walrasian_distance"] == pytest.approx(0.0)  # 0.5 in [0.5, 0.9]
    assert res["mean_utility"] == {"buyer_0": pytest.approx(0.4), "buyer_1": 0.0}
    assert res["gini_exposure"] == pytest.approx(0.5)
    assert res["series"]["walrasian_low"] == [pytest.approx(0.5)]
    # an overpaying truthful winner is an IR violation
    rec["payment"] = np.array([[[1.0, 0.0]]])
    rec["utility"] = np.array([[[-0.1, 0.0]]])
    assert summarize(rec, ["buyer_0", "buyer_1"], 2, "one_sided")["ir_violations"] == 1


def test_float32_rounding_of_a_truthful_bid_is_no_ir_violation():
    # First price, truthful: the action float32(v) may exceed v by ~v * 2^-24, so
    # the winner loses ~1e-8. That rounding is tolerated; a real overpayment is
    # counted even when the bid itself carries the same rounding.
    v = 0.6  # float32(0.6) > 0.6
    bid = float(np.float32(v))
    assert bid > v
    rec = {
        "value": np.array([[[v, 0.2]]]),
        "bid": np.array([[[bid, 0.2]]]),
        "alloc": np.array([[[1.0, 0.0]]]),
        "payment": np.array([[[bid, 0.0]]]),
        "utility": np.array([[[v - bid, 0.0]]]),
        "active": np.ones((1, 1, 2)),
        "clearing_price": np.array([[bid]]),
        "alpha": np.ones((1, 1, 1)),
    }
    names = ["buyer_0", "buyer_1"]
    assert summarize(rec, names, 2, "one_sided")["ir_violations"] == 0
    rec["payment"] = np.array([[[v + 1e-6, 0.0]]])
    rec["utility"] = np.array([[[-1e-6, 0.0]]])
    assert summarize(rec, names, 2, "one_sided")["ir_violations"] == 1
    # the tolerance is relative: a winner paying 2.5x its value at the 1e-10
    # scale is a violation, although the loss (1.5e-10) is tiny in absolute terms
    tiny = {
        **rec,
        "value": np.array([[[1e-10, 0.2e-10]]]),
        "bid": np.array([[[1e-10, 0.2e-10]]]),
        "payment": np.array([[[2.5e-10, 0.0]]]),
        "utility": np.array([[[-1.5e-10, 0.0]]]),
        "clearing_price": np.array([[2.5e-10]]),
    }
    assert summarize(tiny, names, 2, "one_sided")["ir_violations"] == 1


@pytest.mark.parametrize("name", OWN_CONFIGS)
def test_every_config_loads_and_simulates(name):
    cfg = load_config(CONFIGS / f"{name}.yaml")
    assert cfg.env.mechanism == name
    res = play(cfg, episodes=8, num_envs=4, progress=False)
    assert set(REQUIRED) <= set(res)
    assert 0.0 <= res["efficiency"] <= 1.0 + 1e-9


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="attn-market")
    simulate_cmd.register(parser.add_subparsers(dest="command", required=True))
    return parser


def test_simulate_command_json_and_plot(tmp_path, capsys):
    png = tmp_path / "plot.png"
    args = _parser().parse_args(
        [
            "simulate",
            str(CONFIGS / "cda.yaml"),
            "--json",
            "--episodes",
            "20",
            "--num-envs",
            "10",
            "--plot",
            str(png),
        ]
    )
    assert args.func(args) == 0
    out = capsys.readouterr().out
    data = json.loads(out)  # one JSON object, nothing else on stdout
    assert set(REQUIRED) <= set(data) and data["episodes"] == 20
    assert len(data["series"]["price"]) == 100
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in tmp_path.iterdir()] == ["plot.png"]  # no temp files left
    umask = os.umask(0)
    os.umask(umask)
    assert png.stat().st_mode & 0o777 == 0o666 & ~umask  # not mkstemp's 0o600


def test_simulate_command_table(capsys):
    args = _parser().parse_args(
        ["simulate", str(CONFIGS / "second_price.yaml"), "--episodes", "50"]
    )
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "allocative efficiency" in out and "buyer_1" in out


def test_cli_main_prints_json(capsys):
    from attn_market.cli import main

    code = main(["simulate", str(CONFIGS / "vcg.yaml"), "--json", "--episodes", "30"])
    assert code == 0
    data = json.loads(capsys.readouterr().out)
    assert set(REQUIRED) <= set(data)
    assert data["mean_utility"].keys() == {f"buyer_{i}" for i in range(4)}


def test_cli_main_reports_config_errors(tmp_path, capsys):
    from attn_market.cli import main

    bad = tmp_path / "bad.yaml"
    bad.write_text("env: {mechanism: cda, n_buyer: 3}\n")
    assert main(["simulate", str(bad), "--json"]) == 2
    captured = capsys.readouterr()
    assert "n_buyer" in captured.err and captured.out == ""


def test_cli_main_refuses_a_plot_into_a_missing_folder(tmp_path, capsys):
    from attn_market.cli import main

    png = tmp_path / "missing" / "plot.png"
    code = main(["simulate", str(CONFIGS / "vcg.yaml"), "--plot", str(png)])
    assert code == 2
    assert "missing" in capsys.readouterr().err and not png.exists()


def test_simulate_command_seed_override(capsys):
    parser = _parser()
    runs = []
    for seed in ("1", "1", "2"):
        args = parser.parse_args(
            [
                "simulate",
                str(CONFIGS / "second_price.yaml"),
                "--json",
                "--episodes",
                "64",
                "--seed",
                seed,
            ]
        )
        assert args.func(args) == 0
        runs.append(json.loads(capsys.readouterr().out))
    assert runs[0]["seed"] == 1 and runs[2]["seed"] == 2
    assert runs[0]["revenue"] == runs[1]["revenue"] != runs[2]["revenue"]

"""``attn-market compare``: designs side by side on common random numbers."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from attn_env.config import (
    AgentSpec,
    EnvConfig,
    ExperimentConfig,
    TrainConfig,
    load_config,
)
from attn_market.cli import main
from runner.compare import compare, with_behaviour
from runner.simulate import play

CONFIGS = Path(__file__).resolve().parent.parent / "configs"


def _design(mechanism: str, kind: str = "truthful", **env) -> ExperimentConfig:
    return ExperimentConfig(
        env=EnvConfig(mechanism=mechanism, **env),
        agents={"buyer": AgentSpec(kind=kind)},
    )


def _sp(reserve: float = 0.0, n: int = 2) -> ExperimentConfig:
    return _design("second_price", n_buyers=n, mechanism_params={"reserve": reserve})


def test_common_random_numbers_pair_and_beat_unpaired():
    # two close designs: reserve 0 and 0.05 with 3 bidders differ only when the
    # second value is under 0.05, so the paired difference is nearly noiseless
    res = compare([("r0", _sp(0.0, 3)), ("r05", _sp(0.05, 3))], episodes=4000)
    (d,) = res["differences"]
    assert d["paired"] and d["pairing"] == "common random numbers"
    rev = d["figures"]["revenue"]
    assert rev["se"] < rev["se_unpaired"] / 10
    assert rev["df"] == 3999
    # the same values were drawn: the first-best welfare is the same, exactly
    assert d["figures"]["welfare"]["diff"] == pytest.approx(0.0, abs=1e-3)


def test_revenue_equivalence_ci_covers_zero_across_seeds():
    # first price at the BNE b(v) = v/2 and second price truthful, n = 2: equal
    # expected revenue; the paired 95% interval covers 0 in about 19 of 20 seeds
    fp, sp = _design("first_price", "bne"), _design("second_price")
    hits = 0
    for seed in range(20):
        res = compare([("sp", sp), ("fp", fp)], episodes=2000, seed=seed)
        (d,) = res["differences"]
        assert d["paired"]
        lo, hi = d["figures"]["revenue"]["ci"]
        hits += lo < 0.0 < hi
        assert d["figures"]["efficiency"]["diff"] == pytest.approx(0.0, abs=1e-9)
    assert hits >= 17


def test_reserve_difference_matches_closed_form():
    # n = 2, U[0,1], reserve r = 1/2: revenue 1/3 + r^2 - 4r^3/3 = 5/12, so
    # +1/12 over no reserve; no sale when both values are under r loses
    # E[max; max < r] = 2r^3/3 = 1/12 of the first-best 2/3: efficiency -1/8
    hits = {"revenue": 0, "efficiency": 0}
    want = {"revenue": 1 / 12, "efficiency": -1 / 8}
    for seed in range(20):
        res = compare([("none", _sp()), ("r", _sp(0.5))], episodes=2000, seed=seed)
        figures = res["differences"][0]["figures"]
        for key, target in want.items():
            lo, hi = figures[key]["ci"]
            hits[key] += lo < target < hi
    assert min(hits.values()) >= 17


def test_different_shapes_are_unpaired_with_welch():
    res = compare([("n2", _sp(0.0, 2)), ("n3", _sp(0.0, 3))], episodes=3000)
    (d,) = res["differences"]
    assert not d["paired"]
    assert "n_buyers differs (2 vs 3)" in d["pairing"]
    rev = d["figures"]["revenue"]
    assert rev["se"] == rev["se_unpaired"]
    a, b = res["designs"]
    assert rev["se"] == pytest.approx(math.hypot(a["revenue_se"], b["revenue_se"]))
    # (n-1)/(n+1): 1/2 - 1/3
    assert rev["ci"][0] < 1 / 6 < rev["ci"][1]


def test_values_and_errors_match_simulate():
    cfg = load_config(CONFIGS / "gsp.yaml")
    res = compare(
        [("gsp", cfg), ("vcg", load_config(CONFIGS / "vcg.yaml"))], episodes=1500
    )
    alone = play(cfg, episodes=1500, progress=False)
    row = res["designs"][0]
    for key in ("revenue", "efficiency", "welfare", "mean_price"):
        assert row[key] == pytest.approx(alone[key], rel=1e-12)
        assert row[f"{key}_se"] == pytest.approx(alone[f"{key}_se"], rel=1e-9)
    assert res["differences"][0]["paired"]  # same n, K: same draws


def test_behaviour_truthful_overrides_every_seat():
    fp = load_config(CONFIGS / "first_price.yaml")  # bne in the config
    res = compare([("fp", fp), ("sp", _sp())], behaviour="truthful", episodes=4000)
    row = res["designs"][0]
    assert set(row["agent_kinds"].values()) == {"truthful"}
    # truthful in first price: the winner pays its value, E[max] = 2/3
    assert row["revenue"] == pytest.approx(2 / 3, abs=4 * row["revenue_se"])
    bilateral = with_behaviour(load_config(CONFIGS / "k_double.yaml"), "truthful")
    assert bilateral.agent_spec("seller_0").kind == "truthful"


def test_with_behaviour_bad_inputs():
    cfg = _sp()
    assert with_behaviour(cfg, None) is cfg
    with pytest.raises(ValueError, match="unknown behaviour 'greedy'"):
        with_behaviour(cfg, "greedy")
    with pytest.raises(ValueError, match="does not exist"):
        with_behaviour(cfg, "policy", "/nonexistent/run")
    with pytest.raises(ValueError, match="policy' only"):
        with_behaviour(cfg, "truthful", "runs/x")
    with pytest.raises(ValueError, match="at least two designs"):
        compare([("one", cfg)])


def test_cli_json_and_plot(tmp_path, capsys):
    png = tmp_path / "cmp.png"
    code = main(
        [
            "compare",
            str(CONFIGS / "second_price.yaml"),
            str(CONFIGS / "first_price.yaml"),
            "--episodes",
            "500",
            "--json",
            "--plot",
            str(png),
        ]
    )
    assert code == 0
    data = json.loads(capsys.readouterr().out)  # one object, nothing else
    assert [r["name"] for r in data["designs"]] == ["second_price", "first_price"]
    assert data["designs"][1]["config"].endswith("first_price.yaml")
    assert data["differences"][0]["against"] == "second_price"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_table(capsys):
    sp = str(CONFIGS / "second_price.yaml")
    assert main(["compare", sp, sp, "--episodes", "300", "--seed", "4"]) == 0
    out = capsys.readouterr().out
    assert "second_price#2" in out and "95% CI" in out and "±" in out
    assert "common random numbers" in out


@pytest.mark.parametrize(
    ("argv", "culprit"),
    [
        (["{sp}"], "at least two configs"),
        ([], "baseline), got 0"),
        (["{sp}", "{sp}", "--behaviour", "greedy"], "'greedy'"),
        (["{sp}", "{sp}", "--behaviour", "policy"], "one run folder"),
        (["{sp}", "{sp}", "--behaviour", "policy", "/nonexistent/run"], "exist"),
        (["--behaviour", "truthful", "{sp}", "{sp}"], "before --behaviour"),
        (["{sp}", "{sp}", "--episodes", "0"], "--episodes"),
        (["{sp}", "/nonexistent/b.yaml"], "b.yaml"),
        (["{sp}", "{sp}", "--plot", "/nonexistent/dir/x.png"], "--plot"),
    ],
)
def test_bad_input_is_one_line(argv, culprit, capsys):
    sp = str(CONFIGS / "second_price.yaml")
    code = main(["compare", *(a.replace("{sp}", sp) for a in argv)])
    err = capsys.readouterr().err
    assert code == 2
    assert len(err.splitlines()) == 1, err
    assert err.startswith("attn-market compare: error: ")
    assert culprit in err


def test_behaviour_policy_plays_a_trained_run(tmp_path):
    pytest.importorskip("stable_baselines3")
    from training import train

    run = tmp_path / "run"
    learn = ExperimentConfig(
        env=EnvConfig(mechanism="first_price", n_buyers=2, action="shade"),
        agents={"buyer": AgentSpec(kind="learn")},
        train=TrainConfig(
            total_timesteps=256,
            num_envs=8,
            n_steps=32,
            batch_size=64,
            net_arch=[8],
            device="cpu",
        ),
    )
    train(learn, run, progress=False)
    designs = [("fp", _design("first_price")), ("sp", _sp())]
    res = compare(designs, behaviour="policy", policy=run, episodes=500)
    assert res["behaviour"] == f"policy {run}"
    assert set(res["designs"][0]["agent_kinds"].values()) == {"policy"}
    direct = play(
        with_behaviour(designs[0][1], "policy", run),
        episodes=500,
        num_envs=500,
        progress=False,
    )
    assert res["designs"][0]["revenue"] == pytest.approx(direct["revenue"])
    assert np.isfinite(res["differences"][0]["figures"]["revenue"]["se"])


def test_behaviour_equilibrium_revenue_equivalence():
    # kind: equilibrium in every seat (the numerical BNE, attn_env.solver): first
    # price near b(v) = v/2, second price near truthful; equal expected revenue,
    # so the paired interval covers 0 in about 19 of 20 seeds
    sp, fp = _design("second_price"), _design("first_price")
    hits = 0
    for seed in range(20):
        res = compare(
            [("sp", sp), ("fp", fp)], behaviour="equilibrium", episodes=2000, seed=seed
        )
        assert set(res["designs"][1]["agent_kinds"].values()) == {"equilibrium"}
        lo, hi = res["differences"][0]["figures"]["revenue"]["ci"]
        hits += lo < 0.0 < hi
    assert hits >= 17

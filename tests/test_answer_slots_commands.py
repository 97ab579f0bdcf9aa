"""The answer_slots scenario's commands from the command line, on a tiny config:
train -> evaluate -> compare -> audit, their economics and their errors."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import yaml

from attn_env.config import from_dict
from attn_env.scenarios.answer_slots import CONFIG
from attn_market.cli import main
from runner.scenario_commands import answer_slots as cmd

TINY = {
    "scenario": "answer_slots",
    "markets": 400,
    "mechanisms": ["gsp", "segment_auction"],
    "quality_weights": [0.0, 0.4],
    "learner_rounds": 2,
    "learner_markets": 300,
    "env_markets": 64,
    "env_steps": 2,
    "train": {
        "timesteps": 256,
        "num_envs": 1,
        "n_steps": 32,
        "batch_size": 64,
        "n_epochs": 1,
        "eval_every": 128,
        "eval_episodes": 1,
        "device": "cpu",
    },
}


def _write(tmp_path: Path, name: str = "answer.yaml", **changes) -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump({**TINY, **changes}))
    return path


def test_train_then_evaluate(tmp_path, capsys):
    path, run = _write(tmp_path), tmp_path / "run"
    assert main(["train", str(path), "--out", str(run), "--no-progress"]) == 0
    assert "advertiser-steps" in capsys.readouterr().out
    assert {p.name for p in run.iterdir()} >= {
        "config.yaml",
        "policy.zip",
        "answer_slots.json",
    }
    record = json.loads((run / "answer_slots.json").read_text())
    assert [p["timesteps"] for p in record["curve"]] == [0, 128, 256]
    # the score kept is minus the validation best-response gain
    assert all(p["score"] == -p["br_gain"] >= -1.0 for p in record["curve"])
    assert main(["evaluate", str(path), "--policy", str(run), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["episodes"] == 4 and out["markets_per_episode"] == 128
    assert set(out["summary"]) == {"policy", "truthful", "learner"}
    rows = {r["label"]: r for r in out["by_bidders"]}
    assert len(rows) == 3 * 4
    # truthful bidding is dominant in the segment auction: no deviation gains
    for lam in ("0", "0.4"):
        assert (
            rows[f"truthful segment_auction lambda={lam}"]["br_gain"]["mean"] <= 1e-12
        )
    assert rows["truthful gsp lambda=0"]["br_gain"]["mean"] > 1e-4
    assert rows["truthful gsp lambda=0"]["bid_factor"]["mean"] == 1.0
    diffs = {d["label"]: d for d in out["differences"]}
    assert (
        len(diffs) == 2 * 4
        and diffs["policy - truthful gsp lambda=0"]["revenue"]["se"] is not None
    )


def test_evaluate_refuses_a_missing_run(tmp_path, capsys):
    path = _write(tmp_path)
    code = main(["evaluate", str(path), "--policy", str(tmp_path / "nothing")])
    assert code == 2
    assert "answer_slots run record" in capsys.readouterr().err


def test_compare_pairs_rows_on_the_same_markets(tmp_path, capsys):
    a = _write(tmp_path, "a.yaml")
    b = _write(tmp_path, "b.yaml", reserve=0.05, quality_weights=[0.4, 0.8])
    assert main(["compare", str(a), str(a), str(b), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert len(out["designs"]) == 3 * 4
    diffs = {d["label"]: d for d in out["differences"]}
    # b shares only lambda = 0.4 with the baseline: 4 + 2 paired rows
    assert len(diffs) == 6
    # a config against itself: every paired difference is exactly 0
    for name in ("gsp lambda=0", "gsp lambda=0.4", "segment_auction lambda=0"):
        d = diffs[f"a#2 - a#1: {name}"]
        assert all(d[m]["mean"] == 0.0 and d[m]["se"] == 0.0 for m in cmd.COMPARED)
    # a reserve shuts out low bids: sponsored attention and advertiser utility
    # fall on every market (paired), the organic answer takes the rest
    d = diffs["b - a#1: segment_auction lambda=0.4"]
    assert d["sponsored_share"]["mean"] < 0 and d["advertiser_utility"]["mean"] < 0
    assert d["quality"]["mean"] > 0


def test_compare_refuses_different_markets(tmp_path, capsys):
    a = _write(tmp_path, "a.yaml")
    b = _write(tmp_path, "b.yaml", n_ads=3)
    assert main(["compare", str(a), str(b)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "n_ads is 3" in err[0]


def test_audit_writes_its_report(tmp_path, capsys):
    path = _write(tmp_path, mechanisms=["segment_auction", "prominence_auction", "gsp"])
    out_dir = tmp_path / "audit"
    assert main(["audit", str(path), "--out", str(out_dir)]) == 0
    report = json.loads((out_dir / "audit.json").read_text())
    assert (out_dir / "audit.md").read_text().startswith("# Audit of scenario")
    assert report["truthful_is_a_best_response"] == {
        "segment_auction": True,
        "prominence_auction": True,
        "gsp": False,
    }
    assert report["invariants_hold"] is True
    inc = {r["label"]: r for r in report["incentives"]}
    assert inc["segment_auction lambda=0"]["market_gain_max"] <= 1e-9
    assert inc["segment_auction lambda=0"]["best_factor"] == 1.0
    # GSP: a common shading factor pays, and per market some deviation gains
    assert inc["gsp lambda=0"]["best_factor"] < 1.0
    assert inc["gsp lambda=0"]["factor_gain"]["mean"] > 0
    assert inc["gsp lambda=0"]["markets_over_tolerance"] > 0
    exp = {r["label"]: r for r in report["exposure"]}
    # ads are drawn from the less relevant candidates: organic content is the
    # more relevant per unit of attention wherever both are cited
    assert exp["gsp lambda=0.4"]["relevance_gap"] > 0
    assert exp["segment_auction lambda=0"]["organic_relevance"] is None


def test_audit_finds_a_broken_invariant(monkeypatch):
    """The invariant check is live: payments above the bid break IR."""
    from attn_env.scenarios import answer_slots as sc

    real = sc.clear

    def overcharge(name, mk, bids, lam, c):
        res = real(name, mk, bids, lam, c)
        return {**res, "pay": res["pay"] * 1.5 + 1e-3 * (res["x"] > 0)}

    monkeypatch.setattr(sc, "clear", overcharge)
    config = from_dict(CONFIG, {**TINY, "mechanisms": ["segment_auction"]})
    rows = cmd._invariants(config, sc.Source(3), _markets(config))
    assert all(r["individual_rationality"] > 1e-4 and not r["holds"] for r in rows)


def _markets(config):
    from attn_env.scenarios.answer_slots import Source

    return Source(3).draw(np.random.default_rng(0), 200, config)


def test_simulate_rows_unchanged_by_the_env_settings(tmp_path, capsys):
    """The env and train settings do not touch simulate's rows."""
    outs = []
    for changes in ({}, {"env_markets": 7, "env_steps": 9, "train": {"seed": 4}}):
        assert main(["simulate", str(_write(tmp_path, **changes)), "--json"]) == 0
        outs.append(json.loads(capsys.readouterr().out)["rows"])
    assert outs[0] == outs[1]


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"env_markets": 0}, "env_markets"),
        ({"train": {"keep": "worst"}}, r"answer_slots\.train\.keep"),
        ({"train": {"batchsize": 3}}, "unknown key 'batchsize'"),
    ],
)
def test_bad_train_settings_are_one_line(tmp_path, capsys, changes, match):
    path = _write(tmp_path, **changes)
    assert (
        main(["train", str(path), "--out", str(tmp_path / "r"), "--no-progress"]) == 2
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert re.search(match, err[0])


@pytest.mark.slow
def test_ppo_learns_to_shade_in_gsp(tmp_path):
    """In GSP without organic competition truthful bidding is not an equilibrium
    (the damped best response shades to 0.45); PPO from truthful finds shading
    and cuts the best-response gain (about 1 minute on 2 cores)."""
    from attn_env.scenarios.answer_slots import validate
    from runner.scenarios import read_scenario

    path = _write(
        tmp_path,
        mechanisms=["gsp"],
        quality_weights=[0.0],
        env_markets=256,
        env_steps=4,
        train={"timesteps": 61440, "eval_every": 20480, "eval_episodes": 2},
    )
    _, config = read_scenario(path)
    record = cmd.train(validate(config), tmp_path / "run", progress=False)
    first, kept = record["curve"][0], record["curve"][-1]
    assert record["kept"]["timesteps"] == kept["timesteps"]
    assert first["bid_factor"] > 0.95  # starts near truthful
    assert kept["bid_factor"] < 0.8
    assert kept["br_gain"] < 0.3 * first["br_gain"]


def test_the_sponsored_share_is_what_ads_take_and_empty_positions_are_neither():
    """With a reserve at lambda = 0, GSP leaves positions empty: the sponsored
    share is the ads' attention, and sponsored + organic falls short of 1."""
    from attn_env.scenarios.answer_slots import clear, row_metrics

    config = from_dict(CONFIG, {**TINY, "mechanisms": ["gsp"], "reserve": 0.3})
    mk = _markets(config)
    bids = mk.value.copy()
    res = clear("gsp", mk, bids, 0.0, config)
    rows = row_metrics("gsp", mk, bids, 0.0, config)
    np.testing.assert_allclose(rows["sponsored_share"], res["x"].sum(axis=1))
    unsold = 1.0 - rows["sponsored_share"] - res["organic_share"]
    assert (unsold >= -1e-6).all() and unsold.max() > 0.1  # alpha: float32 sums

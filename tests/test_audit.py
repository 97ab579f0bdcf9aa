"""``attn-market explain`` and ``attn-market audit``: reproducible markets, report keys,
files, one-line errors."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from rich.cells import cell_len

from attn_env.config import ExperimentConfig, from_dict
from attn_market.cli import main
from runner.audit import SECTIONS
from runner.explain import explain
from runner.fairness import FairnessRecorder, floor_costs
from runner.simulate import play_log

GSP = """\
seed: 3
env: {mechanism: gsp, n_buyers: 3, n_slots: 2, rounds: %d,
      valuation_params: {slot_weights: [0.6, 0.4]}}
agents: {buyer: {kind: truthful}, buyer_2: {kind: shading, params: {shade: 0.5}}}
episodes: %d
"""


def _config(tmp_path: Path, rounds: int = 1, episodes: int = 40, text: str = GSP):
    path = tmp_path / "market.yaml"
    path.write_text(text % (rounds, episodes))
    return path


def _load(path: Path) -> ExperimentConfig:
    from attn_env.config import load_config

    return load_config(path)


@pytest.mark.parametrize(
    ("rounds", "episodes", "market"), [(1, 40, 17), (3, 5, 13), (1, 1100, 1050)]
)
def test_explain_is_market_i_of_simulate(tmp_path, rounds, episodes, market):
    config = _load(_config(tmp_path, rounds, episodes))
    rec = FairnessRecorder()
    play_log(config, progress=False, recorders=[rec])
    alloc = rec.arrays()["alloc"]
    ex = explain(config, market)
    assert (ex["episode"], ex["round"]) == divmod(market, rounds)
    got = [r["attention"] for r in ex["records"]]
    np.testing.assert_array_equal(got, alloc[market])
    winners = [r for r in ex["records"] if r["attention"] > 0]
    assert winners and all(r["price_setters"] for r in winners)


def test_explain_cli_table_and_json(tmp_path, capsys):
    path = _config(tmp_path)
    assert main(["explain", str(path), "--market", "2", "--json"]) == 0
    ex = json.loads(capsys.readouterr().out)
    assert ex["market"] == 2 and len(ex["records"]) == 3
    assert main(["explain", str(path), "--market", "2"]) == 0
    out = capsys.readouterr().out
    assert "gsp: market 2" in out and "buyer_2" in out


def test_audit_json_keys_and_files(tmp_path, capsys):
    path = _config(tmp_path)
    out = tmp_path / "report"
    assert (
        main(["audit", str(path), "--json", "--episodes", "30", "--out", str(out)]) == 0
    )
    rep = json.loads(capsys.readouterr().out)
    assert set(SECTIONS) <= set(rep)
    assert rep["collusion"] is None  # no qlearn bidders
    assert {"gini_attention", "gini_surplus", "bidder_disparity"} <= set(
        rep["fairness"]
    )
    assert [r["floor"] for r in rep["floor_costs"]] == pytest.approx(
        [0, 1 / 12, 1 / 6, 1 / 4, 1 / 3]
    )
    assert set(rep["attacks"]) == {"shill", "ring", "fake_traffic"}
    assert rep["explain"]["market"] == 0
    det = rep["detection"]
    assert det["rounds"] == 30 and isinstance(det["collusion_index"], float)
    assert (
        set(det["shill_score"])
        == set(det["exposure_pvalue"])
        == {
            "buyer_0",
            "buyer_1",
            "buyer_2",
        }
    )
    names = {p.name for p in out.iterdir()}
    assert {"audit.json", "audit.md", "fairness.png", "floor_costs.png"} <= names
    assert not [n for n in names if n.startswith(".")]  # no temp files left
    assert json.loads((out / "audit.json").read_text())["market"] == rep["market"]
    assert "## Exposure floor: its cost" in (out / "audit.md").read_text()


TRUTHFUL_GSP = GSP.replace(", buyer_2: {kind: shading, params: {shade: 0.5}}", "")


@pytest.mark.parametrize("columns", [60, 100])
def test_audit_prints_to_fit_and_reads_a_negative_index(
    tmp_path, capsys, monkeypatch, columns
):
    # truthful GSP bidders pay more than the competitive (VCG) price of the top
    # slot: the collusion index is negative, and the report says what that means
    path = _config(tmp_path, episodes=60, text=TRUTHFUL_GSP)
    assert main(["audit", str(path), "--json"]) == 0
    det = json.loads(capsys.readouterr().out)["detection"]
    p, c, k = det["mean_price"], det["competitive_price"], det["collusive_price"]
    assert k == 0.0 and p > c > k
    assert det["collusion_index"] == pytest.approx((c - p) / (c - k)) and (
        det["collusion_index"] < 0
    )
    monkeypatch.setenv("COLUMNS", str(columns))
    assert main(["audit", str(path)]) == 0
    out = capsys.readouterr().out
    assert max(cell_len(line) for line in out.splitlines()) <= columns
    assert "…" not in out
    flat = " ".join(out.split())
    assert f"P = {p:.4f} lies above C = {c:.4f} by {p - c:.4f}" in flat
    assert "negative above C (no lower bound)" in flat and "not collusion" in flat
    assert f"{det['collusion_index']:.4f}" in out
    assert "payment = price / unit x attention" in flat
    for name in ("buyer_0", "buyer_1", "buyer_2", "price set by", "page share"):
        assert name in out


def test_floor_costs_rise_with_the_floor(tmp_path):
    config = dataclasses.replace(_load(_config(tmp_path)), episodes=400)
    rows = floor_costs(config, floors=[0.0, 1 / 3])
    off, lottery = rows
    # the half-shading buyer_2 wins less than its share until the lottery
    assert off["min_share"] < 1 / 3 - 0.05
    assert lottery["lottery_share"] == 1.0 and lottery["revenue"] == 0.0
    assert lottery["min_share"] > off["min_share"]
    assert lottery["efficiency"] < off["efficiency"]


@pytest.mark.parametrize(
    ("argv", "match"),
    [
        (["explain", "{cfg}", "--market", "40"], "market must be in [0, 39]"),
        (["explain", "{cfg}", "--market", "-1"], "market must be in [0, 39]"),
        (["explain", "{cfg}"], "the following arguments are required: --market"),
        (["audit", "{cfg}", "--out", "{file}"], "is not a folder"),
        (["audit", "{cfg}", "--episodes", "1"], "--episodes must be >= 2"),
        (["audit", "{floor}"], "exposure_floor must be a number in [0, 1/n_buyers]"),
        (["audit", "{typo}"], "unknown key 'exposure_flor'"),
    ],
)
def test_bad_input_is_one_line(tmp_path, capsys, argv, match):
    cfg = _config(tmp_path)
    file = tmp_path / "a_file"
    file.write_text("x")
    floor = tmp_path / "floor.yaml"
    floor.write_text(
        cfg.read_text().replace("rounds: 1,", "rounds: 1, exposure_floor: 0.5,")
    )
    typo = tmp_path / "typo.yaml"
    typo.write_text(
        cfg.read_text().replace("rounds: 1,", "rounds: 1, exposure_flor: 0.1,")
    )
    subst = {"{cfg}": cfg, "{file}": file, "{floor}": floor, "{typo}": typo}
    args = [str(subst.get(a, a)) for a in argv]
    try:
        code = main(args)
    except SystemExit as exit_:  # argparse's own usage errors
        code = exit_.code
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert match in err and "\n" not in err


def test_unknown_merit_is_named():
    from runner.fairness import fairness

    config = from_dict(ExperimentConfig, {"episodes": 2})
    with pytest.raises(ValueError, match="merit must be one of relevance, value"):
        fairness(config, merit="clicks")


def test_an_attack_the_agents_cannot_face_is_skipped_with_its_reason():
    from runner.audit import _attacks

    config = from_dict(
        ExperimentConfig,
        {
            "env": {"mechanism": "k_double", "n_buyers": 1, "n_sellers": 1},
            "agents": {"buyer": {"kind": "bne"}, "seller": {"kind": "bne"}},
            "episodes": 10,
        },
    )
    out = _attacks(config, "k_double")
    assert "no analytic BNE" in out["wash"]["skipped"]


def test_learning_agents_audit_one_warmed_run_and_collusion(tmp_path):
    from runner.audit import audit

    config = from_dict(
        ExperimentConfig,
        {
            "env": {"mechanism": "first_price", "value_low": 1.0, "value_high": 1.0},
            "agents": {"buyer": {"kind": "qlearn"}},
            "episodes": 4,
            "warmup": 50,
        },
    )
    rep = audit(config)
    assert "warmup = 50" in rep["floor_costs"]["skipped"]
    assert "warmup = 50" in rep["attacks"]["skipped"]
    assert rep["collusion"]["warmup"] == 50 and rep["collusion"]["seeds"] == 4
    # the detectors read the measured episodes of the same warmed-up run
    assert rep["detection"]["rounds"] == 4
    assert rep["detection"]["collusion_index"] == pytest.approx(
        1.0 - rep["market"]["revenue"]
    )

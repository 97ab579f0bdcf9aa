"""The search-day audit: incentives of scaling one's auto-bidder, invariants of
every played auction and day, and the CLI that writes it."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from attn_env import mechanisms
from attn_env.errors import UserError
from attn_env.scenarios.search_auction import SearchAuction
from attn_env.scenarios.search_config import from_data
from attn_env.scenarios.search_day import play_days
from attn_market.cli import main
from runner.scenario_commands import search_day as cmd

TINY: dict[str, Any] = {
    "scenario": "search_day",
    "days": 2,
    "traffic": {"impressions": 3000, "periods": 4},
    "advertisers": {"n": 8},
    "auction": {"slots": 3},
    "bidders": {"pid": 0.5, "pacing": 0.5},
}


def _config(**changes: Any) -> Any:
    data = json.loads(json.dumps(TINY))
    for key, value in changes.items():
        if isinstance(value, dict):
            data.setdefault(key, {}).update(value)
        else:
            data[key] = value
    return from_data(data)


def _invariant(report: dict[str, Any], label: str) -> dict[str, Any]:
    return next(r for r in report["invariants"] if r["label"] == label)


def test_cli_json_and_out(tmp_path: Path, capsys):
    path = tmp_path / "day.yaml"
    path.write_text(yaml.safe_dump(TINY))
    assert main(["audit", str(path), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["scenario"] == "search_day" and out["days"] == 2
    assert out["invariants_hold"] is True
    assert {r["label"] for r in out["invariants"]} == set(cmd.INVARIANTS)
    assert set(out["by_kind"]) == {"pid", "pacing"}
    assert out["incentives"]["advertisers_sampled"] == cmd.AUDIT_ADVERTISERS
    # the baseline days and every deviation's days were checked
    n_dev = cmd.AUDIT_ADVERTISERS * len(cmd.AUDIT_FACTORS)
    assert out["days_checked"] == 2 * (1 + n_dev)
    assert "demographic_parity" in out["fairness_across_verticals"]
    folder = tmp_path / "audit"
    assert main(["audit", str(path), "--out", str(folder), "--seed", "3"]) == 0
    saved = json.loads((folder / "audit.json").read_text())
    assert saved["invariants_hold"] is True
    md = (folder / "audit.md").read_text()
    assert "# Audit of scenario search_day" in md and "## invariants" in md


def test_factor_one_replays_the_day():
    """Scaling by 1 is no deviation: the deviator's score is the baseline's."""
    config = _config()
    from attn_env.scenarios.search_market import build_market

    market = build_market(config)
    checks = cmd._Checks()
    played = play_days(config, cmd.audited_market(market, checks))
    seeds = [config.seed + d for d in range(config.days)]
    for who in (0, 5):
        got = cmd.deviation_scores(market, played, seeds, who, (1.0,), checks)
        np.testing.assert_array_equal(got[0], [d.score[who] for d in played])
    # a real scaling changes the deviator's day
    got = cmd.deviation_scores(market, played, seeds, 0, (0.5,), checks)
    assert not np.array_equal(got[0], [d.score[0] for d in played])


def test_gains_are_best_responses():
    report = cmd.audit(_config())
    rows = report["deviations"]
    assert all(r["gain"] >= 0 for r in rows)
    assert report["incentives"]["largest_gain"] == max(r["gain"] for r in rows)
    # no factor's mean gain beats the mean of the advertisers' best gains
    best_mean = report["incentives"]["mean_gain"]["mean"]
    assert all(f["gain"]["mean"] <= best_mean + 1e-12 for f in report["gain_by_factor"])
    kinds = {r["label"].split("(")[1].rstrip(")") for r in rows}
    assert kinds == {"pid", "pacing"}  # the sample spans the kinds


def test_known_profitable_deviation():
    """Truthful bidders with targets far above value and budgets that never
    bind: a higher bid buys a higher slot at a CPA under target, so every
    scaling up gains weakly more (monotone in the factor) and someone gains."""
    config = _config(
        bidders={"truthful": 1.0},
        advertisers={"target_cpa": [3.0, 3.0], "budget_conversions": [1e5, 1e5]},
    )
    report = cmd.audit(config)
    gains = [f["gain"]["mean"] for f in report["gain_by_factor"]]
    assert np.all(np.diff(gains) >= -1e-9), gains
    assert gains[-1] > 0 and gains[0] < 0
    assert report["incentives"]["no_profitable_scaling"] is False
    assert all(r["best_factor"] == max(cmd.AUDIT_FACTORS) for r in report["deviations"])
    assert report["invariants_hold"] is True


def test_budget_check_is_live(monkeypatch):
    """With the budget stop switched off, small budgets are overspent."""
    monkeypatch.setattr(
        SearchAuction,
        "_first_overrun",
        staticmethod(lambda s, a, w, left: (len(s), None)),
    )
    report = cmd.audit(
        _config(advertisers={"budget_conversions": [0.5, 1.0]}, bidders={"truthful": 1})
    )
    row = _invariant(report, "budget_never_exceeded")
    assert row["holds"] is False and row["worst_violation"] > 0.1
    assert report["invariants_hold"] is False
    assert _invariant(report, "price_within_bid")["holds"] is True


@pytest.mark.parametrize(
    ("scale", "broken"),
    [(1.5, "price_within_bid"), (-1.0, "payments_non_negative")],
)
def test_price_checks_are_live(monkeypatch, scale, broken):
    """A GSP that charges ``scale`` times its price breaks the matching invariant."""
    cls = type(mechanisms.make("gsp", reserve=0.05))
    clear = cls.clear

    def tampered(self, bids, *args, **kw):
        out = clear(self, bids, *args, **kw)
        return dataclasses.replace(out, price=out.price * scale)

    monkeypatch.setattr(cls, "clear", tampered)
    report = cmd.audit(_config(days=1))
    assert _invariant(report, broken)["holds"] is False
    assert report["invariants_hold"] is False
    assert _invariant(report, "budget_never_exceeded")["holds"] is True


def test_days_capped_and_policy_refused():
    assert cmd.audit(_config(days=5))["days"] == cmd.AUDIT_DAYS
    with pytest.raises(UserError, match="policy"):
        cmd.audit(_config(bidders={"policy": 1.0}))


def test_hindsight_share_with_hindsight_on():
    """With ``hindsight: true`` each kind's share of its best fixed multiplier."""
    row = cmd.audit(_config(days=1, hindsight=True))["by_kind"]["pid"]
    assert row["share_of_best_fixed_lambda"] > 0 and row["share_of_bound"] > 0
    assert row["share_of_bound"] <= 1 + 1e-9  # the bound is an upper bound

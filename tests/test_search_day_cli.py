"""The search-day scenario from the command line, on the shipped traffic and bank."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest
import yaml

from attn_env.scenarios.search_config import load
from attn_market.cli import main

ROOT = Path(__file__).resolve().parents[1]
SMALL = {
    "scenario": "search_day",
    "days": 2,
    "traffic": {"impressions": 4000, "periods": 6},
    "advertisers": {"n": 12},
    "bidders": {"pid": 0.5, "pacing": 0.5},
    "train": {
        "timesteps": 288,
        "parallel_days": 1,
        "eval_every": 144,
        "eval_days": 2,
        "batch_size": 72,
    },
}


def _write(tmp_path: Path, name: str = "day.yaml", **changes) -> Path:
    data = json.loads(json.dumps(SMALL))
    for key, value in changes.items():
        if isinstance(value, dict):
            data.setdefault(key, {}).update(value)
        else:
            data[key] = value
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return path


def test_the_shipped_config_reads():
    c = load(ROOT / "configs/scenarios/search_day.yaml")
    assert (
        c.traffic.impressions,
        c.traffic.periods,
        c.advertisers.n,
        c.auction.slots,
    ) == (
        500_000,
        48,
        48,
        4,
    )


def test_simulate_json(tmp_path, capsys):
    assert main(["simulate", str(_write(tmp_path)), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["scenario"] == "search_day" and out["days"] == 2
    assert out["impressions_per_day"] == 4000 and out["advertisers"] == 12
    assert 0 < out["budget_use"] <= 1
    assert set(out["by_kind"]) == {"pid", "pacing"}
    assert out["by_kind"]["pacing"]["gain_over_pid"] is not None
    assert out["revenue"] <= out["welfare"] + 1e-9 or out["violation_rate"] > 0


def test_simulate_table_and_seed(tmp_path, capsys):
    path = _write(tmp_path)
    assert main(["simulate", str(path), "--seed", "3"]) == 0
    assert "by_kind" in capsys.readouterr().out


def test_unknown_key_is_one_line(tmp_path, capsys):
    path = _write(tmp_path, traffic={"hourz": 3})
    assert main(["simulate", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unknown key 'hourz'" in err[0]


def test_episodes_flag_does_not_apply(tmp_path, capsys):
    assert main(["simulate", str(_write(tmp_path)), "--episodes", "3"]) == 2
    assert "--episodes does not apply" in capsys.readouterr().err


def test_train_then_evaluate(tmp_path, capsys, monkeypatch):
    path = _write(tmp_path)
    run = tmp_path / "run"
    system_tmp = tmp_path / "system_tmp"
    system_tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(system_tmp))
    assert main(["train", str(path), "--out", str(run), "--no-progress"]) == 0
    # SB3 left to itself makes an SB3-<time> folder in the temp folder per learn()
    assert [p.name for p in system_tmp.iterdir() if p.name.startswith("SB3-")] == []
    assert {p.name for p in run.iterdir()} >= {
        "config.yaml",
        "policy.zip",
        "search_day.json",
    }
    capsys.readouterr()
    assert main(["evaluate", str(path), "--policy", str(run), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    kinds = out["by_bidders"]
    assert set(kinds) == {"policy", "pid", "onlinelp", "pacing", "truthful"}
    assert kinds["policy"]["gain_over_pid"]["se"] is not None
    # a second train into the same folder is refused, and nothing is touched
    before = sorted((p.name, p.stat().st_mtime_ns) for p in run.iterdir())
    assert main(["train", str(path), "--out", str(run), "--no-progress"]) == 2
    assert sorted((p.name, p.stat().st_mtime_ns) for p in run.iterdir()) == before


def test_compare_is_paired_over_days(tmp_path, capsys):
    a = _write(tmp_path, "gsp.yaml")
    b = _write(tmp_path, "vcg.yaml", auction={"mechanism": "vcg"})
    assert main(["compare", str(a), str(b), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    (diff,) = out["differences"]
    # VCG prices are at most GSP's for the same bids, but bidders react; the
    # paired difference has an error bar over the two days
    assert diff["revenue"]["se"] is not None


@pytest.mark.parametrize("command", ["solve"])
def test_other_commands_refuse_scenarios_in_one_line(tmp_path, capsys, command):
    path = _write(tmp_path)
    code = main([command, str(path)])
    assert code == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1

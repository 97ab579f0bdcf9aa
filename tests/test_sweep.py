"""``attn-market sweep``: the sweep file's checks, the plan, the table's statistics,
and (``integration``) sweeps on a real local Ray: a small grid whose table equals
the individual ``play`` runs exactly, a failing trial recorded in one line, and a
sweep killed mid-way then resumed without redoing its finished trials."""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from attn_env.checks import ConfigError
from attn_env.errors import UserError
from runner.sweep import (
    MAX_TRIALS,
    SweepFolder,
    flat_metrics,
    load_sweep,
    plan_trials,
    run_trial,
    sweep_plan,
    trial_config_data,
)
from runner.sweep_table import aggregate

ROOT = Path(__file__).resolve().parents[1]

BASE = """seed: 7
env: {mechanism: first_price, n_buyers: 2}
agents: {buyer: {kind: truthful}}
episodes: 50
"""


def _files(tmp_path: Path, sweep: str, base: str = BASE) -> Path:
    (tmp_path / "base.yaml").write_text(base)
    path = tmp_path / "sweep.yaml"
    path.write_text(sweep)
    return path


# -- the sweep file ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sweep", "match"),
    [
        (
            "base: base.yaml\ngrids: {seed: [0]}\n",
            "unknown key 'grids'; known keys: base",
        ),
        ("job: simulate\n", "missing key 'base'"),
        ("base: base.yaml\njob: exploit\n", "unknown job 'exploit'"),
        (
            "base: base.yaml\ngrid: {env.mechansim: [gsp]}\n",
            "env has no key 'mechansim'; known keys: mechanism",
        ),
        ("base: base.yaml\ngrid: {trian.learning_rate: [1]}\n", "no key 'trian'"),
        ("base: base.yaml\ngrid: {seed.x: [1]}\n", "seed is a value, not a section"),
        ("base: base.yaml\ngrid: {seed: 3}\n", "grid.seed: expected a non-empty list"),
        ("base: base.yaml\ngrid: {seed: []}\n", "grid.seed: expected a non-empty list"),
        ("base: base.yaml\nlist: {seed: 1}\n", "list: expected a list of mappings"),
        (
            "base: base.yaml\ngrid: {seed: [0]}\nlist: [{seed: 1}]\n",
            "key 'seed' is also a grid key",
        ),
        ("base: base.yaml\nmetrics: revenue\n", "metrics: expected a list of names"),
        ("base: base.yaml\nconcurrency: -1\n", "concurrency"),
        (
            "base: base.yaml\ngrid: {seed: ["
            + ",".join(map(str, range(1000)))
            + "], episodes: ["
            + ",".join(map(str, range(1, 12)))
            + "]}\n",
            f"11,000 trials, over the cap of {MAX_TRIALS:,}",
        ),
        ("base: nothing.yaml\n", "does not exist"),
    ],
)
def test_a_bad_sweep_file_is_refused_naming_the_key(tmp_path, sweep, match):
    with pytest.raises(UserError, match=match) as err:
        load_sweep(_files(tmp_path, sweep))
    assert "\n" not in str(err.value)


def test_dotted_keys_reach_into_mappings_and_their_sections(tmp_path):
    spec = load_sweep(
        _files(
            tmp_path,
            "base: base.yaml\ngrid:\n  agents.buyer.kind: [truthful, bne]\n"
            "  env.mechanism_params.reserve: [0.0, 0.1]\n"
            "  train.algo_params.ent_coef: [0.01]\n",
        )
    )
    assert len(plan_trials(spec)) == 4
    with pytest.raises(ConfigError, match=r"agents.buyer has no key 'kin'"):
        load_sweep(_files(tmp_path, "base: base.yaml\ngrid: {agents.buyer.kin: [a]}\n"))


def test_a_scenario_sweep_runs_simulate_only(tmp_path):
    with pytest.raises(ConfigError, match="sweeps of scenarios run simulate"):
        load_sweep(
            _files(tmp_path, "base: base.yaml\njob: solve\n", "scenario: feed\n")
        )


def test_the_plan_is_each_list_entry_times_the_grid_in_order(tmp_path):
    spec = load_sweep(
        _files(
            tmp_path,
            "base: base.yaml\nlist: [{env.n_buyers: 2}, {env.n_buyers: 3}]\n"
            "grid: {env.mechanism: [first_price, second_price], seed: [0, 1, 2]}\n"
            "set: {episodes: 10}\n",
        )
    )
    trials = plan_trials(spec)
    assert len(trials) == 2 * 2 * 3
    assert [t.id for t in trials] == [f"t{i:04d}" for i in range(12)]
    assert trials[0].overrides == {
        "env.n_buyers": 2,
        "env.mechanism": "first_price",
        "seed": 0,
    }
    assert trials[4].design == "env.n_buyers=2, env.mechanism=second_price"
    assert trials[4].seed == 1
    # designs: the overrides without the seed, 4 of them with 3 seeds each
    designs = {t.design for t in trials}
    assert len(designs) == 4
    # no seed swept: every trial runs the base's seed
    spec = load_sweep(_files(tmp_path, "base: base.yaml\ngrid: {episodes: [5, 6]}\n"))
    assert [t.seed for t in plan_trials(spec)] == [7, 7]


def test_overrides_are_set_by_dotted_key_into_a_copy():
    base = {"env": {"mechanism": "gsp"}, "seed": 1}
    data = trial_config_data(
        base,
        {"episodes": 5},
        {"env.mechanism_params.reserve": 0.2, "agents.buyer.kind": "bne", "seed": 3},
    )
    assert data == {
        "env": {"mechanism": "gsp", "mechanism_params": {"reserve": 0.2}},
        "seed": 3,
        "episodes": 5,
        "agents": {"buyer": {"kind": "bne"}},
    }
    assert base == {"env": {"mechanism": "gsp"}, "seed": 1}
    with pytest.raises(ConfigError, match="seed is 1, not a section"):
        trial_config_data(base, {}, {"seed.x": 1})


def test_flat_metrics_keeps_numbers_by_dotted_name():
    flat = flat_metrics(
        {
            "a": 1,
            "b": math.nan,
            "c": {"x": np.float64(2.5)},
            "d": "gsp",
            "e": [1],
            "f": True,
        }
    )
    assert flat == {"a": 1.0, "b": None, "c.x": 2.5, "f": 1.0}


# -- the table's statistics ----------------------------------------------------------


def _rec(design, seed, **metrics):
    return {
        "design": design,
        "seed": seed,
        "status": "ok",
        "metrics": metrics,
        "overrides": {"seed": seed},
    }


def test_designs_are_averaged_over_seeds_and_paired_on_shared_seeds():
    a = [0.50, 0.61, 0.55, 0.70]
    b = [0.40, 0.58, 0.41, 0.66]
    records = [_rec("A", s, m=x) for s, x in enumerate(a)]
    records += [_rec("B", s, m=x) for s, x in enumerate(b)]
    records.append(
        {"design": "B", "seed": 9, "status": "failed", "metrics": {}, "overrides": {}}
    )
    out = aggregate(records, ["m"])
    assert [d["design"] for d in out] == ["A", "B"]
    assert (out[1]["ok"], out[1]["failed"]) == (4, 1)
    cell_a, cell_b = out[0]["metrics"]["m"], out[1]["metrics"]["m"]
    assert cell_a["mean"] == pytest.approx(np.mean(a), abs=1e-15)
    assert cell_a["se"] == pytest.approx(np.std(a, ddof=1) / 2)
    assert cell_a["diff"] is None
    d = np.array(b) - np.array(a)
    assert cell_b["paired"] is True and cell_b["pairs"] == 4
    assert cell_b["diff"] == pytest.approx(d.mean())
    assert cell_b["diff_se"] == pytest.approx(np.std(d, ddof=1) / 2)
    # pairing removes the shared seed-to-seed spread
    assert cell_b["diff_se"] < math.hypot(cell_a["se"], cell_b["se"])


def test_designs_without_shared_seeds_are_compared_unpaired():
    records = [
        _rec("A", s, m=x) for s, x in zip((0, 1, 2), (1.0, 2.0, 4.0), strict=True)
    ]
    records += [_rec("B", s, m=x) for s, x in zip((5, 6), (3.0, 5.0), strict=True)]
    cell = aggregate(records, ["m"])[1]["metrics"]["m"]
    se_a = np.std([1.0, 2.0, 4.0], ddof=1) / math.sqrt(3)
    se_b = np.std([3.0, 5.0], ddof=1) / math.sqrt(2)
    assert cell["paired"] is False and cell["pairs"] == 0
    assert cell["diff"] == pytest.approx(4.0 - 7.0 / 3.0)
    assert cell["diff_se"] == pytest.approx(math.hypot(se_a, se_b))


# -- one trial, without Ray ----------------------------------------------------------


def test_a_trial_records_exactly_what_play_returns(tmp_path):
    from attn_env.config import load_config
    from runner.results import jsonable
    from runner.simulate import play

    (tmp_path / "base.yaml").write_text(BASE)
    trial = {
        "id": "t0000",
        "design": "d",
        "seed": 3,
        "overrides": {"env.mechanism": "second_price", "seed": 3},
    }
    out = tmp_path / "out"
    record = run_trial(out, "simulate", tmp_path / "base.yaml", {"episodes": 40}, trial)
    assert record["status"] == "ok"
    config = load_config(tmp_path / "base.yaml")
    config = dataclasses.replace(
        config,
        seed=3,
        episodes=40,
        env=dataclasses.replace(config.env, mechanism="second_price"),
    )
    expected = flat_metrics(jsonable(play(config, progress=False)))
    assert record["metrics"] == expected
    saved = json.loads((out / "trials" / "t0000" / "result.json").read_text())
    assert saved["metrics"] == expected  # floats survive JSON exactly


def test_a_failing_trial_is_one_line_and_keeps_its_traceback(tmp_path):
    (tmp_path / "base.yaml").write_text(BASE)
    trial = {"id": "t0001", "design": "d", "seed": 0, "overrides": {"env.n_buyers": -3}}
    out = tmp_path / "out"
    record = run_trial(out, "simulate", tmp_path / "base.yaml", {}, trial)
    assert record["status"] == "failed"
    assert "n_buyers" in record["error"] and "-3" in record["error"]
    assert "\n" not in record["error"] and "Traceback" not in record["error"]
    assert "Traceback" in (out / "trials" / "t0001" / "error.txt").read_text()


# -- the sweep folder ----------------------------------------------------------------


def test_the_sweep_folder_takes_an_empty_one_or_its_own_sweep_only(tmp_path):
    spec = load_sweep(_files(tmp_path, "base: base.yaml\ngrid: {seed: [0, 1]}\n"))
    plan = sweep_plan(spec, plan_trials(spec))
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(UserError, match=r"is not empty .notes.txt. and holds no sweep"):
        SweepFolder(foreign, plan)
    assert sorted(os.listdir(foreign)) == ["notes.txt"]  # nothing written there
    out = tmp_path / "out"
    folder = SweepFolder(out, plan)
    assert not folder.resumed
    with pytest.raises(UserError, match="in use by another sweep"):
        SweepFolder(out, plan)
    folder.close()
    again = SweepFolder(out, plan)
    assert again.resumed
    again.close()
    other = _files(tmp_path, "base: base.yaml\ngrid: {seed: [0, 1, 2]}\n")
    spec2 = load_sweep(other)
    with pytest.raises(UserError, match=r"holds another sweep .the trials changed"):
        SweepFolder(out, sweep_plan(spec2, plan_trials(spec2)))
    (tmp_path / "base.yaml").write_text(BASE.replace("episodes: 50", "episodes: 51"))
    with pytest.raises(UserError, match="the base config changed"):
        SweepFolder(out, sweep_plan(spec, plan_trials(spec)))


def test_the_sweep_folder_refuses_a_symlinked_trials_folder(tmp_path):
    spec = load_sweep(_files(tmp_path, "base: base.yaml\ngrid: {seed: [0]}\n"))
    out = tmp_path / "out"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    SweepFolder(out, sweep_plan(spec, plan_trials(spec))).close()
    (out / "trials").symlink_to(elsewhere)
    (tmp_path / "base.yaml").write_text(BASE)
    trial = {"id": "t0000", "design": "d", "seed": 0, "overrides": {}}
    with pytest.raises(UserError, match="symlink"):
        run_trial(out, "simulate", tmp_path / "base.yaml", {}, trial)
    assert list(elsewhere.iterdir()) == []


# -- on a real local Ray --------------------------------------------------------------


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.mark.integration
def test_a_grid_on_ray_matches_the_individual_runs_and_records_a_failure(tmp_path):
    from attn_env.config import load_config
    from runner.results import jsonable
    from runner.simulate import play
    from runner.sweep import run_sweep

    sweep = _files(
        tmp_path,
        "base: base.yaml\n"
        "list: [{env.mechanism: first_price}, {env.mechanism: second_price},"
        " {env.mechanism: no_such_auction}]\n"
        "grid: {seed: [0, 1]}\nset: {episodes: 60}\n",
    )
    out = tmp_path / "out"
    table = run_sweep(sweep, out, concurrency=2, progress=False)
    rows = _rows(out / "results.csv")
    assert [r["trial"] for r in rows] == [f"t{i:04d}" for i in range(6)]
    base = load_config(tmp_path / "base.yaml")
    for row in rows[:4]:
        assert row["status"] == "ok", row["error"]
        mech, seed = row["env.mechanism"], int(row["seed"])
        config = dataclasses.replace(
            base,
            seed=seed,
            episodes=60,
            env=dataclasses.replace(base.env, mechanism=mech),
        )
        expected = flat_metrics(jsonable(play(config, progress=False)))
        assert expected.pop("seed") == seed
        for name, value in expected.items():
            assert row[name] == ("" if value is None else repr(value)), name
    for row in rows[4:]:
        assert row["status"] == "failed"
        assert "no_such_auction" in row["error"] and "\n" not in row["error"]
    designs = {d["design"]: d for d in table["designs"]}
    fp = designs["env.mechanism=first_price"]["metrics"]["revenue"]
    sp = designs["env.mechanism=second_price"]["metrics"]["revenue"]
    fp_rev = [float(r["revenue"]) for r in rows[:2]]
    sp_rev = [float(r["revenue"]) for r in rows[2:4]]
    assert fp["mean"] == pytest.approx(np.mean(fp_rev))
    assert sp["diff"] == pytest.approx(np.mean(np.subtract(sp_rev, fp_rev)))
    assert sp["paired"] and sp["pairs"] == 2
    bad = designs["env.mechanism=no_such_auction"]
    assert (bad["ok"], bad["failed"]) == (0, 2)
    stored = json.loads((out / "results.json").read_text())
    assert stored["trials"][0]["metrics"]["revenue"] == fp_rev[0]
    # Tune's files stay in the sweep folder
    assert (out / "tune").is_dir()
    assert sorted(p.name for p in out.iterdir() if p.name != "cache") == [
        ".lock",
        "curves.csv",
        "results.csv",
        "results.json",
        "summary.csv",
        "sweep.json",
        "trials",
        "tune",
    ]


SLEEPY = '''
import os
import time

import agents


class Sleepy:
    """Truthful, after a pause (when SWEEP_TEST_SLEEP is 1): a trial to kill."""

    market_params = ()

    def __init__(self, pause=0.0):
        self.pause = pause

    def reset(self, num_envs, rng):
        if os.environ.get("SWEEP_TEST_SLEEP") == "1":
            time.sleep(self.pause)

    def act(self, obs, rng):
        return obs[:, :1]

    def observe(self, feedback):
        pass


agents.register("sleepy", Sleepy)
'''


def _using(folder: Path) -> set[int]:
    """Live processes working in ``folder`` or started with ``PYTHONPATH=folder``
    (Ray's processes keep one or the other, its agents included)."""
    out = set()
    mark = f"PYTHONPATH={folder}".encode()
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            cwd = os.readlink(f"/proc/{entry}/cwd")
            environ = Path(f"/proc/{entry}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if (cwd == str(folder) or mark in environ) and _alive(int(entry)):
            out.add(int(entry))
    return out


def _end(pids: set[int]) -> None:
    """SIGTERM, then SIGKILL after 10 s: processes this test started, by pid."""
    for p in pids:
        with contextlib.suppress(OSError):
            os.kill(p, signal.SIGTERM)
    deadline = time.monotonic() + 10
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.2)
    for p in pids:
        if _alive(p):
            with contextlib.suppress(OSError):
                os.kill(p, signal.SIGKILL)


def _name(pid: int) -> str:
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode()
    except OSError:
        return ""
    return cmd.removeprefix("ray::")


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.integration
def test_a_killed_sweep_resumes_without_redoing_finished_trials(tmp_path):
    (tmp_path / "sweep_sleepy.py").write_text(SLEEPY)
    sweep = _files(
        tmp_path,
        "base: base.yaml\n"
        "list: [{agents.buyer.params.pause: 0}, {agents.buyer.params.pause: 120}]\n"
        "grid: {seed: [0, 1]}\nconcurrency: 2\n",
        "seed: 0\nplugins: [sweep_sleepy]\nepisodes: 50\n"
        "agents: {buyer: {kind: sleepy, params: {pause: 0}}}\n",
    )
    out = tmp_path / "out"
    # PYTHONPATH (the plug-in's folder) also marks the processes of this test
    env = {**os.environ, "PYTHONPATH": str(tmp_path), "SWEEP_TEST_SLEEP": "1"}
    cmd = [
        sys.executable,
        "-m",
        "attn_market.cli",
        "sweep",
        str(sweep),
        "--out",
        str(out),
        "--no-progress",
    ]
    proc = subprocess.Popen(
        cmd,
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    fast = [out / "trials" / f"t{i:04d}" / "result.json" for i in (0, 1)]
    slow = [out / "trials" / f"t{i:04d}" for i in (2, 3)]
    deadline = time.monotonic() + 60
    while not (all(p.exists() for p in fast) and any(s.exists() for s in slow)):
        assert proc.poll() is None, proc.stderr.read()
        assert time.monotonic() < deadline, "the fast trials did not finish in 60 s"
        time.sleep(0.2)
    assert _using(tmp_path)  # Ray's processes
    # kill the sweep from another process, as a crash would
    subprocess.run(["kill", "-KILL", str(proc.pid)], check=True)
    proc.wait(timeout=10)
    proc.stderr.close()
    # Ray's node processes share the driver's fate; its two agents notice their
    # raylet is gone on their own poll (up to a minute): ended here by pid
    agents = ("DashboardAgent", "RuntimeEnvAgent")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        left = [(p, _name(p)) for p in _using(tmp_path) if _alive(p)]
        if all(name in agents for _, name in left):
            break
        time.sleep(0.2)
    _end({p for p, name in left if name in agents})
    assert all(name in agents for _, name in left), f"Ray outlived the sweep: {left}"
    assert not any((s / "result.json").exists() for s in slow)
    mtimes = [p.stat().st_mtime_ns for p in fast]

    env["SWEEP_TEST_SLEEP"] = "0"
    done = subprocess.run(
        [*cmd, "--json"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    table = json.loads(done.stdout)
    assert table["run"]["skipped"] == 2 and table["run"]["ran"] == 2
    assert [p.stat().st_mtime_ns for p in fast] == mtimes  # not redone
    assert [t["status"] for t in table["trials"]] == ["ok"] * 4
    deadline = time.monotonic() + 15  # a finished sweep leaves no Ray behind
    while _using(tmp_path) and time.monotonic() < deadline:
        time.sleep(0.2)
    left = {(p, _name(p)) for p in _using(tmp_path)}
    _end({p for p, _ in left})
    assert not left, f"Ray outlived the finished sweep: {left}"


def test_a_retry_removes_only_what_a_trial_writes(tmp_path):
    """An earlier attempt's files go; a file the sweep did not write stays."""
    from runner.sweep import TRIAL_ENTRIES, _trial_folder

    folder = _trial_folder(tmp_path, "t0")
    (folder / "result.json").write_text("{}")
    (folder / "run").mkdir()
    (folder / "run" / "x").write_text("old")
    (folder / "notes.txt").write_text("mine")
    again = _trial_folder(tmp_path, "t0", clear=True)
    assert again == folder
    assert sorted(p.name for p in folder.iterdir()) == ["notes.txt"]
    assert (folder / "notes.txt").read_text() == "mine"
    assert "result.json" in TRIAL_ENTRIES

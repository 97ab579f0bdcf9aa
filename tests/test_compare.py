"""``attn-market compare``: designs side by side on common random numbers."""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rich.cells import cell_len
from rich.console import Console

from attn_env.config import (
    AgentSpec,
    EnvConfig,
    ExperimentConfig,
    TrainConfig,
    load_config,
)
from attn_market.cli import main
from attn_market.commands.compare import _LABELS, _print_tables
from attn_market.commands.simulate import fmt_se
from attn_market.tables import Grid, orient, print_grid
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


def _render(width: int, draw) -> str:
    """What ``draw(console)`` prints on a console ``width`` columns wide."""
    buf = io.StringIO()
    draw(Console(file=buf, width=width, color_system=None))
    return buf.getvalue()


@pytest.fixture(scope="module")
def three_designs() -> dict:
    """Three designs with long names (the names rich used to cut)."""
    return compare(
        [
            ("second_price_baseline", _sp()),
            ("second_price_reserve_half", _sp(0.5)),
            ("first_price_at_equilibrium", _design("first_price", "bne")),
        ],
        episodes=40,
    )


@pytest.mark.parametrize("width", [40, 60, 80, 120, 250])
def test_tables_fit_the_width_and_cut_nothing(three_designs, width):
    out = _render(width, lambda c: _print_tables(three_designs, c))
    assert max(cell_len(line) for line in out.splitlines()) <= width
    assert "…" not in out
    for row in three_designs["designs"]:
        assert row["name"] in out
        assert row["mechanism"] in out
        for key in _LABELS:
            assert fmt_se(row[key], row[f"{key}_se"]) in out
    for label in _LABELS.values():
        assert label in out
    for d in three_designs["differences"]:
        f = d["figures"]["revenue"]
        assert f"[{f['ci'][0]:+.4f}, {f['ci'][1]:+.4f}]" in out
        assert f"{f['diff']:+.4f}" in out


def test_few_designs_transpose_many_do_not(three_designs):
    # 3 designs and 7 columns: designs across the page, figures down it
    out = _render(250, lambda c: _print_tables(three_designs, c))
    assert out.splitlines()[2].split()[1] == "figure"
    # 12 designs do not fit across 250 columns; the 7 columns do: not transposed
    many = dict(three_designs, designs=[*three_designs["designs"]] * 4)
    out = _render(250, lambda c: _print_tables(many, c))
    assert out.splitlines()[2].split()[1] == "design"


_word = st.text(st.characters(min_codepoint=33, max_codepoint=126), max_size=14)
_list = st.lists(_word, min_size=1, max_size=3).map(", ".join)


@given(
    data=st.data(),
    rows=st.integers(1, 5),
    cols=st.integers(0, 6),
    width=st.integers(16, 120),  # a word and its colon fit
    transpose=st.booleans(),
)
@settings(max_examples=80, deadline=None)
def test_print_grid_shows_every_cell_whole(data, rows, cols, width, transpose):
    labels = data.draw(st.lists(_word, min_size=rows, max_size=rows))
    heads = data.draw(st.lists(_word, min_size=cols, max_size=cols))
    wrap = frozenset(data.draw(st.sets(st.integers(0, max(cols - 1, 0)))) or ())
    wrap = frozenset(j for j in wrap if j < cols)
    cells = [
        [data.draw(_list if j in wrap else _word) for j in range(cols)] for _ in labels
    ]
    grid = Grid("corner", labels, heads, cells, wrap=wrap)
    out = _render(
        width,
        lambda c: print_grid(c, grid, transpose="flip" if transpose else None),
    )
    lines = out.splitlines()
    assert max(cell_len(line) for line in lines) <= width
    if any(line[:1] in "┏┌" for line in lines):  # tables: every item on one line
        items = [i for row in cells for c in row for i in c.split(", ")]
        for t in [*labels, *heads, *items]:
            assert any(t in line for line in lines), t
    else:  # too narrow for any table: "head: cell" lines, wrapped between words
        flat = " ".join(out.split())
        shown = orient(grid, width, "flip") if transpose else grid
        for row in shown.cells:
            for head, cell in zip(shown.heads, row, strict=True):
                assert " ".join(f"{head}: {cell}".split()) in flat


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

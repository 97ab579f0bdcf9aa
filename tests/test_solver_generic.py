"""The solver's generic path (a mechanism's own ``clear``) against its exact path.

Every built-in sealed-bid mechanism, re-registered under a new name as a thin
subclass, has no closed-form payoffs in the solver, which must then clear it
by its own ``clear`` (enumerated or sampled opponent profiles). It must find
the same equilibrium as the built-in's exact path: L2 between the bid
functions <= 0.01 on the value grid, and no more than 0.01 of utility loss
above the exact solution's, both losses measured in the exact game. The docs'
``SoftFloor`` (reserve 0: first price) and a first price with a winner fee
``f`` (``b(v) = v / (2 (1 + f))`` for two bidders) are checked against their
closed forms. Also here: convergence is never silent, equilibrium files and
the cache are read with limits, and the payoff-relevant ``bne_l2``.
"""

from __future__ import annotations

import ast
import dataclasses
import json
import os
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest

import agents
from attn_env import mechanisms
from attn_env.config import AgentSpec, EnvConfig, ExperimentConfig, SolveConfig
from attn_env.equilibria import chatterjee_samuelson, first_price_bne, truthful
from attn_env.errors import UserError
from attn_env.mechanisms import Mechanism, Outcome
from attn_env.solver import (
    game_from_config,
    load_solution,
    solve,
    solve_cached,
    utility_losses,
)
from attn_env.solver.cache import _key, cache_dir
from attn_env.solver.game import with_grid_defaults
from attn_env.strategy_metrics import bne_l2, relevant_range, value_grid
from attn_market.cli import main

FAST = SolveConfig(values=32, bids=51, iterations=600, refine=2, cache=False)
DEFAULT = SolveConfig(cache=False)


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    """Keep solutions out of the user's cache."""
    monkeypatch.setenv("ATTN_MARKET_CACHE", str(tmp_path / "cache"))


def _register(monkeypatch, name: str, cls: type[Mechanism]) -> str:
    """``cls`` in the registry under ``name`` for this test only."""
    monkeypatch.setitem(mechanisms._REGISTRY, name, cls)
    return name


def _thin(monkeypatch, builtin: str) -> str:
    """``builtin`` re-registered as a subclass that adds nothing but a name."""
    base = mechanisms.mechanism_class(builtin)
    name = f"generic_{builtin}"
    return _register(
        monkeypatch, name, type(f"Generic{base.__name__}", (base,), {"name": name})
    )


class SoftFloor(Mechanism):
    """The docs' soft floor: the top bid wins and pays its bid if >= reserve,
    else the runner-up's bid (docs/custom_mechanism.md)."""

    family = "one_sided"
    name = "test_soft_floor"

    def clear(self, bids, weights=None, rng=None):
        bids = np.asarray(bids, dtype=np.float64)
        B, n = bids.shape
        K = np.shape(weights)[-1] if weights is not None else 1
        alpha = np.broadcast_to(1.0 if weights is None else weights, (B, K))
        order = np.lexsort((self._gen(rng).random((B, n)), -bids))
        rows, top = np.arange(B), order[:, 0]
        high = bids[rows, top]
        second = bids[rows, order[:, 1]] if n > 1 else np.zeros(B)
        unit = np.where(high >= self.reserve, high, second)
        slot = np.full((B, n), -1)
        slot[rows, top] = 0
        alloc = np.where(slot == 0, alpha[:, :1], 0.0)
        price = np.where(slot == 0, unit[:, None], 0.0)
        return Outcome(slot, alloc, price * alloc, price, clearing_price=unit)


class WinnerFee(mechanisms.mechanism_class("first_price")):
    """First price whose winner also pays a fee ``fee`` times its bid."""

    name = "test_winner_fee"
    params: ClassVar[dict] = {
        **mechanisms.mechanism_class("first_price").params,
        "fee": 0.1,
    }

    def clear(self, bids, weights=None, rng=None):
        out = super().clear(bids, weights=weights, rng=rng)
        return dataclasses.replace(
            out, pay=out.pay * (1.0 + self.fee), price=out.price * (1.0 + self.fee)
        )


def _compare(env_exact: EnvConfig, env_generic: EnvConfig, s: SolveConfig) -> dict:
    """L2 between the two solutions' bid functions (per role) and the generic
    solution's utility loss in the exact game beside the exact one's own."""
    exact = solve(env_exact, s, seed=0)
    generic = solve(env_generic, s, seed=0)
    assert not generic.market["closed_form_payoffs"]
    l2 = {
        role: float(
            np.sqrt(
                np.mean((np.array(r.bids) - np.array(generic.roles[role].bids)) ** 2)
            )
        )
        for role, r in exact.roles.items()
    }
    game = game_from_config(env_exact, s, np.random.default_rng(1))
    fns = [generic.bid_function(role.name) for role in game.roles]
    cross = utility_losses(game, fns, s, np.random.default_rng(2))
    own = [exact.roles[role.name].utility_loss for role in game.roles]
    return {"l2": l2, "cross": cross, "own": own, "generic": generic}


def _assert_same(res: dict) -> None:
    for role, d in res["l2"].items():
        assert d <= 0.01, f"{role}: L2 {d:.4f} between generic and exact"
    for cross, own in zip(res["cross"], res["own"], strict=True):
        assert cross <= own + 0.01, f"utility loss {cross:.4f} vs exact {own:.4f}"


@pytest.mark.parametrize(
    ("builtin", "market"),
    [
        ("first_price", {"n_buyers": 2}),
        ("first_price", {"n_buyers": 2, "mechanism_params": {"reserve": 0.3}}),
    ],
)
def test_generic_path_matches_the_exact_path_fast(monkeypatch, builtin, market):
    name = _thin(monkeypatch, builtin)
    _assert_same(
        _compare(
            EnvConfig(mechanism=builtin, **market),
            EnvConfig(mechanism=name, **market),
            FAST,
        )
    )


@pytest.mark.slow
@pytest.mark.parametrize(
    ("builtin", "market", "grid"),
    [
        ("first_price", {"n_buyers": 2}, {}),
        ("first_price", {"n_buyers": 3}, {}),
        ("first_price", {"n_buyers": 2, "mechanism_params": {"reserve": 0.3}}, {}),
        ("second_price", {"n_buyers": 3}, {}),
        ("gsp", {"n_buyers": 4, "n_slots": 2}, {}),
        ("vcg", {"n_buyers": 4, "n_slots": 2}, {}),
        ("k_double", {"n_buyers": 1, "n_sellers": 1}, {"iterations": 1000}),
        ("mcafee", {"n_buyers": 3, "n_sellers": 3}, {"values": 32, "bids": 51}),
    ],
)
def test_generic_path_matches_the_exact_path(monkeypatch, builtin, market, grid):
    name = _thin(monkeypatch, builtin)
    env_exact = EnvConfig(mechanism=builtin, **market)
    # both paths on the exact market's grid (its default may be finer)
    s = with_grid_defaults(env_exact, dataclasses.replace(DEFAULT, **grid))
    res = _compare(env_exact, EnvConfig(mechanism=name, **market), s)
    if mechanisms.family(builtin) == "two_sided":
        # no closed form there: the built-in is cleared by its own clear too,
        # and the subclass must give the very same answer
        assert max(res["l2"].values()) == 0.0
        return
    _assert_same(res)


def _closed_form_l2(solution, star) -> float:
    r = solution.roles["buyer"]
    return bne_l2(r.bid_function(), star, np.asarray(r.values))


def test_soft_floor_with_reserve_zero_is_first_price(monkeypatch):
    # the case: bids of about 0 and utility loss 0.334, silently
    name = _register(monkeypatch, "test_soft_floor", SoftFloor)
    sol = solve(EnvConfig(mechanism=name, n_buyers=2), FAST)
    assert _closed_form_l2(sol, first_price_bne(2)) <= 0.01
    assert sol.roles["buyer"].utility_loss <= 0.02 and sol.converged


@pytest.mark.parametrize("fee", [0.1, 0.5])
def test_winner_fee_closed_form(monkeypatch, fee):
    name = _register(monkeypatch, "test_winner_fee", WinnerFee)
    env = EnvConfig(mechanism=name, n_buyers=2, mechanism_params={"fee": fee})
    sol = solve(env, FAST)
    assert _closed_form_l2(sol, lambda v: v / (2.0 * (1.0 + fee))) <= 0.01
    assert sol.converged


def test_a_reserve_that_does_not_bind_is_not_zeroed(monkeypatch):
    # a soft floor sells under its reserve: values under it still bid, where
    # a hard reserve (first price) has them bid 0 by convention
    name = _register(monkeypatch, "test_soft_floor", SoftFloor)
    soft = solve(
        EnvConfig(mechanism=name, n_buyers=2, mechanism_params={"reserve": 0.5}), FAST
    )
    r = soft.roles["buyer"]
    low = np.asarray(r.values) < 0.5
    assert np.asarray(r.bids)[low][-4:].min() > 0.1
    hard = solve(
        EnvConfig(
            mechanism=_thin(monkeypatch, "first_price"),
            n_buyers=2,
            mechanism_params={"reserve": 0.5},
        ),
        FAST,
    )
    assert np.all(np.asarray(hard.roles["buyer"].bids)[low] == 0.0)


# -- convergence is never silent ---------------------------------------------------

UNCONVERGED = "solve: {values: 16, bids: 21, iterations: 1, refine: 1}\n"


def test_solve_command_flags_an_unconverged_solution(tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("env: {mechanism: first_price, n_buyers: 5}\n" + UNCONVERGED)
    assert main(["solve", str(cfg), "--json"]) == 3
    captured = capsys.readouterr()
    data = json.loads(captured.out)
    assert data["converged"] is False
    loss = max(r["utility_loss"] for r in data["roles"].values())
    assert loss > 0.02
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and f"utility loss {loss:.4f}" in lines[0]
    assert "solve.tolerance 0.02" in lines[0]
    # the same solve is accepted with a looser tolerance (read from the cache)
    cfg.write_text(
        "env: {mechanism: first_price, n_buyers: 5}\n"
        + UNCONVERGED.replace("refine: 1}", "refine: 1, tolerance: 0.99}")
    )
    assert main(["solve", str(cfg), "--json"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["converged"] is True and again["seconds"] == data["seconds"]


def test_kind_equilibrium_refuses_an_unconverged_solution(tmp_path, capsys):
    env = EnvConfig(mechanism="first_price", n_buyers=5)
    bad = SolveConfig(values=16, bids=21, iterations=1, refine=1)
    with pytest.raises(UserError, match=r"did not converge \(utility loss 0\.\d+ >"):
        agents.for_market("equilibrium", {"solve": bad}, env)
    allowed = dataclasses.replace(bad, allow_unconverged=True)
    agent = agents.for_market("equilibrium", {"solve": allowed}, env)
    assert not agent.solution.converged
    # a saved file is judged by the config's tolerance too, and so is simulate
    agent.solution.save(tmp_path / "eq.json")
    cfg = tmp_path / "c.yaml"
    eq = tmp_path / "eq.json"
    cfg.write_text(
        "env: {mechanism: first_price, n_buyers: 5}\nepisodes: 10\n"
        f"agents: {{buyer: {{kind: equilibrium, params: {{path: {eq}}}}}}}\n"
    )
    assert main(["simulate", str(cfg)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "eq.json: the equilibrium did not converge" in err[0]
    cfg.write_text(cfg.read_text() + "solve: {allow_unconverged: true}\n")
    assert main(["simulate", str(cfg), "--json"]) == 0


def test_evaluate_reference_refuses_an_unconverged_solution():
    from runner.evaluate import _reference

    config = ExperimentConfig(
        env=EnvConfig(mechanism="gsp", n_buyers=3, n_slots=2),
        solve=SolveConfig(values=16, bids=21, iterations=1, refine=1),
    )
    with pytest.raises(UserError, match="evaluate's numerical reference: the equi"):
        _reference(config, "buyer")
    ok = dataclasses.replace(
        config, solve=dataclasses.replace(config.solve, allow_unconverged=True)
    )
    star, ref = _reference(ok, "buyer")
    assert ref == "numerical" and star is not None


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("tolerance", -0.1),
        ("tolerance", True),
        ("stop", float("nan")),
        ("allow_unconverged", "yes"),
    ],
)
def test_bad_tolerance_options_are_one_line(key, value):
    env = EnvConfig(mechanism="first_price", n_buyers=2)
    with pytest.raises(UserError, match=rf"solve\.{key} must be"):
        agents.for_market("equilibrium", {"solve": SolveConfig(**{key: value})}, env)


# -- equilibrium files and the cache are read with limits --------------------------


@pytest.fixture(scope="module")
def saved() -> dict:
    """A small solution of first price n = 2, as a dict."""
    return solve(EnvConfig(mechanism="first_price", n_buyers=2), FAST).to_dict()


def _hostile(tmp_path: Path, saved: dict, case: str) -> Path:
    path = tmp_path / "eq.json"
    data = json.loads(json.dumps(saved))
    if case == "deep":
        path.write_text("[" * 5000 + "]" * 5000)
    elif case == "iterations_1e400":
        path.write_text(
            json.dumps(data).replace('"iterations": ', '"iterations": 1e400, "x": ')
        )
    elif case == "iterations_float":
        data["iterations"] = 1e300
        path.write_text(json.dumps(data))
    elif case == "string_values":
        data["roles"]["buyer"]["values"][3] = "0.5"
        path.write_text(json.dumps(data))
    elif case == "string_bids":
        data["roles"]["buyer"]["bids"] = "many"
        path.write_text(json.dumps(data))
    elif case == "nan":
        path.write_text(
            json.dumps(data).replace(
                '"utility_loss": ', '"utility_loss": NaN, "x": ', 1
            )
        )
    elif case == "fifo":
        os.mkfifo(path)
    elif case == "dev_zero":
        path.symlink_to("/dev/zero")
    elif case == "lengths":
        data["roles"]["buyer"]["bids"] = data["roles"]["buyer"]["bids"][:-1]
        path.write_text(json.dumps(data))
    elif case == "n_buyers_bool":
        data["market"]["n_buyers"] = True
        path.write_text(json.dumps(data))
    elif case == "unknown_role":
        data["roles"]["auctioneer"] = data["roles"]["buyer"]
        path.write_text(json.dumps(data))
    elif case in ("bids_1e308", "bids_negative"):
        data["roles"]["buyer"]["bids"][-1] = 1e308 if case == "bids_1e308" else -0.5
        path.write_text(json.dumps(data))
    return path


HOSTILE = {
    "deep": "nests 5000 levels",
    "iterations_1e400": "overflows a float",
    "iterations_float": r"iterations must be an integer",
    "string_values": r"roles\.buyer\.values must be finite numbers, got '0\.5'",
    "string_bids": r"roles\.buyer\.bids must be a list",
    "nan": "not a number JSON allows",
    "fifo": "is a fifo, not a regular file",
    "dev_zero": "is a device, not a regular file",
    "lengths": "must be non-empty and of one length",
    "n_buyers_bool": r"market\.n_buyers must be an integer",
    "unknown_role": "roles must be buyer",
    "bids_1e308": r"buyer\.bids must lie in \[0, 1\] .*got 1e\+308",
    "bids_negative": r"roles\.buyer\.bids must be finite numbers >= 0\.0, got -0\.5",
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_equilibrium_files_are_one_line(tmp_path, saved, case):
    path = _hostile(tmp_path, saved, case)
    env = EnvConfig(mechanism="first_price", n_buyers=2)
    with pytest.raises(UserError, match=HOSTILE[case]) as err:
        agents.for_market("equilibrium", {"path": str(path)}, env)
    assert "\n" not in str(err.value) and str(path) in str(err.value)


def test_a_solution_for_another_market_is_refused(tmp_path, saved):
    path = tmp_path / "eq.json"
    path.write_text(json.dumps(saved))
    load_solution(path)  # a good file loads
    env = EnvConfig(
        mechanism="first_price", n_buyers=2, mechanism_params={"reserve": 0.5}
    )
    with pytest.raises(UserError, match=r"solved for .*mechanism_params"):
        agents.for_market("equilibrium", {"path": str(path)}, env)


def _cache_path(env: EnvConfig, s: SolveConfig) -> Path:
    return cache_dir() / f"{_key(env, s, 0)}.json"


@pytest.mark.parametrize("case", ["garbage", "deep", "other_market", "dev_zero"])
def test_a_bad_cache_entry_is_solved_again(tmp_path, saved, case):
    s = dataclasses.replace(FAST, cache=True, iterations=50)
    env = EnvConfig(mechanism="first_price", n_buyers=3)
    path = _cache_path(env, s)
    path.parent.mkdir(parents=True)
    if case == "garbage":
        path.write_text("{not json")
    elif case == "deep":
        path.write_text("[" * 5000 + "]" * 5000)
    elif case == "other_market":  # first price n = 2, copied under this key
        path.write_text(json.dumps(saved))
    else:
        path.symlink_to("/dev/zero")
    solution = solve_cached(env, s, 0)
    assert solution.market["n_buyers"] == 3
    if case != "dev_zero":  # a symlink is never written through
        assert load_solution(path).market["n_buyers"] == 3


def test_the_cache_key_ignores_how_a_solution_is_judged():
    env = EnvConfig()
    a = _key(env, SolveConfig(), 0)
    assert a == _key(env, SolveConfig(tolerance=0.5, allow_unconverged=True), 0)
    assert a != _key(env, SolveConfig(stop=0.01), 0)


def test_cache_imports_no_package_cycle():
    # solver/__init__ imports cache; cache must not import the package back
    import attn_env.solver.cache as cache

    tree = ast.parse(Path(cache.__file__).read_text())
    imported = {
        node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
    }
    assert "attn_env.solver" not in imported
    assert "attn_env.solver.driver" in imported


# -- bne_l2 counts only bids that can matter ----------------------------------------


def test_bne_l2_ignores_bids_under_a_binding_reserve():
    env = EnvConfig(
        mechanism="first_price", n_buyers=2, mechanism_params={"reserve": 0.5}
    )
    star = first_price_bne(2, reserve=0.5)
    grid = value_grid(env, "buyer", 1000)
    rng = np.random.default_rng(0)
    noise = dict(zip(grid, rng.uniform(0.0, 0.5, len(grid)), strict=True))

    def policy(v):  # the BNE above the reserve, anything under it below
        v = np.asarray(v)
        return np.where(v >= 0.5, star(v), [noise.get(x, 0.3) for x in v])

    relevant = relevant_range(env, "buyer")
    assert relevant == (0.5, np.inf)
    assert bne_l2(policy, star, grid, relevant) == pytest.approx(0.0, abs=1e-12)
    assert bne_l2(policy, star, grid) > 0.15  # the whole-range figure
    # wrong where it matters still counts: 0.05 too high above the reserve
    assert bne_l2(
        lambda v: star(v) + 0.05 * (np.asarray(v) >= 0.5), star, grid, relevant
    ) == pytest.approx(0.05 / np.sqrt(2), rel=1e-6)


def test_relevant_range_by_market(monkeypatch):
    assert relevant_range(EnvConfig(mechanism="first_price"), "buyer") == (
        -np.inf,
        np.inf,
    )
    name = _register(monkeypatch, "test_soft_floor", SoftFloor)
    soft = EnvConfig(mechanism=name, n_buyers=2, mechanism_params={"reserve": 0.5})
    assert relevant_range(soft, "buyer") == (-np.inf, np.inf)  # sells under it
    bilateral = EnvConfig(mechanism="k_double", n_buyers=1, n_sellers=1)
    lo, _ = relevant_range(bilateral, "buyer", chatterjee_samuelson(0.5, "seller"))
    _, hi = relevant_range(bilateral, "seller", chatterjee_samuelson(0.5, "buyer"))
    assert lo == pytest.approx(0.25, abs=1e-3) and hi == pytest.approx(0.75, abs=1e-3)
    truthful_floor = relevant_range(
        EnvConfig(
            mechanism="second_price", n_buyers=3, mechanism_params={"reserve": 0.2}
        ),
        "buyer",
        truthful,
    )
    assert truthful_floor == (0.2, np.inf)


def test_simulate_plays_agents_built_from_an_equilibrium_path(tmp_path, saved):
    # the happy path of a file through the config
    path = tmp_path / "eq.json"
    path.write_text(json.dumps(saved))
    from runner.simulate import play

    config = ExperimentConfig(
        env=EnvConfig(mechanism="first_price", n_buyers=2),
        agents={"buyer": AgentSpec(kind="equilibrium", params={"path": str(path)})},
        episodes=200,
    )
    assert play(config, progress=False)["efficiency"] > 0.99


@pytest.mark.parametrize(("rule", "n_opp"), [("first_price", 1), ("gsp", 2)])
def test_enumerated_payoffs_with_ties_equal_the_order_statistics(rule, n_opp):
    # opponents on a grid the candidates share: ties everywhere; one draw of
    # the mechanism's tie-break used to decide each for good, now they are
    # averaged over the tied traders, exactly as the closed form does
    from attn_env.solver.position import position_payoffs
    from attn_env.solver.sampled import opponent_profiles, sampled_payoffs

    support = np.array([0.0, 0.2, 0.4, 0.6])
    mass = np.array([0.4, 0.3, 0.2, 0.1])
    alpha = np.array([1.0, 0.5])[: 1 if rule == "first_price" else 2]
    mech = mechanisms.make(rule)
    profiles, weights = opponent_profiles(
        [(support, mass)] * n_opp, 10_000, np.random.default_rng(0)
    )
    qty, money = sampled_payoffs(
        lambda b, a: mech.clear(b, weights=alpha, rng=np.random.default_rng(1)),
        0,
        n_opp + 1,
        profiles,
        weights,
        support,
    )
    a, p = position_payoffs(rule, support, mass, n_opp, alpha, 0.0, support)
    np.testing.assert_allclose(qty, a, atol=1e-12)
    np.testing.assert_allclose(money, p, atol=1e-12)

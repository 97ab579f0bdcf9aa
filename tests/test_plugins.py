"""The plug-in points, exactly as docs/custom_mechanism.md shows them.

The page's code blocks run here in order, in one namespace, so the docs cannot
drift from the code; then the registered pieces are checked against what they
claim (the soft floor's prices, the revenue of truthful bidding under it).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

DOC = Path(__file__).resolve().parents[1] / "docs" / "custom_mechanism.md"


@pytest.fixture(scope="module")
def doc_namespace():
    import agents
    from attn_env import mechanisms, valuations

    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)
    assert len(blocks) >= 4
    ns: dict = {}
    try:
        for block in blocks:
            exec(compile(block, str(DOC), "exec"), ns)
        yield ns
    finally:  # leave the registries as the other tests expect them
        mechanisms._REGISTRY.pop("soft_floor", None)
        valuations._USER_SOURCES.pop("pareto", None)
        agents._REGISTRY.pop("jitter", None)


def test_soft_floor_prices_by_hand(doc_namespace):
    from attn_env import mechanisms

    m = mechanisms.make("soft_floor", reserve=0.5)
    assert mechanisms.family("soft_floor") == "one_sided"
    out = m.clear(np.array([[0.9, 0.3], [0.4, 0.2], [0.1, 0.45]]))
    # above the floor: pays its bid; under it: the runner-up's bid
    np.testing.assert_allclose(out.pay, [[0.9, 0], [0.2, 0], [0, 0.1]])
    np.testing.assert_array_equal(out.slot, [[0, -1], [0, -1], [-1, 0]])


def test_soft_floor_truthful_revenue_in_simulate(doc_namespace):
    # truthful, n = 3, reserve r = 0.5: the top value pays itself when >= r,
    # else the second value. E = int_r^1 3v^3 dv + P(max < r) E[2nd | max < r]
    r = 0.5
    expected = 3 / 4 * (1 - r**4) + r**3 * (r / 2)
    res = doc_namespace["result"]
    assert res["efficiency"] == pytest.approx(1.0)
    assert res["revenue"] == pytest.approx(expected, abs=0.02)


def test_registries_refuse_bad_plugins(doc_namespace):
    import agents
    from attn_env import mechanisms, valuations

    with pytest.raises(ValueError, match="already registered"):
        mechanisms.register("gsp", doc_namespace["SoftFloor"])
    with pytest.raises(ValueError, match="must subclass"):
        mechanisms.register("thing", object)
    with pytest.raises(ValueError, match="already registered"):
        valuations.register_source("uniform", doc_namespace["ParetoValues"])
    with pytest.raises(ValueError, match="already taken"):
        agents.register("truthful", doc_namespace["Jitter"])
    with pytest.raises(ValueError, match="reset, act and observe"):
        agents.register("nothing", object)


def test_pareto_source_and_jitter_agent_play(doc_namespace):
    import attn_env

    env = attn_env.vector_env(
        64,
        mechanism="gsp",
        n_buyers=4,
        n_slots=2,
        valuation="pareto",
        valuation_params={"shape": 2.0},
    )
    obs, _ = env.reset(seed=0)
    values = obs[:, :, 0]
    assert (values >= 0).all() and (values <= 1).all() and values.std() > 0
    rev = doc_namespace["play"](doc_namespace["config"], progress=False)["revenue"]
    # first price, n = 2: truthful bids earn E[max] = 2/3; bids of U[0.5, 1] x value
    # earn about 3/4 of that, and more than a second price's 1/3
    assert 1 / 3 < rev < 2 / 3


def test_mechanism_instance_needs_no_registration():
    from pettingzoo.test import parallel_api_test

    import attn_env
    from attn_env.mechanisms import make

    gsp = make("gsp", reserve=0.3)
    parallel_api_test(attn_env.parallel_env(mechanism=gsp, n_buyers=3, n_slots=2))
    with pytest.raises(ValueError, match="mechanism_params must be empty"):
        attn_env.parallel_env(mechanism=gsp, mechanism_params={"reserve": 0.1})


# --- plug-ins from the command line -------------------------------------------
# Each run is a fresh ``attn-market`` process whose PYTHONPATH holds the user's
# module (and, for the entry point, a distribution's dist-info), so no
# registration leaks into this process or the other tests.

PLUGIN_MODULE = '''
from attn_env import mechanisms
from attn_env.mechanisms.position import FirstPrice


class MyFirstPrice(FirstPrice):
    """First price under another name: the user's own mechanism."""

    name = "my_first_price"


mechanisms.register("my_first_price", MyFirstPrice)
'''

AGENT_MODULE = '''
import agents


class Half:
    """Bid half the value."""

    market_params = ()

    def reset(self, num_envs, rng):
        pass

    def act(self, obs, rng):
        return obs[:, :1] * 0.5

    def observe(self, feedback):
        pass


def register():
    agents.register("half", Half)
'''

SIM = """seed: 3
env: {{mechanism: {mech}, n_buyers: 3, mechanism_params: {{reserve: 0.2}}}}
agents: {{buyer: {{kind: truthful}}}}
episodes: 300
"""


def _cli(args, tmp_path, pythonpath):
    """``attn-market ARGS`` in a fresh process, cwd ``tmp_path`` (not on sys.path)."""
    import os
    import subprocess
    import sys

    script = Path(sys.executable).with_name("attn-market")
    cmd = (
        [str(script)] if script.exists() else [sys.executable, "-m", "attn_market.cli"]
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(map(str, pythonpath))}
    return subprocess.run(
        [*cmd, *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture(scope="module")
def plugin_dir(tmp_path_factory):
    """A folder with the user's module ``my_auctions`` (not installed)."""
    d = tmp_path_factory.mktemp("plugin")
    (d / "my_auctions.py").write_text(PLUGIN_MODULE)
    return d


@pytest.fixture(scope="module")
def first_price_result():
    """The built-in first price on the same market, played in this process."""
    import json

    from attn_env.config import AgentSpec, EnvConfig, ExperimentConfig
    from runner.results import jsonable
    from runner.simulate import play

    config = ExperimentConfig(
        seed=3,
        env=EnvConfig(
            mechanism="first_price", n_buyers=3, mechanism_params={"reserve": 0.2}
        ),
        agents={"buyer": AgentSpec(kind="truthful")},
        episodes=300,
    )
    return json.loads(json.dumps(jsonable(play(config, progress=False))))


def _same_market(out: str, expected: dict) -> None:
    """The plug-in's run is the built-in first price's, number for number."""
    import json

    got = json.loads(out)
    assert got.pop("mechanism") == "my_first_price"
    want = dict(expected)
    assert want.pop("mechanism") == "first_price"
    assert got == want
    # a reserve of 0.2 leaves some markets unsold: the plug-in kept its parameter
    assert got["revenue"] > 0 and 0.9 < got["efficiency"] < 1.0


def test_plugins_key_in_the_config_registers_the_mechanism(
    tmp_path, plugin_dir, first_price_result
):
    cfg = tmp_path / "my.yaml"
    cfg.write_text("plugins: [my_auctions]\n" + SIM.format(mech="my_first_price"))
    res = _cli(["simulate", str(cfg), "--json"], tmp_path, [plugin_dir])
    assert res.returncode == 0, res.stderr
    _same_market(res.stdout, first_price_result)


def test_plugin_option_registers_the_mechanism(
    tmp_path, plugin_dir, first_price_result
):
    cfg = tmp_path / "my.yaml"
    cfg.write_text(SIM.format(mech="my_first_price"))
    res = _cli(
        ["simulate", str(cfg), "--json", "--plugin", "my_auctions"],
        tmp_path,
        [plugin_dir],
    )
    assert res.returncode == 0, res.stderr
    _same_market(res.stdout, first_price_result)
    # without it the name is unknown, and the message says how to bring it in
    res = _cli(["simulate", str(cfg), "--json"], tmp_path, [plugin_dir])
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "my_first_price" in lines[0] and "--plugin" in lines[0]


def _dist(site: Path, name: str, entry_points: str) -> None:
    """A minimal installed distribution: a dist-info folder on ``site``."""
    info = site / f"{name.replace('-', '_')}-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n"
    )
    (info / "entry_points.txt").write_text(entry_points)


@pytest.fixture(scope="module")
def installed_site(tmp_path_factory):
    """A folder holding an "installed" distribution ``my-auctions`` with two
    plug-in entry points: a module one and a ``module:function`` one."""
    site = tmp_path_factory.mktemp("site")
    (site / "my_auctions.py").write_text(PLUGIN_MODULE)
    (site / "my_agents.py").write_text(AGENT_MODULE)
    _dist(
        site,
        "my-auctions",
        "[attn_market.plugins]\nauctions = my_auctions\nhalf = my_agents:register\n",
    )
    return site


def test_entry_point_of_an_installed_distribution_registers_by_name(
    tmp_path, installed_site, first_price_result
):
    cfg = tmp_path / "my.yaml"
    cfg.write_text(SIM.format(mech="my_first_price"))
    res = _cli(["simulate", str(cfg), "--json"], tmp_path, [installed_site])
    assert res.returncode == 0, res.stderr
    _same_market(res.stdout, first_price_result)


def test_list_names_where_each_piece_comes_from(tmp_path, installed_site):
    import json

    res = _cli(["list", "--json"], tmp_path, [installed_site])
    assert res.returncode == 0, res.stderr
    table = json.loads(res.stdout)
    mech = {r["name"]: r for r in table["mechanisms"]}
    kinds = {r["name"]: r["origin"] for r in table["agent_kinds"]}
    assert mech["my_first_price"]["family"] == "one_sided"
    assert "my_auctions" in mech["my_first_price"]["origin"]
    assert "my-auctions 0.1" in mech["my_first_price"]["origin"]
    assert "my_agents" in kinds["half"] and "my-auctions" in kinds["half"]
    assert mech["first_price"]["origin"] == "built-in"
    assert kinds["truthful"] == "built-in"
    assert {r["name"] for r in table["valuation_sources"]} >= {"uniform", "attention"}
    # every registered name once, built-ins first
    assert list(mech)[:2] == ["first_price", "second_price"]
    assert len(mech) == len(table["mechanisms"])


@pytest.fixture(scope="module")
def broken_site(tmp_path_factory):
    site = tmp_path_factory.mktemp("broken")
    (site / "broken_plugin.py").write_text("raise RuntimeError('half-written')\n")
    return site


def test_a_plugin_that_fails_to_import_is_one_line_naming_it(tmp_path, broken_site):
    cfg = tmp_path / "my.yaml"
    cfg.write_text("plugins: [broken_plugin]\n" + SIM.format(mech="first_price"))
    cases = [
        (["simulate", str(cfg)], ["my.yaml", "broken_plugin", "half-written"]),
        (["list", "--plugin", "no_such_module_x"], ["--plugin", "no_such_module_x"]),
    ]
    for args, named in cases:
        res = _cli(args, tmp_path, [broken_site])
        lines = res.stderr.strip().splitlines()
        assert res.returncode == 2, res.stderr
        assert len(lines) == 1 and "Traceback" not in res.stderr, res.stderr
        assert all(n in lines[0] for n in named), lines[0]


def test_debug_shows_the_traceback_of_a_user_error(tmp_path, broken_site):
    res = _cli(
        ["list", "--plugin", "broken_plugin", "--debug"], tmp_path, [broken_site]
    )
    assert res.returncode == 2
    assert "Traceback" in res.stderr and "RuntimeError: half-written" in res.stderr
    assert res.stderr.strip().splitlines()[-1].startswith("attn-market list: error:")


def test_a_broken_entry_point_names_its_distribution(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    (site / "bad_ep.py").write_text("x = 1\n")
    _dist(site, "bad-dist", "[attn_market.plugins]\nbad = bad_ep:missing\n")
    res = _cli(["list"], tmp_path, [site])
    lines = res.stderr.strip().splitlines()
    assert res.returncode == 2 and len(lines) == 1, res.stderr
    assert "'bad'" in lines[0] and "bad-dist 0.1" in lines[0]


def test_plugin_names_are_modules_not_paths(tmp_path):
    from attn_env.config import ConfigError, load_config
    from attn_env.plugins import PluginError, check_module_names, import_plugins

    for bad in (["./evil.py"], ["os/path"], "my_mod", [3], ["a..b"], [""]):
        with pytest.raises(ConfigError, match="plugins"):
            check_module_names(bad, "plugins")
    assert check_module_names(["a.b_c", "d"], "plugins") == ["a.b_c", "d"]
    with pytest.raises(PluginError, match="'no_such_mod_y' failed to import"):
        import_plugins(["no_such_mod_y"], "--plugin")
    cfg = tmp_path / "c.yaml"
    cfg.write_text("plugins: [../x]\n")
    with pytest.raises(
        ConfigError, match=r"c.yaml: plugins\[0\] must be a Python module"
    ):
        load_config(cfg)

"""The layers only look down, and no module imports itself round a cycle.

Every import in every module of the project, function-level ones included, is
read from the source (``ast``), resolved to a project module and checked
against the layer table of ``docs/architecture.md``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("attn_env", "agents", "training", "runner", "attn_market")

# Lowest first. Every module of the project is listed by name, with no prefix
# rule: a new module fails test_every_module_has_a_layer until it is placed.
# A module may import its own layer and the ones below.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    (
        "foundation",
        (
            "attn_env.checks",
            "attn_env.errors",
            "attn_env.figures",
            "attn_env.fileio",
            "attn_env.plugins",
        ),
    ),
    (
        "mechanisms",
        (
            "attn_env.mechanisms",
            "attn_env.mechanisms._base",
            "attn_env.mechanisms._crossing",
            "attn_env.mechanisms._validate",
            "attn_env.mechanisms.answer",
            "attn_env.mechanisms.double",
            "attn_env.mechanisms.exposure_floor",
            "attn_env.mechanisms.matching",
            "attn_env.mechanisms.outcome",
            "attn_env.mechanisms.position",
            "attn_env.mechanisms.schedules",
        ),
    ),
    (
        "valuations",
        (
            "attn_env.valuations",
            "attn_env.valuations.attention",
            "attn_env.valuations.bank",
            "attn_env.valuations.bank_build",
            "attn_env.valuations.bank_check",
            "attn_env.valuations.bank_settings",
            "attn_env.valuations.bank_validate",
            "attn_env.valuations.base",
            "attn_env.valuations.cache",
            "attn_env.valuations.corpus_io",
            "attn_env.valuations.fake_traffic",
            "attn_env.valuations.lift",
            "attn_env.valuations.model",
            "attn_env.valuations.positions",
            "attn_env.valuations.probes",
            "attn_env.valuations.ranking_metrics",
            "attn_env.valuations.scoring",
            "attn_env.valuations.shipped_banks",
            "attn_env.valuations.uniform",
        ),
    ),
    (
        "market core",
        (
            "attn_env.actions",
            "attn_env.config",
            "attn_env.core",
            "attn_env.feedback",
            "attn_env.metrics",
            "attn_env.observation",
            "attn_env.players",
        ),
    ),
    (
        "environments and measures",
        (
            "attn_env",
            "attn_env.equilibria",
            "attn_env.estimates",
            "attn_env.market_env",
            "attn_env.market_log",
            "attn_env.plots",
            "attn_env.single_agent",
            "attn_env.strategy_metrics",
            "attn_env.vector",
        ),
    ),
    (
        "solver",
        (
            "attn_env.solver",
            "attn_env.solver.formats_plugin",
            "attn_env.solver.cache",
            "attn_env.solver.driver",
            "attn_env.solver.formats",
            "attn_env.solver.game",
            "attn_env.solver.joint",
            "attn_env.solver.position",
            "attn_env.solver.sampled",
            "attn_env.solver.soda",
            "attn_env.solver.solution",
        ),
    ),
    (
        "integrity",
        (
            "attn_env.integrity",
            "attn_env.integrity.defences",
            "attn_env.integrity.detect",
            "attn_env.integrity.explain",
            "attn_env.integrity.fairness",
        ),
    ),
    (
        "scenarios",
        (
            "attn_env.scenarios",
            "attn_env.scenarios.answer_env",
            "attn_env.scenarios.answer_play",
            "attn_env.scenarios.answer_slots",
            "attn_env.scenarios.autobidders",
            "attn_env.scenarios.compute_env",
            "attn_env.scenarios.compute_market",
            "attn_env.scenarios.compute_model",
            "attn_env.scenarios.compute_play",
            "attn_env.scenarios.feed",
            "attn_env.scenarios.feed_env",
            "attn_env.scenarios.feed_rules",
            "attn_env.scenarios.search_advertisers",
            "attn_env.scenarios.search_auction",
            "attn_env.scenarios.search_config",
            "attn_env.scenarios.search_data",
            "attn_env.scenarios.search_day",
            "attn_env.scenarios.search_env",
            "attn_env.scenarios.search_landscape",
            "attn_env.scenarios.search_market",
            "attn_env.scenarios.search_pages",
            "attn_env.scenarios.search_play",
            "attn_env.scenarios.search_state",
            "attn_env.scenarios.search_traffic",
            "attn_env.scenarios.train_config",
        ),
    ),
    (
        "agents",
        (
            "agents",
            "agents.attacks",
            "agents.baselines",
            "agents.equilibrium",
            "agents.qlearn",
            "agents.traders",
        ),
    ),
    (
        "training",
        (
            "training",
            "training.actions",
            "training.checkpoint",
            "training.learners",
            "training.manifest",
            "training.policy",
            "training.ray_start",
            "training.residual",
            "training.rllib",
            "training.rllib_env",
            "training.rllib_pool",
            "training.rllib_state",
            "training.rllib_weights",
            "training.run",
            "training.sb3",
            "training.sb3_internals",
            "training.scenario_ppo",
            "training.search_day",
            "training.search_day_rllib",
            "training.selfplay",
            "training.skeleton",
            "training.supersuit_vec",
            "training.torchrl_env",
            "training.train_config",
            "training.vec_adapter",
        ),
    ),
    (
        "runner",
        (
            "runner",
            "runner.attacks",
            "runner.audit",
            "runner.audit_report",
            "runner.bank_ray",
            "runner.collusion",
            "runner.compare",
            "runner.detection",
            "runner.evaluate",
            "runner.exploit",
            "runner.explain",
            "runner.fairness",
            "runner.results",
            "runner.scenario_commands",
            "runner.scenario_commands.answer_slots",
            "runner.scenario_commands.compute_market",
            "runner.scenario_commands.feed",
            "runner.scenario_commands.search_day",
            "runner.scenario_report",
            "runner.scenarios",
            "runner.seats",
            "runner.simulate",
            "runner.solve",
            "runner.sweep",
            "runner.sweep_table",
            "runner.valuations",
        ),
    ),
    (
        "cli",
        (
            "attn_market",
            "attn_market.cli",
            "attn_market.commands",
            "attn_market.commands.compare",
            "attn_market.commands.exploit",
            "attn_market.commands.integrity",
            "attn_market.commands.listing",
            "attn_market.commands.scenario_tables",
            "attn_market.commands.simulate",
            "attn_market.commands.solve",
            "attn_market.commands.sweep",
            "attn_market.commands.training",
            "attn_market.commands.valuations",
            "attn_market.tables",
        ),
    ),
]


def _modules() -> dict[str, Path]:
    out = {}
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(parts)] = path
    return out


MODULES = _modules()


_LAYER_OF = {m: i for i, (_, names) in enumerate(LAYERS) for m in names}


def layer_of(module: str) -> int:
    if module not in _LAYER_OF:
        raise AssertionError(f"module {module} is in no layer; add it to LAYERS")
    return _LAYER_OF[module]


def _resolve(name: str) -> str | None:
    """The project module an import names (the longest existing prefix)."""
    parts = name.split(".")
    while parts:
        cand = ".".join(parts)
        if cand in MODULES:
            return cand
        parts.pop()
    return None


def imports_in(source: str, module: str, is_package: bool) -> set[str]:
    """Project modules imported anywhere in ``source`` (functions included)."""
    package = module if is_package else module.rpartition(".")[0]
    tree = ast.parse(source)
    # ``if TYPE_CHECKING:`` blocks are read by type checkers only: no run-time edge
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            node.body = []
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")
                up = up[: len(up) - (node.level - 1)]
                base = ".".join([*up, base]) if base else ".".join(up)
            # ``from pkg import sub`` imports the submodule ``pkg.sub``; any other
            # name is an attribute of ``pkg`` itself
            names = [
                f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base
                for a in node.names
            ]
        else:
            continue
        for name in names:
            target = _resolve(name)
            if target is not None and target != module:
                found.add(target)
    return found


def imports_of(module: str) -> set[str]:
    path = MODULES[module]
    return imports_in(path.read_text(), module, path.name == "__init__.py")


GRAPH = {m: imports_of(m) for m in MODULES}


def test_every_module_has_a_layer():
    unplaced = sorted(set(MODULES) - set(_LAYER_OF))
    assert not unplaced, f"modules in no layer (add them to LAYERS): {unplaced}"
    gone = sorted(set(_LAYER_OF) - set(MODULES))
    assert not gone, f"LAYERS lists modules that do not exist: {gone}"
    twice = sorted(m for m in _LAYER_OF if sum(m in n for _, n in LAYERS) > 1)
    assert not twice, f"modules listed in two layers: {twice}"


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_upward_import(module):
    mine = layer_of(module)
    upward = sorted(
        f"{t} ({LAYERS[layer_of(t)][0]})" for t in GRAPH[module] if layer_of(t) > mine
    )
    assert not upward, (
        f"{module} ({LAYERS[mine][0]}) imports upward: {', '.join(upward)}"
    )


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of ``graph`` (module -> imported modules), or ``None``.

    Every edge counts, a submodule importing its own package included: a
    package ``__init__`` that re-exports its submodules and a submodule that
    imports the package back form a cycle like any other.
    """
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        stack.append(m)
        for t in sorted(graph.get(m, ())):
            if state.get(t) == 1:
                return [*stack[stack.index(t) :], t]
            if t not in state and (found := visit(t)):
                return found
        stack.pop()
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state and (found := visit(m)):
            return found
    return None


def test_no_import_cycle():
    cycle = find_cycle(GRAPH)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_the_cycle_finder_sees_a_package_and_its_submodule():
    graph = {"pkg": {"pkg.sub"}, "pkg.sub": {"pkg"}, "other": {"pkg"}}
    assert find_cycle(graph) == ["pkg", "pkg.sub", "pkg"]
    assert find_cycle({"pkg": {"pkg.sub"}, "pkg.sub": set()}) is None


def test_the_checker_sees_function_level_and_upward_imports():
    # The walker must catch what this test exists for: an import inside a
    # function, ``from package import submodule`` and a relative import.
    src = (
        "def f():\n"
        "    from training import policy\n"
        "    import runner.simulate\n"
        "    from ..core import MarketCore\n"
    )
    found = imports_in(src, "agents.fake", is_package=False)
    assert found == {"training.policy", "runner.simulate"}
    typing_only = (
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import runner\n"
    )
    assert imports_in(typing_only, "agents.fake", is_package=False) == set()
    found = imports_in(src, "attn_env.valuations.fake", is_package=False)
    assert "attn_env.core" in found
    assert layer_of("training.policy") > layer_of("agents.baselines")
    assert layer_of("attn_env.core") > layer_of("attn_env.valuations.bank")
    with pytest.raises(AssertionError, match="in no layer"):
        layer_of("attn_env.valuations.fake")  # a new module must be placed


def test_equilibrium_distances_need_neither_torch_nor_sb3():
    import subprocess
    import sys

    code = (
        "import sys, numpy as np\n"
        "from attn_env.config import make_config\n"
        "from attn_env.equilibria import bne_strategy\n"
        "from attn_env.strategy_metrics import bne_l2, utility_loss, value_grid\n"
        "cfg = make_config(mechanism='first_price', n_buyers=2)\n"
        "star = bne_strategy(cfg, 'buyer')\n"
        "grid = value_grid(cfg, 'buyer', 200)\n"
        "assert bne_l2(star, star, grid) == 0.0\n"
        "res = utility_loss(cfg, [star, star], 0, np.random.default_rng(0), 2000)\n"
        "assert res['utility_loss'] < 0.05, res\n"
        "print(','.join(m for m in ('torch', 'stable_baselines3') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == ""

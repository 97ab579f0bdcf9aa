"""``attn-market simulate CONFIG``: the runner's ``play``, as a command.

Prints the metrics as a rich table (each mean as ``mean ± standard error``),
as one JSON object (``--json``: the error of ``KEY`` under ``KEY_se``) or draws
them (``--plot FILE``).
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Mapping
from typing import Any

from attn_market.commands import check_output_file, config_from_args
from runner.results import jsonable
from runner.simulate import play

__all__ = ["register"]


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``simulate CONFIG [--json] [--plot FILE] [--episodes N] [--num-envs N]
    [--seed N]``."""
    p = subparsers.add_parser(
        "simulate",
        help="play fixed agents in a market and report its metrics",
        description="Play the config's agents (truthful, bne, zi_c, zip, gd, pacing, "
        "policy, ...) in its market and print efficiency, revenue, prices and "
        "per-agent utility.",
    )
    p.add_argument("config", help="YAML experiment config (see configs/)")
    p.add_argument(
        "--json", action="store_true", help="print one JSON object on stdout"
    )
    p.add_argument(
        "--plot", metavar="FILE", help="write a PNG of prices and efficiency"
    )
    p.add_argument("--episodes", type=int, metavar="N", help="override config episodes")
    p.add_argument("--num-envs", type=int, metavar="N", help="markets stepped at once")
    p.add_argument("--seed", type=int, metavar="N", help="override config seed")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from runner.scenarios import read_scenario

    scenario = read_scenario(args.config)
    if scenario is not None:
        return _run_scenario(args, *scenario)
    config = config_from_args(args)
    if args.plot:
        check_output_file(args.plot, "--plot")  # fail before the run, not after it
    result = play(config, episodes=args.episodes, num_envs=args.num_envs)
    if args.plot:
        from attn_env.plots import plot_market

        plot_market(result, args.plot)
    if args.json:
        print(json.dumps(jsonable(result), allow_nan=False))
    else:
        _print_table(result)
        if args.plot:
            print(f"plot written to {args.plot}")
    return 0


def _run_scenario(args: argparse.Namespace, name: str, config: Any) -> int:
    """``simulate`` on a scenario config (``--episodes``/``--num-envs`` do not apply)."""
    from attn_env.errors import UserError
    from runner.scenarios import simulate_scenario

    for option in ("episodes", "num_envs", "plot"):
        if getattr(args, option) is not None:
            flag = "--" + option.replace("_", "-")
            raise UserError(f"{flag} does not apply to scenario {name!r}")
    result = simulate_scenario(name, config, args.seed, progress=not args.json)
    if args.json:
        print(json.dumps(jsonable(result), allow_nan=False))
    else:
        from attn_market.commands.scenario_tables import print_scenario

        print_scenario(result)
    return 0


def _fmt(x: Any) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "—"
    return f"{x:.4f}" if isinstance(x, float) else str(x)


def fmt_se(x: Any, se: Any = None) -> str:
    """``x`` as the table shows it, with ``± se`` where the error is known."""
    if se is None or not isinstance(x, float) or not math.isfinite(x):
        return _fmt(x)
    if not math.isfinite(se):
        return _fmt(x)
    return f"{x:.4f} ± {se:.4f}"


_HEADLINE = (
    ("efficiency", "allocative efficiency (welfare / first-best)"),
    ("welfare", "welfare per episode"),
    ("revenue", "revenue per episode (buyers' payments)"),
    ("budget_surplus", "budget surplus per episode"),
    ("volume", "units traded per episode"),
    ("mean_price", "mean price per unit"),
    ("price_std", "std of clearing prices"),
    ("walrasian_distance", "mean distance to Walrasian interval"),
    ("walrasian_share", "share of prices inside it"),
    ("ir_violations", "IR violations (agent-rounds)"),
    ("blocking_pairs", "blocking pairs per market round"),
    ("gini_utility", "Gini of mean utilities"),
    ("gini_exposure", "Gini of exposure shares"),
)


def _print_table(result: Mapping[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    title = (
        f"{result['mechanism']}: {result['episodes']} episodes x {result['rounds']} "
        f"round(s), seed {result['seed']}"
    )
    market = Table(title=title)
    market.add_column("metric")
    market.add_column("value ± se", justify="right")
    for key, label in _HEADLINE:
        if key not in result:  # blocking_pairs: matchings only
            continue
        market.add_row(label, fmt_se(result[key], result.get(f"{key}_se")))
    per_agent = Table(title="agents")
    for col in ("agent", "kind", "mean utility", "exposure share"):
        per_agent.add_column(
            col, justify="left" if col in ("agent", "kind") else "right"
        )
    u_se = result.get("mean_utility_se", {})
    share_se = result.get("exposure_share_se", {})
    for name, u in result["mean_utility"].items():
        share = result["exposure_share"].get(name)
        per_agent.add_row(
            name,
            result["agent_kinds"][name],
            fmt_se(u, u_se.get(name)),
            fmt_se(share, share_se.get(name)),
        )
    console = Console()
    console.print(market)
    console.print(per_agent)

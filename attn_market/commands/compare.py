"""``attn-market compare A.yaml B.yaml ...``: the runner's ``compare``, as a command.

Prints each design's figures (``mean ± se``) and its differences against the
first design with their confidence intervals as rich tables, or one JSON object
(``--json``); ``--plot FILE`` draws revenue against efficiency.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from attn_env.config import load_config
from attn_env.errors import UserError
from attn_market.commands import check_output_file
from attn_market.commands.simulate import fmt_se
from attn_market.tables import Grid, print_grid
from runner.compare import BEHAVIOURS, FIGURES, compare, plot_compare
from runner.results import jsonable
from runner.seats import POLICY

if TYPE_CHECKING:
    from rich.console import Console

__all__ = ["design_grid", "difference_grid", "register"]

_LABELS = {
    "revenue": "revenue",
    "efficiency": "efficiency",
    "welfare": "welfare",
    "budget_surplus": "budget surplus",
    "mean_price": "price / unit",
    "mean_clearing_price": "clearing price",
}


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``compare CONFIG CONFIG... [--behaviour KIND [DIR]] [--json] [--plot FILE]
    [--episodes N] [--seed N]``."""
    p = subparsers.add_parser(
        "compare",
        help="compare market designs: figures with standard errors, paired differences",
        description="Play every config's market on the same episodes and seed "
        "(common random numbers) and print revenue, efficiency, welfare, budget "
        "surplus and prices with standard errors, and each design's difference "
        "from the first with a 95% confidence interval.",
    )
    p.add_argument(
        "configs",
        nargs="*",  # checked in _run, after --behaviour (which may swallow them)
        metavar="CONFIG",
        help="YAML configs; the first is the baseline",
    )
    p.add_argument(
        "--behaviour",
        nargs="+",
        metavar=("KIND", "DIR"),
        help="put one behaviour in every seat: truthful, equilibrium, or policy DIR "
        "(a trained run); default: each config's agents",
    )
    p.add_argument(
        "--json", action="store_true", help="print one JSON object on stdout"
    )
    p.add_argument(
        "--plot", metavar="FILE", help="write a PNG of revenue against efficiency"
    )
    p.add_argument(
        "--episodes",
        type=int,
        metavar="N",
        help="episodes per design (default: the first config's)",
    )
    p.add_argument(
        "--seed",
        type=int,
        metavar="N",
        help="seed of every design (default: the first config's)",
    )
    p.set_defaults(func=_run)


def _behaviour(words: list[str] | None) -> tuple[str | None, str | None]:
    """``--behaviour`` words -> ``(behaviour, policy folder)``."""
    if not words:
        return None, None
    kind, rest = words[0], words[1:]
    if kind not in BEHAVIOURS:
        raise UserError(
            f"--behaviour {kind!r}: expected truthful, equilibrium or policy DIR"
        )
    if kind == POLICY:
        if len(rest) != 1:
            raise UserError(
                f"--behaviour policy takes one run folder, got {len(rest)}: {rest!r}"
            )
        return kind, rest[0]
    if rest:
        raise UserError(
            f"--behaviour {kind} takes no folder, got {rest!r} (give the configs "
            "before --behaviour)"
        )
    return kind, None


def _names(paths: list[str]) -> list[str]:
    """One name per config: its file stem, numbered where stems repeat."""
    stems = [Path(p).stem for p in paths]
    return [
        s if stems.count(s) == 1 else f"{s}#{stems[: i + 1].count(s)}"
        for i, s in enumerate(stems)
    ]


def _run(args: argparse.Namespace) -> int:
    behaviour, policy = _behaviour(args.behaviour)
    if len(args.configs) < 2:
        raise UserError(
            f"compare needs at least two configs (the first is the baseline), got "
            f"{len(args.configs)}: {' '.join(args.configs)}"
        )
    if args.episodes is not None and args.episodes < 1:
        raise UserError(f"--episodes must be >= 1, got {args.episodes}")
    from runner.scenarios import compare_scenarios, read_scenario

    scenarios = [read_scenario(path) for path in args.configs]
    if any(sc is not None for sc in scenarios):
        if not all(sc is not None for sc in scenarios):
            raise UserError("compare scenario configs with scenario configs only")
        labelled = [
            (label, *sc)
            for label, sc in zip(_names(args.configs), scenarios, strict=True)
        ]
        result = compare_scenarios(labelled, seed=args.seed)
        if args.json:
            print(json.dumps(jsonable(result), allow_nan=False))
        else:
            from attn_market.commands.scenario_tables import print_scenario

            print_scenario(result)
        return 0
    designs = [
        (name, load_config(path))
        for name, path in zip(_names(args.configs), args.configs, strict=True)
    ]
    if args.plot:
        check_output_file(args.plot, "--plot")  # fail before the run, not after it
    result = compare(
        designs,
        behaviour=behaviour,
        policy=policy,
        episodes=args.episodes,
        seed=args.seed,
        progress=not args.json,
    )
    for row, path in zip(result["designs"], args.configs, strict=True):
        row["config"] = path
    if args.plot:
        plot_compare(result, args.plot)
    if args.json:
        print(json.dumps(jsonable(result), allow_nan=False))
    else:
        _print_tables(result)
        if args.plot:
            print(f"plot written to {args.plot}")
    return 0


def _interval(ci: list[float]) -> str:
    lo, hi = ci
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return "—"
    return f"[{lo:+.4f}, {hi:+.4f}]"


def design_grid(result: dict[str, Any]) -> Grid:
    """One row per design: its mechanism and each figure as ``mean ± se``."""
    return Grid(
        "design",
        [row["name"] for row in result["designs"]],
        ["mechanism", *(_LABELS[k] for k in FIGURES)],
        [
            [row["mechanism"], *(fmt_se(row[k], row[f"{k}_se"]) for k in FIGURES)]
            for row in result["designs"]
        ],
        left=frozenset({0}),
    )


def class_grid(result: dict[str, Any]) -> Grid | None:
    """One row per bidder class of each design with classes or a CRRA utility:
    its utility, value range and mean utility (``None`` where no design has)."""
    labels, cells = [], []
    for row in result["designs"]:
        u = row.get("utility")
        for name, c in (row.get("classes") or {}).items():
            labels.append(f"{row['name']} / {name}")
            low, high = c["value_range"]
            cells.append(
                [
                    u["kind"] if u["kind"] == "linear" else f"crra {u['rho']:g}",
                    f"[{low:g}, {high:g}]",
                    ", ".join(c["agents"]),
                    fmt_se(c["mean_utility"], c["mean_utility_se"]),
                ]
            )
    if not labels:
        return None
    heads = ["utility", "values", "agents", "mean utility"]
    return Grid("class", labels, heads, cells, left=frozenset({0, 1, 2}))


def difference_grid(result: dict[str, Any], d: dict[str, Any]) -> Grid:
    """One row per figure of one design's difference from the baseline."""
    level = round(100 * result["confidence"])
    cells = []
    for key in FIGURES:
        f = d["figures"][key]
        cells.append(
            [
                f"{f['diff']:+.4f}" if math.isfinite(f["diff"]) else "—",
                fmt_se(f["se"]),
                fmt_se(f["se_unpaired"]),
                _interval(f["ci"]),
            ]
        )
    heads = ["difference", "se", "se unpaired", f"{level}% CI"]
    return Grid("figure", [_LABELS[k] for k in FIGURES], heads, cells)


def _print_tables(result: dict[str, Any], console: Console | None = None) -> None:
    """The designs' table (transposed where that fits better) and one table of
    differences per later design, each fitted to ``console``'s width."""
    if console is None:
        from rich.console import Console

        console = Console()
    behaviour = result["behaviour"] or "each config's agents"
    title = (
        f"{result['episodes']} episodes per design, seed {result['seed']}, "
        f"{behaviour}: mean ± se"
    )
    print_grid(console, design_grid(result), title, transpose="figure")
    classes = class_grid(result)
    if classes is not None:
        console.print()
        print_grid(console, classes, "bidder classes: mean utility per episode ± se")
    for d in result["differences"]:
        console.print()
        print_grid(
            console,
            difference_grid(result, d),
            f"{d['design']} - {d['against']} ({d['pairing']})",
        )

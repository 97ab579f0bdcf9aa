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
from typing import Any

from attn_env.config import load_config
from attn_market.commands import check_output_file
from attn_market.commands.simulate import fmt_se
from runner.compare import BEHAVIOURS, FIGURES, compare, plot_compare
from runner.results import jsonable
from runner.seats import POLICY

__all__ = ["register"]

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
        raise ValueError(
            f"--behaviour {kind!r}: expected truthful, equilibrium or policy DIR"
        )
    if kind == POLICY:
        if len(rest) != 1:
            raise ValueError(
                f"--behaviour policy takes one run folder, got {len(rest)}: {rest!r}"
            )
        return kind, rest[0]
    if rest:
        raise ValueError(
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
        raise ValueError(
            f"compare needs at least two configs (the first is the baseline), got "
            f"{len(args.configs)}: {' '.join(args.configs)}"
        )
    if args.episodes is not None and args.episodes < 1:
        raise ValueError(f"--episodes must be >= 1, got {args.episodes}")
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


def _print_tables(result: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    behaviour = result["behaviour"] or "each config's agents"
    designs = Table(
        title=f"{result['episodes']} episodes per design, seed {result['seed']}, "
        f"{behaviour}: mean ± se"
    )
    designs.add_column("design")
    designs.add_column("mechanism")
    for key in FIGURES:
        designs.add_column(_LABELS[key], justify="right")
    for row in result["designs"]:
        designs.add_row(
            row["name"],
            row["mechanism"],
            *(fmt_se(row[k], row[f"{k}_se"]) for k in FIGURES),
        )
    level = round(100 * result["confidence"])
    diffs = Table(title=f"differences from {result['designs'][0]['name']}")
    for col in ("design", "figure", "difference", "se", "se unpaired", f"{level}% CI"):
        diffs.add_column(
            col, justify="left" if col in ("design", "figure") else "right"
        )
    for d in result["differences"]:
        for key in FIGURES:
            f = d["figures"][key]
            diffs.add_row(
                d["design"],
                _LABELS[key],
                f"{f['diff']:+.4f}" if math.isfinite(f["diff"]) else "—",
                fmt_se(f["se"]),
                fmt_se(f["se_unpaired"]),
                _interval(f["ci"]),
            )
        diffs.add_section()
    console = Console()
    console.print(designs)
    console.print(diffs)
    for d in result["differences"]:
        console.print(f"{d['design']} vs {d['against']}: {d['pairing']}")
